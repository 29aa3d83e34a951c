//go:build !linux

package probe

import (
	"context"
	"net"
	"net/netip"
	"syscall"
	"time"

	"github.com/xosprobe/xosprobe/probe/clock"
	"github.com/xosprobe/xosprobe/probe/kernelrtt"
)

// spareSockets is Linux's reuse of connect-only sockets; dialing through the
// net package leaves nothing to reuse.
type spareSockets struct{}

// connect dials with the net package. The clock starts in the Control hook,
// after the socket exists, so socket creation is not counted as connect time.
// With keep false the socket is closed before return and conn is nil.
func (p *Prober) connect(ctx context.Context, addr netip.AddrPort, keep bool) (conn, time.Duration, kernelrtt.Sample, error) {
	var start clock.Instant
	d := p.Dialer
	d.ControlContext = func(context.Context, string, string, syscall.RawConn) error {
		start = p.Clock.Now()
		return nil
	}
	c, err := d.DialContext(ctx, "tcp", addr.String())
	end := p.Clock.Now()
	if err != nil {
		return nil, 0, kernelrtt.Sample{}, err
	}
	rtt := p.connRTT(c)
	// RST instead of FIN, as on Linux (probeSocket): no TIME_WAIT entry
	// outlives a probe on either end (Windows keeps them 120 s from a
	// 16k-port dynamic range).
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	if !keep {
		c.Close()
		return nil, end.Sub(start), rtt, nil
	}
	return c, end.Sub(start), rtt, nil
}

// connRTT applies the KernelRTT seam to a net.Conn's socket.
func (p *Prober) connRTT(c net.Conn) kernelrtt.Sample { return kernelrtt.Read(c, p.KernelRTT) }
