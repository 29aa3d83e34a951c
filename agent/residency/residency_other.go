//go:build !linux

package residency

import (
	"errors"
	"runtime"
)

// ReleaseStartupPages is Linux-only. Windows trims a process's working set
// itself when memory is short, and reports private bytes separately from the
// image's shared pages, so there is nothing to give back by hand.
func ReleaseStartupPages() (int64, error) {
	return 0, errors.New("releasing start-up pages is not supported on " + runtime.GOOS)
}
