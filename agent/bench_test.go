package agent

import (
	"context"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/xosprobe/xosprobe/agent/responder"
	"github.com/xosprobe/xosprobe/agent/scheduler"
)

// BenchmarkProbeCycle is one cycle of the hot path against one loopback peer:
// the four per-peer checks, each run, observed into metrics and queued for
// the aggregator. allocs/op is the allocation cost of a cycle.
func BenchmarkProbeCycle(b *testing.B) {
	r, err := responder.Listen(responder.Config{HTTPAddr: "127.0.0.1:0", TCPAddr: "127.0.0.1:0", AllowAddr: "127.0.0.1:0", DenyAddr: "127.0.0.1:0"},
		slog.New(slog.DiscardHandler))
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = r.Serve(ctx) }()
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
			rctx, cancel := context.WithTimeout(ctx, time.Second)
			a.runJob(rctx, scheduler.Job{Key: j.Key, Check: j.Check, Target: j.Target})
			cancel()
		}
	}
}
