//go:build !linux

package responder

import "syscall"

// handshakeOnly leaves the listener as it is: Windows has no equivalent of
// TCP_DEFER_ACCEPT that keeps a completed handshake in the kernel, so the
// responder accepts and closes every connection.
func handshakeOnly(string, string, syscall.RawConn) error { return nil }
