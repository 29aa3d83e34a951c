package probe

import (
	"context"
	"errors"
	"net/netip"
	"os"
	"sync"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/xosprobe/xosprobe/probe/kernelrtt"
)

// connect makes the socket itself and calls a blocking connect(2), so the
// clock brackets the handshake and nothing else: the kernel wakes this thread
// directly when the SYN-ACK arrives. A non-blocking connect returns
// EINPROGRESS even on loopback, and the figure would then include the runtime
// poller's wake-up and the goroutine's scheduling (measured here: +10-15 µs
// on a 6 µs loopback handshake). The cost is one OS thread per connect in
// flight, which the scheduler's concurrency limit bounds.
//
// The socket's SO_SNDTIMEO bounds each wait of the connect to connectSlice,
// or to what is left before ctx's deadline, and between waits the connect
// looks at ctx: no timer or context watch is set up per probe. The watch it
// had (context.AfterFunc, shutdown(2) on cancel) was a third of what a probe
// cycle allocated and 4% of the agent's CPU.
//
// With keep false conn is nil and the socket, disconnected, waits for the
// next connect-only probe (spareSockets); otherwise it is switched to
// non-blocking and handed to the runtime poller.
func (p *Prober) connect(ctx context.Context, addr netip.AddrPort, keep bool) (conn, time.Duration, kernelrtt.Sample, error) {
	ip := addr.Addr().Unmap()
	var family int
	var sa unix.Sockaddr
	if ip.Is4() {
		family, sa = unix.AF_INET, &unix.SockaddrInet4{Addr: ip.As4(), Port: int(addr.Port())}
	} else {
		family, sa = unix.AF_INET6, &unix.SockaddrInet6{Addr: ip.As16(), Port: int(addr.Port())}
	}
	if err := ctx.Err(); err != nil {
		return nil, 0, kernelrtt.Sample{}, err
	}
	fd := -1
	if !keep {
		fd = p.spares.take(family)
	}
	if fd < 0 {
		var err error
		if fd, err = probeSocket(family); err != nil {
			return nil, 0, kernelrtt.Sample{}, err
		}
	}
	w := connectWait{fd: fd, reusable: true}
	w.deadline, w.hasDeadline = ctx.Deadline()

	var mark uint64
	if p.RTTCollector != nil {
		mark = p.RTTCollector.Mark()
	}
	err := w.bound()
	start := p.Clock.Now()
	if err == nil {
		err = os.NewSyscallError("connect", unix.Connect(fd, sa))
	}
	// A wait ran out, or a signal cut it short, with the handshake still
	// going: connect(2) again waits on for the same handshake.
	for errors.Is(err, unix.EINPROGRESS) || errors.Is(err, unix.EALREADY) || errors.Is(err, unix.EINTR) {
		if err = ctx.Err(); err == nil {
			if err = w.bound(); err == nil {
				err = os.NewSyscallError("connect", unix.Connect(fd, sa))
			}
		}
	}
	end := p.Clock.Now()

	if err == nil && ctx.Err() != nil {
		err = ctx.Err() // connected only as the deadline hit: not within it
	}
	if err != nil {
		unix.Close(fd)
		if ctxErr := ctx.Err(); ctxErr != nil {
			return nil, 0, kernelrtt.Sample{}, ctxErr
		}
		return nil, 0, kernelrtt.Sample{}, err
	}
	rtt, ok := kernelrtt.Sample{}, false
	if p.RTTCollector != nil {
		rtt, ok = p.RTTCollector.Lookup(addr, mark)
	}
	if !ok {
		rtt = p.KernelRTT(uintptr(fd))
	}
	if !keep {
		if w.reusable {
			p.spares.put(family, fd)
		} else {
			unix.Close(fd)
		}
		return nil, end.Sub(start), rtt, nil
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return nil, 0, kernelrtt.Sample{}, os.NewSyscallError("fcntl", err)
	}
	return os.NewFile(uintptr(fd), addr.String()), end.Sub(start), rtt, nil
}

// connectSlice is the longest one blocking connect(2) waits, the socket's
// SO_SNDTIMEO, before the probe looks at its context again: how late a
// cancellation can take effect. A handshake on a live path takes far less; a
// SYN dropped by NetworkPolicy costs a wake-up per slice until the deadline.
// The kernel counts the wait in ticks (4 ms at HZ=250), so a connect that
// times out ends up to a tick after the deadline.
var connectSlice = 100 * time.Millisecond

// connectWait bounds the waits of one blocking connect.
type connectWait struct {
	fd          int
	deadline    time.Time
	hasDeadline bool
	reusable    bool // the socket's SO_SNDTIMEO is still connectSlice
}

// bound shortens the next wait to what is left before the deadline when
// that is less than a slice, or returns context.DeadlineExceeded when
// nothing is left.
func (w *connectWait) bound() error {
	if !w.hasDeadline {
		return nil
	}
	left := time.Until(w.deadline)
	switch {
	case left <= 0:
		return context.DeadlineExceeded
	case left < connectSlice:
		w.reusable = false
		if err := setConnectWait(w.fd, max(left, time.Microsecond)); err != nil { // zero would mean no limit
			return err
		}
	}
	return nil
}

// setConnectWait sets how long one blocking connect(2) on fd waits.
func setConnectWait(fd int, d time.Duration) error {
	tv := unix.NsecToTimeval(d.Nanoseconds())
	return os.NewSyscallError("setsockopt SO_SNDTIMEO", unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_SNDTIMEO, &tv))
}

// probeSocket makes a TCP socket of family that closes, and disconnects,
// with RST instead of FIN, so no TIME_WAIT entry outlives a probe on either
// end: an agent probing hundreds of peers every few seconds would otherwise
// hold tens of thousands of them, and the peer's responder, which closes an
// http exchange first, one per http run. A successful http run closes only
// after reading the whole answer, so the reset loses nothing; it also
// spares the FIN and its ACK, which on loopback the agent pays for at both
// ends (as HAProxy's health checks do).
func probeSocket(family int) (int, error) {
	fd, err := unix.Socket(family, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, unix.IPPROTO_TCP)
	if err != nil {
		return -1, os.NewSyscallError("socket", err)
	}
	_ = unix.SetsockoptLinger(fd, unix.SOL_SOCKET, unix.SO_LINGER, &unix.Linger{Onoff: 1, Linger: 0})
	if err := setConnectWait(fd, connectSlice); err != nil {
		unix.Close(fd)
		return -1, err
	}
	return fd, nil
}

// spareSockets keeps the sockets of finished connect-only probes for the
// next ones. connect(2) to an AF_UNSPEC address drops the connection with
// RST, as closing the socket would, and leaves it unbound and ready to
// connect again: that spares a socket(2) and the close's file teardown per
// probe, 2-2.5 µs of a 12 µs loopback connect-and-close here. Only a socket
// whose connect succeeded, with its wait still connectSlice, comes back.
type spareSockets struct {
	mu  sync.Mutex
	fds [2][]int // AF_INET, AF_INET6
}

// maxSpareSockets bounds the sockets kept per family: about as many as
// connect-only probes run at once.
const maxSpareSockets = 16

func spareIndex(family int) int {
	if family == unix.AF_INET6 {
		return 1
	}
	return 0
}

// take returns a kept socket of family, or -1 when there is none.
func (s *spareSockets) take(family int) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	fds := &s.fds[spareIndex(family)]
	if len(*fds) == 0 {
		return -1
	}
	fd := (*fds)[len(*fds)-1]
	*fds = (*fds)[:len(*fds)-1]
	return fd
}

// put disconnects fd and keeps it, or closes it when that fails or enough
// are kept.
func (s *spareSockets) put(family int, fd int) {
	if disconnect(fd) != nil {
		unix.Close(fd)
		return
	}
	s.mu.Lock()
	fds := &s.fds[spareIndex(family)]
	keep := len(*fds) < maxSpareSockets
	if keep {
		*fds = append(*fds, fd)
	}
	s.mu.Unlock()
	if !keep {
		unix.Close(fd)
	}
}

// unspec is the AF_UNSPEC address that disconnects a socket.
var unspec = unix.RawSockaddr{Family: unix.AF_UNSPEC}

// disconnect drops fd's connection: connect(2) with AF_UNSPEC, which
// x/sys/unix has no Sockaddr for.
func disconnect(fd int) error {
	_, _, errno := unix.Syscall(unix.SYS_CONNECT, uintptr(fd), uintptr(unsafe.Pointer(&unspec)), unsafe.Sizeof(unspec))
	if errno != 0 {
		return os.NewSyscallError("connect AF_UNSPEC", errno)
	}
	return nil
}
