//go:build linux

package nfqueue

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/xosprobe/xosprobe/agent/responder"
	"github.com/xosprobe/xosprobe/probe"
)

// BenchmarkHoldAccuracy measures the delayer as the e2e uses it: SYNs into a
// server namespace are held for D, the prober's tcp check in another
// namespace times connects to the agent's responder there, and the change of the median connect time between
// D=0 and D is compared with the change of the delayer's median recorded hold.
// error-us is that difference (the e2e asserts it within 300 us). Root only
// (network namespaces, iptables).
//
//	go test -run '^$' -bench HoldAccuracy -benchtime 1x ./test/nfqueue/
func BenchmarkHoldAccuracy(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Skip("needs root: network namespaces and iptables")
	}
	pair, err := NewPair(fmt.Sprint("nfqa", os.Getpid()%100000))
	b.Cleanup(pair.Delete)
	if err != nil {
		b.Fatal(err)
	}
	// The agent's own responder and prober: the connects are timed as an
	// agent times them.
	var r *responder.Responder
	if err := InNetns(pair.Server, func() (err error) {
		at := PairServerIP + ":0"
		r, err = responder.Listen(responder.Config{HTTPAddr: at, TCPAddr: at, AllowAddr: at, DenyAddr: at}, slog.New(slog.DiscardHandler))
		return err
	}); err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go r.Serve(ctx)
	target := probe.Target{Addr: r.Addr("tcp").String()}
	port := strconv.Itoa(r.Addr("tcp").(*net.TCPAddr).Port)
	syn, _ := HoldRules(PairClientIP, port, 7, 8) // only SYNs are held here
	if err := InputRule(context.Background(), pair.Server, "-A", syn); err != nil {
		b.Fatal(err)
	}
	d, err := Start(pair.Server, 7, 0)
	if err != nil {
		b.Fatal(err)
	}
	defer d.Close()

	prober := probe.New()
	const n = 400
	sample := func(hold time.Duration) (connect, held time.Duration) {
		d.SetHold(hold)
		d.TakeHolds()
		var times []time.Duration
		for range n {
			time.Sleep(time.Duration(5+rand.IntN(10)) * time.Millisecond) // a probe's pace: an idle CPU between connects
			var res probe.Result
			_ = InNetns(pair.Client, func() error { res = prober.TCP(ctx, target); return nil })
			t, ok := res.Phase(probe.PhaseConnect)
			if !ok {
				b.Fatalf("connect to %s: %s %s", target.Addr, res.Outcome, res.Detail)
			}
			times = append(times, t)
		}
		return Median(times), Median(d.TakeHolds())
	}
	for b.Loop() {
		c0, h0 := sample(0)
		for _, hold := range []time.Duration{2 * time.Millisecond, 5 * time.Millisecond} {
			c, h := sample(hold)
			b.ReportMetric(float64((c-c0)-(h-h0))/1e3, fmt.Sprintf("error-us-D%dms", hold/time.Millisecond))
			b.Logf("D=%v: connect median %v -> %v, hold median %v -> %v", hold, c0, c, h0, h)
		}
	}
}
