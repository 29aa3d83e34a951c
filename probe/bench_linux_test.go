package probe

import (
	"bufio"
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
	"golang.org/x/sys/unix"
)

// The benchmarks probe a peer in a child process (this test binary re-executed),
// so the peer's accept work and allocations do not count against the probe.

const benchPeerEnv = "XOSPROBE_BENCH_PEER"

// benchPeer holds the child's addresses: tcp (accept+close), http (health), dns (UDP+TCP).
type benchPeer struct{ tcp, http, dns string }

var (
	peerOnce sync.Once
	peer     benchPeer
	peerErr  error
	peerCmd  *exec.Cmd
)

func TestMain(m *testing.M) {
	if os.Getenv(benchPeerEnv) == "1" {
		runBenchPeer()
		return
	}
	code := m.Run()
	if peerCmd != nil {
		_ = peerCmd.Process.Kill()
		_ = peerCmd.Wait()
	}
	os.Exit(code)
}

// runBenchPeer serves until stdin closes (the parent exiting closes it).
func runBenchPeer() {
	tcp, _ := net.Listen("tcp", "127.0.0.1:0")
	go func() {
		for {
			c, err := tcp.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	httpL, _ := net.Listen("tcp", "127.0.0.1:0")
	go func() {
		mux := http.NewServeMux()
		mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
		_ = (&http.Server{Handler: mux, ReadHeaderTimeout: time.Second, ErrorLog: slog.NewLogLogger(slog.DiscardHandler, 0)}).Serve(httpL)
	}()
	zone := dnsZone{names: map[string]string{"web.prod.svc.cluster.local.": "10.0.0.7", "web.prod.": "10.0.0.7"}}
	dnsTCP, _ := net.Listen("tcp", "127.0.0.1:0")
	dnsUDP, _ := net.ListenPacket("udp", dnsTCP.Addr().String())
	go func() { _ = (&dns.Server{Listener: dnsTCP, Handler: zone}).ActivateAndServe() }()
	go func() { _ = (&dns.Server{PacketConn: dnsUDP, Handler: zone}).ActivateAndServe() }()
	fmt.Printf("%s %s %s\n", tcp.Addr(), httpL.Addr(), dnsTCP.Addr())
	_, _ = bufio.NewReader(os.Stdin).ReadString('\n')
}

func startBenchPeer(b *testing.B) benchPeer {
	b.Helper()
	peerOnce.Do(func() {
		peerCmd = exec.Command(os.Args[0])
		peerCmd.Env = append(os.Environ(), benchPeerEnv+"=1")
		stdin, _ := peerCmd.StdinPipe()
		_ = stdin // kept open for the child's lifetime
		out, err := peerCmd.StdoutPipe()
		if err != nil {
			peerErr = err
			return
		}
		if peerErr = peerCmd.Start(); peerErr != nil {
			return
		}
		line, err := bufio.NewReader(out).ReadString('\n')
		if err != nil {
			peerErr = fmt.Errorf("bench peer: %w", err)
			return
		}
		f := strings.Fields(line)
		peer = benchPeer{tcp: f[0], http: f[1], dns: f[2]}
	})
	if peerErr != nil {
		b.Fatal(peerErr)
	}
	return peer
}

// BenchmarkCheck runs each check back to back against the child peer.
func BenchmarkCheck(b *testing.B) {
	pe := startBenchPeer(b)
	p := New()
	p.Resolver = resolverFor(pe.dns)
	closed := closedPortB(b)
	targets := []struct {
		check  Check
		target Target
	}{
		{CheckDNS, Target{Name: "web.prod.svc.cluster.local", DNSServer: pe.dns}},
		{CheckTCP, Target{Addr: pe.tcp}},
		{CheckHTTP, Target{Addr: pe.http}},
		{CheckService, Target{ServiceAddr: pe.http}},
		{CheckNetpolAllow, Target{Addr: pe.tcp, Expect: VerdictAllow}},
		{CheckNetpolDeny, Target{Addr: closed, Expect: VerdictDeny, Listening: true}}, // a rejecting policy
	}
	for _, tc := range targets {
		b.Run(string(tc.check), func(b *testing.B) {
			fn := p.Func(tc.check)
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				if r := fn(ctx, tc.target); r.Outcome != OutcomeSuccess {
					b.Fatalf("%s: %s %s", tc.check, r.Outcome, r.Detail)
				}
			}
		})
	}
}

// BenchmarkConnectVsRaw compares the tcp check with the least a prober can
// do on the same path: socket, blocking connect, close, timed with
// clock_gettime. It reports the p50 connect time each measured and the CPU
// (user+system, from getrusage) each spent per probe.
func BenchmarkConnectVsRaw(b *testing.B) {
	pe := startBenchPeer(b)
	ap := netip.MustParseAddrPort(pe.tcp)
	sa := &unix.SockaddrInet4{Port: int(ap.Port()), Addr: ap.Addr().As4()}

	b.Run("probe", func(b *testing.B) {
		measure(b, runPhase(b, New().TCP, Target{Addr: pe.tcp}, PhaseConnect))
	})
	b.Run("raw", func(b *testing.B) {
		measure(b, func() time.Duration {
			fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
			if err != nil {
				b.Fatal(err)
			}
			start := time.Now()
			err = unix.Connect(fd, sa)
			d := time.Since(start)
			unix.Close(fd)
			if err != nil {
				b.Fatal(err)
			}
			return d
		})
	})
}

// BenchmarkHTTPFirstByte reports the http check's first_byte (request
// written to first response byte) p50 and p90 and its CPU per run against
// the child peer's health endpoint: the figure includes how the check learns
// the answer arrived.
func BenchmarkHTTPFirstByte(b *testing.B) {
	pe := startBenchPeer(b)
	measure(b, runPhase(b, New().HTTP, Target{Addr: pe.http}, PhaseFirstByte))
}

// runPhase returns one run of check toward target, reporting phase ph.
func runPhase(b *testing.B, check Func, target Target, ph Phase) func() time.Duration {
	return func() time.Duration {
		// A per-run deadline, as the agent's scheduler gives every run.
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		r := check(ctx, target)
		cancel()
		d, ok := r.Phase(ph)
		if !ok {
			b.Fatalf("%s: %s", r.Outcome, r.Detail)
		}
		return d
	}
}

func measure(b *testing.B, once func() time.Duration) {
	var ds []time.Duration
	var before, after unix.Rusage
	_ = unix.Getrusage(unix.RUSAGE_SELF, &before)
	for b.Loop() {
		ds = append(ds, once())
	}
	_ = unix.Getrusage(unix.RUSAGE_SELF, &after)
	cpu := time.Duration(after.Utime.Nano()+after.Stime.Nano()-before.Utime.Nano()-before.Stime.Nano()) * time.Nanosecond
	slices.Sort(ds)
	b.ReportMetric(float64(ds[len(ds)/2].Nanoseconds())/1e3, "p50-us")
	b.ReportMetric(float64(ds[len(ds)*9/10].Nanoseconds())/1e3, "p90-us")
	b.ReportMetric(cpu.Seconds()*1e6/float64(len(ds)), "cpu-us/op")
}

func closedPortB(b *testing.B) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	a := l.Addr().String()
	l.Close()
	return a
}
