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

func isUnreachable(err error) bool {
	return errors.Is(err, windows.WSAEHOSTUNREACH) || errors.Is(err, windows.WSAENETUNREACH)
}
