package probe

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"time"
)

// TCP connects to the peer pod directly (Target.Addr). Phase: connect, plus
// the kernel's RTT of the new socket.
func (p *Prober) TCP(ctx context.Context, t Target) Result {
	ctx, cancel := withDefaultDeadline(ctx)
	defer cancel()
	r := p.begin(CheckTCP, t, t.Addr)
	if err := validateHostPort("target address", t.Addr); err != nil {
		r.fail(OutcomeBadTarget, err)
		return r
	}
	_, _ = p.handshake(ctx, &r, t.Addr, false)
	return r
}

// conn is a connected probe socket: an *os.File on Linux (the raw socket on
// the runtime poller), a net.Conn elsewhere. Both honor deadlines.
type conn interface {
	io.ReadWriteCloser
	SetDeadline(time.Time) error
}

// handshake completes a TCP handshake with addr, recording the dns phase (for
// a host name), the connect phase and the kernel RTT in r. On failure it
// classifies the error into r. Resolving separately keeps name lookup out of
// the connect figure. With keep false the socket is closed and conn is nil.
func (p *Prober) handshake(ctx context.Context, r *Result, addr string, keep bool) (conn, error) {
	host, port, _ := net.SplitHostPort(addr)
	if net.ParseIP(host) == nil {
		start := p.Clock.Now()
		ips, err := p.resolver().LookupHost(ctx, host)
		elapsed := p.Clock.Now().Sub(start)
		if err != nil {
			r.fail(classifyResolve(err, ctx.Err()), err)
			return nil, err
		}
		if len(ips) == 0 {
			err := errors.New("no addresses for " + host)
			r.fail(OutcomeDNSNoAnswer, err)
			return nil, err
		}
		r.addPhase(PhaseDNS, elapsed)
		addr = net.JoinHostPort(ips[0], port)
		r.Addr = addr
	}
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		r.fail(OutcomeBadTarget, err)
		return nil, err
	}
	c, elapsed, rtt, err := p.connect(ctx, ap, keep)
	if err != nil {
		r.fail(classifyDial(err, ctx.Err()), fmt.Errorf("connect to %s: %w", addr, err))
		return nil, err
	}
	r.addPhase(PhaseConnect, elapsed)
	r.KernelRTT = rtt
	return c, nil
}
