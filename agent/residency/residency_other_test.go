//go:build !linux

package residency

import (
	"runtime"
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestReleaseStartupPagesSaysItIsUnsupported(t *testing.T) {
	n, err := ReleaseStartupPages()
	assert.Zero(t, n)
	assert.ErrorContains(t, err, "not supported on "+runtime.GOOS)
}
