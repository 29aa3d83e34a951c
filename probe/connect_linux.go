package probe

import (
	"context"
	"errors"
	"net/netip"
	"os"
	"time"

	"golang.org/x/sys/unix"

	"github.com/xosprobe/xosprobe/probe/kernelrtt"
)

// connectAndClose makes the socket itself so the clock brackets exactly the
// connect: started right before connect(2), stopped when it returns 0 (a
// handshake the kernel completed inline, as on a local veth) or when the
// runtime poller reports the socket writable. The net package would add
// socket setup, epoll registration and address lookups to the figure.
func (p *Prober) connectAndClose(ctx context.Context, addr netip.AddrPort) (time.Duration, kernelrtt.Sample, error) {
	family, sa := unix.AF_INET, unix.Sockaddr(&unix.SockaddrInet4{Addr: addr.Addr().As4(), Port: int(addr.Port())})
	if addr.Addr().Is6() && !addr.Addr().Is4In6() {
		family, sa = unix.AF_INET6, &unix.SockaddrInet6{Addr: addr.Addr().As16(), Port: int(addr.Port())}
	}
	if err := ctx.Err(); err != nil {
		return 0, kernelrtt.Sample{}, err
	}
	fd, err := unix.Socket(family, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, unix.IPPROTO_TCP)
	if err != nil {
		return 0, kernelrtt.Sample{}, os.NewSyscallError("socket", err)
	}
	start := p.Clock.Now()
	err = unix.Connect(fd, sa)
	end := p.Clock.Now()
	switch {
	case err == nil:
		rtt := p.KernelRTT(uintptr(fd))
		unix.Close(fd)
		return end.Sub(start), rtt, nil
	case !errors.Is(err, unix.EINPROGRESS):
		unix.Close(fd)
		return 0, kernelrtt.Sample{}, os.NewSyscallError("connect", err)
	}

	// In progress: wait for writability on the runtime poller, bounded by ctx.
	f := os.NewFile(uintptr(fd), "probe") // registers the non-blocking fd with the poller
	defer f.Close()
	if d, ok := ctx.Deadline(); ok {
		_ = f.SetWriteDeadline(d)
	}
	stop := context.AfterFunc(ctx, func() { _ = f.SetWriteDeadline(time.Unix(1, 0)) })
	defer stop()
	raw, err := f.SyscallConn()
	if err != nil {
		return 0, kernelrtt.Sample{}, err
	}
	var soErr int
	var rtt kernelrtt.Sample
	werr := raw.Write(func(fd uintptr) bool {
		end = p.Clock.Now()
		soErr, err = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_ERROR)
		if err != nil || soErr != 0 {
			return true
		}
		// Writable with no error can still be spurious before the handshake ends.
		if _, perr := unix.Getpeername(int(fd)); perr != nil {
			return false
		}
		rtt = p.KernelRTT(fd)
		return true
	})
	switch {
	case werr != nil:
		if ctx.Err() != nil {
			return 0, kernelrtt.Sample{}, ctx.Err()
		}
		return 0, kernelrtt.Sample{}, werr
	case err != nil:
		return 0, kernelrtt.Sample{}, os.NewSyscallError("getsockopt", err)
	case soErr != 0:
		return 0, kernelrtt.Sample{}, os.NewSyscallError("connect", unix.Errno(soErr))
	}
	return end.Sub(start), rtt, nil
}
