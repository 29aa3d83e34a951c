//go:build !linux

package probe

import (
	"context"
	"net/netip"
	"syscall"
	"time"

	"github.com/xosprobe/xosprobe/probe/clock"
	"github.com/xosprobe/xosprobe/probe/kernelrtt"
)

// connectAndClose dials with the net package. The clock starts in the
// Control hook, after the socket exists, so socket creation is not counted
// as connect time.
func (p *Prober) connectAndClose(ctx context.Context, addr netip.AddrPort) (time.Duration, kernelrtt.Sample, error) {
	var start clock.Instant
	d := p.Dialer
	d.ControlContext = func(context.Context, string, string, syscall.RawConn) error {
		start = p.Clock.Now()
		return nil
	}
	conn, err := d.DialContext(ctx, "tcp", addr.String())
	end := p.Clock.Now()
	if err != nil {
		return 0, kernelrtt.Sample{}, err
	}
	defer conn.Close()
	return end.Sub(start), p.connRTT(conn), nil
}
