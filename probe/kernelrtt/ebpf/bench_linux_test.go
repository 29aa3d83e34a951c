//go:build linux && (amd64 || arm64 || loong64 || mips64le || ppc64le || riscv64)

package ebpf

import (
	"bufio"
	"context"
	"math/rand/v2"
	"net/netip"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"

	"github.com/xosprobe/xosprobe/probe"
	"github.com/xosprobe/xosprobe/probe/kernelrtt"
)

// BenchmarkProbeCPU is the probe's CPU per connection with and without the
// collector attached to the probe's cgroup. The peer is a child process in
// another cgroup. Variants:
//
//   - prober/base: probe.Prober.TCP as shipped, nothing attached.
//   - prober/attached: the same with the program attached: the kernel-side
//     cost alone (the probe still calls getsockopt).
//   - connect/base: the probe's connect path (socket, blocking connect,
//     TCP_INFO, abortive close), nothing attached.
//   - connect/attached: the same, program attached.
//   - connect/ebpf: the proposed integration: Mark before connect, Lookup
//     instead of TCP_INFO, program attached.
//
// The development machine is shared and noisy, so the variants run
// interleaved in blocks of 1000 connections, in a shuffled order per round, attaching and
// detaching the program between blocks. Each block is measured with
// getrusage of the probing thread (RUSAGE_THREAD, user + system; on loopback
// that includes the softirq work of both ends of the handshake, done in the
// connecting thread's context). Reported: each variant's median block
// (<variant>-cpu-µs/op) and the CPU added against the base as the median of
// the per-round paired ratios (*-added-%). ns/op is wall time over all
// variants. bench/ebpf/run.sh runs it with -count and summarizes.
func BenchmarkProbeCPU(b *testing.B) {
	requireRoot(b)
	cg := enterCgroup(b)
	peer := startPeer(b, cg.home)
	p := probe.New()
	target := probe.Target{Addr: peer.String(), Src: probe.Endpoint{OS: "linux"}, Dst: probe.Endpoint{OS: "linux"}}
	ctx := context.Background()
	prober := func() {
		if r := p.TCP(ctx, target); !r.Succeeded() {
			b.Fatalf("probe failed: %s %s", r.Outcome, r.Detail)
		}
	}
	c, err := Open(Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	attached := true
	attach := func(on bool) {
		if on == attached {
			return
		}
		if on {
			l, err := link.AttachCgroup(link.CgroupOptions{Path: c.cgroup, Attach: ebpf.AttachCGroupSockOps, Program: c.objs.RttSockops})
			if err != nil {
				b.Fatal(err)
			}
			c.link = l
		} else if err := c.link.Close(); err != nil {
			b.Fatal(err)
		}
		attached = on
	}
	variants := []struct {
		name     string
		attached bool
		f        func()
	}{
		{"prober/base", false, prober},
		{"prober/attached", true, prober},
		{"connect/base", false, func() { connectOnce(b, peer, nil) }},
		{"connect/attached", true, func() { connectOnce(b, peer, nil) }},
		{"connect/ebpf", true, func() { connectOnce(b, peer, c) }},
	}
	const block = 1000
	rounds := max(1, b.N/block)
	perOp := make([][]float64, len(variants)) // per variant, per round: CPU ns per connection
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	for range 2 * block { // warm up: page faults, the peer's accept loop
		prober()
	}
	before := c.Stats()
	b.ResetTimer()
	rng := rand.New(rand.NewPCG(1, 2))
	for range rounds {
		for _, i := range rng.Perm(len(variants)) {
			attach(variants[i].attached)
			c.Stats() // drain what the previous block left
			var r0, r1 unix.Rusage
			_ = unix.Getrusage(unix.RUSAGE_THREAD, &r0)
			for range block {
				variants[i].f()
			}
			_ = unix.Getrusage(unix.RUSAGE_THREAD, &r1)
			cpu := r1.Utime.Nano() - r0.Utime.Nano() + r1.Stime.Nano() - r0.Stime.Nano()
			perOp[i] = append(perOp[i], float64(cpu)/block)
		}
	}
	b.StopTimer()
	for i, v := range variants {
		b.ReportMetric(median(perOp[i])/1e3, v.name+"-cpu-µs/op")
	}
	added := func(with, base int) float64 {
		ratios := make([]float64, rounds)
		for r := range rounds {
			ratios[r] = perOp[with][r]/perOp[base][r] - 1
		}
		return 100 * median(ratios)
	}
	b.ReportMetric(added(1, 0), "prober-kernel-added-%")
	b.ReportMetric(added(3, 2), "connect-kernel-added-%")
	b.ReportMetric(added(4, 2), "connect-ebpf-added-%")
	if s := c.Stats(); s.Ambiguous+s.Missed > before.Ambiguous+before.Missed || s.Lost > 0 {
		b.Errorf("lookups without an answer: %+v", s)
	}
}

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// BenchmarkBPFRunTime is the program's own run time per connection, from the
// kernel's BPF statistics (kernel.bpf_stats_enabled while it runs).
func BenchmarkBPFRunTime(b *testing.B) {
	requireRoot(b)
	cg := enterCgroup(b)
	peer := startPeer(b, cg.home)
	c, err := Open(Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	stats, err := ebpf.EnableStats(uint32(unix.BPF_STATS_RUN_TIME))
	if err != nil {
		b.Skipf("BPF run-time statistics: %v", err)
	}
	defer stats.Close()
	s0, err := c.objs.RttSockops.Stats()
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		connectOnce(b, peer, c)
	}
	s1, err := c.objs.RttSockops.Stats()
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(s1.Runtime-s0.Runtime)/float64(b.N), "bpf-ns/op")
	b.ReportMetric(float64(s1.RunCount-s0.RunCount)/float64(b.N), "bpf-runs/op")
}

// connectOnce is probe/connect_linux.go for the tcp check (keep=false),
// without the context plumbing: socket, blocking connect, kernel RTT,
// abortive close. With c it takes the RTT from the collector.
func connectOnce(b testing.TB, peer netip.AddrPort, c *Collector) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, unix.IPPROTO_TCP)
	if err != nil {
		b.Fatal(err)
	}
	var mark uint64
	if c != nil {
		mark = c.Mark()
	}
	if err := unix.Connect(fd, &unix.SockaddrInet4{Addr: peer.Addr().As4(), Port: int(peer.Port())}); err != nil {
		b.Fatal(err)
	}
	var s kernelrtt.Sample
	ok := false
	if c != nil {
		s, ok = c.Lookup(peer, mark)
	}
	if !ok {
		s = kernelrtt.ReadFD(uintptr(fd))
	}
	if !s.Available() {
		b.Fatalf("no RTT: %s", s.Unavailable)
	}
	_ = unix.SetsockoptLinger(fd, unix.SOL_SOCKET, unix.SO_LINGER, &unix.Linger{Onoff: 1, Linger: 0})
	unix.Close(fd)
}

// startPeer runs the accept-and-close peer in cgroup dir.
func startPeer(b testing.TB, dir string) netip.AddrPort {
	cmd := helper(b, "serve", dir)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		stdin.Close()
		_ = cmd.Wait()
	})
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		b.Fatal(err)
	}
	ap, err := netip.ParseAddrPort(strings.TrimSpace(line))
	if err != nil {
		b.Fatalf("peer said %q", line)
	}
	return ap
}

// BenchmarkLookup is the user-side cost the collector puts on a probe in
// place of getsockopt(TCP_INFO): Mark, and Lookup of one fresh record.
func BenchmarkLookup(b *testing.B) {
	requireRoot(b)
	cg := enterCgroup(b)
	peer := startPeer(b, cg.home)
	c, err := Open(Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	// Records are made in batches of perRemote connections to the same peer and
	// looked up newest first, so each lookup has exactly one candidate at or
	// after its mark. Only the lookups are timed (lookup-ns).
	b.Run("mark+lookup", func(b *testing.B) {
		const batch = perRemote
		var marks [batch]uint64
		var lookups time.Duration
		for done := 0; done < b.N; done += batch {
			for i := range marks {
				marks[i] = c.Mark()
				connectOnce(b, peer, nil) // leaves its record in the ring
			}
			start := time.Now()
			for i := batch - 1; i >= 0; i-- {
				_ = c.Mark()
				if _, ok := c.Lookup(peer, marks[i]); !ok {
					b.Fatalf("no record: %+v", c.Stats())
				}
			}
			lookups += time.Since(start)
		}
		b.ReportMetric(float64(lookups.Nanoseconds())/float64((b.N+batch-1)/batch*batch), "lookup-ns")
	})
	b.Run("tcp_info-timed", func(b *testing.B) {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM, 0)
		if err != nil {
			b.Fatal(err)
		}
		defer unix.Close(fd)
		if err := unix.Connect(fd, &unix.SockaddrInet4{Addr: peer.Addr().As4(), Port: int(peer.Port())}); err != nil {
			b.Fatal(err)
		}
		start := time.Now()
		for range b.N {
			kernelrtt.ReadFD(uintptr(fd))
		}
		b.ReportMetric(float64(time.Since(start).Nanoseconds())/float64(b.N), "lookup-ns")
	})
}
