package probe

import (
	"context"
	"errors"
	"io"
	"net/netip"
	"os"
	"sync"
	"time"

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
// With keep false the socket is closed before return and conn is nil;
// otherwise it stays blocking, for the HTTP exchange (see blockingConn).
func (p *Prober) connect(ctx context.Context, addr netip.AddrPort, keep bool) (conn, time.Duration, kernelrtt.Sample, error) {
	ip := addr.Addr().Unmap()
	family, sa := unix.AF_INET6, unix.Sockaddr(&unix.SockaddrInet6{Addr: ip.As16(), Port: int(addr.Port())})
	if ip.Is4() {
		family, sa = unix.AF_INET, &unix.SockaddrInet4{Addr: ip.As4(), Port: int(addr.Port())}
	}
	if err := ctx.Err(); err != nil {
		return nil, 0, kernelrtt.Sample{}, err
	}
	fd, err := unix.Socket(family, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, unix.IPPROTO_TCP)
	if err != nil {
		return nil, 0, kernelrtt.Sample{}, os.NewSyscallError("socket", err)
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
	err = unix.Connect(fd, sa)
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
		abortiveClose(fd)
		return nil, end.Sub(start), rtt, nil
	}
	return &blockingConn{fd: fd}, end.Sub(start), rtt, nil
}

// blockingConn is a connected probe socket read and written with blocking
// syscalls, for the same reason connect blocks: the kernel wakes this thread
// when the response arrives, so first_byte holds no poller wake-up, and no
// epoll registration is made and removed per probe. It has no timers of its
// own: the HTTP check sets a deadline in the past when its context ends
// (deadline or cancellation), and that shuts the socket down, which wakes a
// blocked read or write.
type blockingConn struct {
	fd       int
	mu       sync.Mutex // orders an abort against Close: never shut down a closed (maybe reused) fd
	closed   bool
	deadline time.Time
}

func (c *blockingConn) Read(b []byte) (int, error) {
	for {
		n, err := unix.Read(c.fd, b)
		switch {
		case errors.Is(err, unix.EINTR):
			continue
		case err != nil:
			return 0, c.wrap("read", err)
		case n == 0 && len(b) > 0:
			if c.expired() {
				return 0, os.ErrDeadlineExceeded
			}
			return 0, io.EOF
		}
		return n, nil
	}
}

func (c *blockingConn) Write(b []byte) (int, error) {
	written := 0
	for written < len(b) {
		n, err := unix.Write(c.fd, b[written:])
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return written, c.wrap("write", err)
		}
		written += n
	}
	return written, nil
}

// SetDeadline records t; a t already past aborts the exchange at once.
func (c *blockingConn) SetDeadline(t time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.deadline = t
	if !c.closed && !t.After(time.Now()) {
		_ = unix.Shutdown(c.fd, unix.SHUT_RDWR)
	}
	return nil
}

func (c *blockingConn) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return os.ErrClosed
	}
	c.closed = true
	return unix.Close(c.fd)
}

func (c *blockingConn) expired() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return !c.deadline.IsZero() && !c.deadline.After(time.Now())
}

// wrap reports an error caused by an abort as the deadline it was.
func (c *blockingConn) wrap(op string, err error) error {
	if c.expired() {
		return os.ErrDeadlineExceeded
	}
	return os.NewSyscallError(op, err)
}

// abortiveClose closes a connect-only probe socket with RST instead of FIN, so
// no TIME_WAIT entry outlives it: an agent probing hundreds of peers every
// few seconds would otherwise hold tens of thousands of them.
func abortiveClose(fd int) {
	_ = unix.SetsockoptLinger(fd, unix.SOL_SOCKET, unix.SO_LINGER, &unix.Linger{Onoff: 1, Linger: 0})
	unix.Close(fd)
}
