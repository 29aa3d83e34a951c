package probe

import (
	"errors"

	"golang.org/x/sys/windows"
)

// Winsock errors are their own Errno values; syscall.ECONNREFUSED and friends
// are invented constants on Windows that a dial error never matches.

func isRefused(err error) bool { return errors.Is(err, windows.WSAECONNREFUSED) }

func isReset(err error) bool {
	return errors.Is(err, windows.WSAECONNRESET) || errors.Is(err, windows.WSAECONNABORTED)
}

// isOSTimeout: the stack's own SYN retries ran out (about 21 s) before ours did.
func isOSTimeout(err error) bool { return errors.Is(err, windows.WSAETIMEDOUT) }

func isUnreachable(err error) bool {
	return errors.Is(err, windows.WSAEHOSTUNREACH) || errors.Is(err, windows.WSAENETUNREACH)
}
