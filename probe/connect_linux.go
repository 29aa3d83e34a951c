package probe

import (
	"context"
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
// flight, which the scheduler's concurrency limit bounds. The deadline and
// cancellation abort the connect with shutdown(2).
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
	aborted := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		_ = unix.Shutdown(fd, unix.SHUT_RDWR) // wakes the blocked connect with ECONNRESET
		close(aborted)
	})

	var mark uint64
	if p.RTTCollector != nil {
		mark = p.RTTCollector.Mark()
	}
	start := p.Clock.Now()
	err := unix.Connect(fd, sa)
	end := p.Clock.Now()

	if !stop() {
		<-aborted // never close fd while the abort may still touch it
	}
	if err == nil && ctx.Err() != nil {
		err = ctx.Err() // connected just as the deadline hit: the abort already broke it
	}
	if err != nil {
		unix.Close(fd)
		if ctx.Err() != nil {
			return nil, 0, kernelrtt.Sample{}, ctx.Err()
		}
		return nil, 0, kernelrtt.Sample{}, os.NewSyscallError("connect", err)
	}
	rtt, ok := kernelrtt.Sample{}, false
	if p.RTTCollector != nil {
		rtt, ok = p.RTTCollector.Lookup(addr, mark)
	}
	if !ok {
		rtt = p.KernelRTT(uintptr(fd))
	}
	if !keep {
		p.spares.put(family, fd)
		return nil, end.Sub(start), rtt, nil
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return nil, 0, kernelrtt.Sample{}, os.NewSyscallError("fcntl", err)
	}
	return os.NewFile(uintptr(fd), addr.String()), end.Sub(start), rtt, nil
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
	return fd, nil
}

// spareSockets keeps the sockets of finished connect-only probes for the
// next ones. connect(2) to an AF_UNSPEC address drops the connection with
// RST, as closing the socket would, and leaves it unbound and ready to
// connect again: that spares a socket(2) and the close's file teardown per
// probe, 2-2.5 µs of a 12 µs loopback connect-and-close here. Only a socket
// whose connect succeeded, and whose abort never ran, comes back.
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
