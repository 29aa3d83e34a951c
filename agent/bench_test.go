package agent

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/xosprobe/xosprobe/agent/responder"
	"github.com/xosprobe/xosprobe/agent/scheduler"
	"github.com/xosprobe/xosprobe/probe"
)

// serveResponder serves the probe ports on loopback until ctx ends.
func serveResponder(ctx context.Context, b *testing.B) *responder.Responder {
	r, err := responder.Listen(responder.Config{HTTPAddr: "127.0.0.1:0", TCPAddr: "127.0.0.1:0", AllowAddr: "127.0.0.1:0", DenyAddr: "127.0.0.1:0"},
		slog.New(slog.DiscardHandler))
	if err != nil {
		b.Fatal(err)
	}
	go r.Serve(ctx)
	return r
}

// BenchmarkProbeCycle is one cycle of the hot path against one loopback peer:
// the four per-peer checks, each run, observed into metrics and queued for
// the aggregator. allocs/op is the allocation cost of a cycle.
func BenchmarkProbeCycle(b *testing.B) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	r := serveResponder(ctx, b)
	port := func(name string) int { return r.Addr(name).(*net.TCPAddr).Port }
	peer := PeerInfo{Node: "peer", OS: "windows", Pod: "peer", IP: "127.0.0.1",
		Ports: Ports{HTTP: port("http"), TCP: port("tcp"), Allow: port("allow"), Deny: port("deny")}}

	cfg := testConfig("self", "linux", 1, "http://127.0.0.1:1") // reporter buffers; it never runs here
	a, err := New(cfg, StaticSource{V: View{Peers: []PeerInfo{peer}}}, nil, slog.New(slog.DiscardHandler))
	if err != nil {
		b.Fatal(err)
	}
	jobs := a.jobs(View{Peers: []PeerInfo{peer}})
	b.ReportAllocs()
	for b.Loop() {
		for _, j := range jobs {
			rctx, cancel := context.WithTimeout(ctx, j.RunTimeout(time.Second)) // as the scheduler gives each run
			a.runJob(rctx, j)
			cancel()
		}
	}
}

// BenchmarkScheduledConnect measures what coalescing does to the figures: 100
// peers' tcp jobs at a 1 s interval, run by the scheduler as the agent runs
// them, against a loopback responder; one iteration is one interval. Runs
// started together find the CPU awake, a lone run pays the idle vCPU's
// wake-up: p50-us and p90-us show the difference, with and without.
//
//	go test -run '^$' -bench ScheduledConnect -benchtime 10x ./agent/
func BenchmarkScheduledConnect(b *testing.B) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	r := serveResponder(ctx, b)
	target := probe.Target{Addr: r.Addr("tcp").String()}
	var jobs []scheduler.Job
	for i := range 100 {
		jobs = append(jobs, scheduler.Job{Key: fmt.Sprint("peer-", i, "/tcp"), Check: probe.CheckTCP, Target: target})
	}
	prober := probe.New()
	for _, coalesce := range []time.Duration{0, scheduler.DefaultCoalesce} {
		b.Run(fmt.Sprint("coalesce=", coalesce), func(b *testing.B) {
			var mu sync.Mutex
			var connects []time.Duration
			s := scheduler.New(scheduler.Config{Interval: time.Second, Jitter: 0.2, Timeout: time.Second, Coalesce: coalesce},
				func(ctx context.Context, j scheduler.Job) {
					res := prober.TCP(ctx, j.Target)
					if d, ok := res.Phase(probe.PhaseConnect); ok {
						mu.Lock()
						connects = append(connects, d)
						mu.Unlock()
					}
				}, nil, nil)
			s.Update(jobs)
			sctx, stop := context.WithCancel(ctx)
			done := make(chan struct{})
			go func() { s.Run(sctx); close(done) }()
			time.Sleep(time.Second) // the staggered first round
			mu.Lock()
			connects = connects[:0]
			mu.Unlock()
			b.ResetTimer()
			for b.Loop() {
				time.Sleep(time.Second)
			}
			stop()
			<-done
			mu.Lock()
			defer mu.Unlock()
			if len(connects) == 0 {
				b.Fatal("no connects measured")
			}
			slices.Sort(connects)
			q := func(f float64) float64 { return float64(connects[int(f*float64(len(connects)-1))].Nanoseconds()) / 1e3 }
			b.ReportMetric(q(0.5), "p50-us")
			b.ReportMetric(q(0.9), "p90-us")
			b.ReportMetric(float64(len(connects))/float64(b.N), "connects/s")
		})
	}
}
