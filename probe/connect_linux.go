package probe

import (
	"context"
	"net/netip"
	"os"
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
// otherwise it is switched to non-blocking and handed to the runtime poller.
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
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return nil, 0, kernelrtt.Sample{}, os.NewSyscallError("fcntl", err)
	}
	return os.NewFile(uintptr(fd), addr.String()), end.Sub(start), rtt, nil
}

// abortiveClose closes a connect-only probe socket with RST instead of FIN, so
// no TIME_WAIT entry outlives it: an agent probing hundreds of peers every
// few seconds would otherwise hold tens of thousands of them.
func abortiveClose(fd int) {
	_ = unix.SetsockoptLinger(fd, unix.SOL_SOCKET, unix.SO_LINGER, &unix.Linger{Onoff: 1, Linger: 0})
	unix.Close(fd)
}
