package responder

import (
	"syscall"

	"golang.org/x/sys/unix"
)

// handshakeOnly sets TCP_DEFER_ACCEPT on a connect-check listener. The
// kernel still answers every SYN, so a peer's connect completes and is timed
// as before, but a connection that sends nothing never leaves the kernel: no
// child socket, no wake-up of this process, no accept and close. A probe's
// reset then drops the half-open entry. Connect-only probes send nothing, so
// on a node answering hundreds of them a second this takes the responder out
// of their path. A client that does send data is accepted (and closed) as
// before, and one that sends nothing is accepted once the kernel has
// retransmitted its SYN-ACK for about a second.
func handshakeOnly(_, _ string, c syscall.RawConn) error {
	var serr error
	if err := c.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_DEFER_ACCEPT, 1)
	}); err != nil {
		return err
	}
	return serr
}
