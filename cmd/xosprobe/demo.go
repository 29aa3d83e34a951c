package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	mrand "math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/miekg/dns"
	"github.com/spf13/cobra"

	"github.com/xosprobe/xosprobe/aggregator"
	"github.com/xosprobe/xosprobe/aggregator/auth"
	"github.com/xosprobe/xosprobe/aggregator/matrix"
	"github.com/xosprobe/xosprobe/probe"
)

type demoFlags struct {
	linuxBinary         string // default: this executable
	linux, windows      int
	interval, duration  time.Duration
	refresh             time.Duration
	windowsBinary, wine string
	check               string
}

func newDemoCmd() *cobra.Command {
	f := demoFlags{}
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Run an aggregator and a small Windows/Linux agent mesh on loopback, and show the cross-OS delta live",
		Long: `Starts, on loopback only: an aggregator, a DNS server answering for the
probe Services, Linux agents (this binary) and Windows agents — the real
windows/amd64 binary under Wine when Wine and xosprobe.exe are found. Without
them the Windows agents are this Linux binary labelled windows, and the output
says so: their delta then measures nothing but noise.

Every few seconds it prints the six steps per OS pair and the aggregator's
OS x OS table with the cross-OS delta. /metrics and /matrix are served while it
runs. No NetworkPolicy engine runs on loopback, so netpol-deny reports
policy_not_enforced, as on a Flannel Windows node.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			if f.duration > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, f.duration)
				defer cancel()
			}
			return runDemo(ctx, cmd.OutOrStdout(), f)
		},
	}
	fl := cmd.Flags()
	fl.IntVar(&f.linux, "linux-agents", 2, "Linux agents to start")
	fl.IntVar(&f.windows, "windows-agents", 2, "Windows agents to start")
	fl.DurationVar(&f.interval, "interval", time.Second, "probe interval of every agent")
	fl.DurationVar(&f.duration, "duration", 0, "stop after this long (0: until interrupted)")
	fl.DurationVar(&f.refresh, "refresh", 5*time.Second, "how often the live view is printed")
	fl.StringVar(&f.windowsBinary, "windows-binary", "", "the windows/amd64 xosprobe.exe (default: next to this binary)")
	fl.StringVar(&f.wine, "wine", "wine", "the Wine launcher")
	fl.StringVar(&f.check, "check", "tcp", "check whose latency the heat map shows")
	return cmd
}

// demoAgent is one agent process of the demo.
type demoAgent struct {
	node, os string
	base     int
	cmd      *exec.Cmd
	log      string
}

func runDemo(ctx context.Context, out io.Writer, f demoFlags) error {
	if f.linux < 1 || f.windows < 1 {
		return errors.New("the demo needs at least one agent of each OS")
	}
	if f.interval <= 0 || f.refresh <= 0 {
		return errors.New("--interval and --refresh must be positive")
	}
	self := f.linuxBinary
	if self == "" {
		exe, err := os.Executable()
		if err != nil {
			return err
		}
		self = exe
	}
	if f.windowsBinary == "" {
		f.windowsBinary = filepath.Join(filepath.Dir(self), "xosprobe.exe")
	}
	wine, wineErr := exec.LookPath(f.wine)
	if wineErr == nil {
		if _, err := os.Stat(f.windowsBinary); err != nil {
			wineErr = err
		} else {
			wineErr = wineRuns(ctx, wine, f.windowsBinary)
		}
	}
	dir, err := os.MkdirTemp("", "xosprobe-demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)

	token := make([]byte, 16)
	_, _ = rand.Read(token)
	tokenFile := filepath.Join(dir, "token")
	if err := os.WriteFile(tokenFile, []byte(hex.EncodeToString(token)), 0o600); err != nil {
		return err
	}

	// DNS: answers "localhost." so the dns step's direct query has a server
	// without any query leaving loopback.
	dnsAddr, stopDNS, err := demoDNS()
	if err != nil {
		return err
	}
	defer stopDNS()

	// The aggregator, in this process.
	shared, err := auth.NewSharedToken("demo-agent", hex.EncodeToString(token))
	if err != nil {
		return err
	}
	aggLog, err := os.Create(filepath.Join(dir, "aggregator.log"))
	if err != nil {
		return err
	}
	defer aggLog.Close()
	agg, err := aggregator.New(aggregator.Config{Auth: shared, DeltaWindow: time.Minute, ComputeInterval: 2 * time.Second,
		ShutdownDelay: -1, Log: slog.New(slog.NewTextHandler(aggLog, nil)), Version: version})
	if err != nil {
		return err
	}
	aggL, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	aggURL := "http://" + aggL.Addr().String()
	aggCtx, stopAgg := context.WithCancel(context.Background())
	aggDone := make(chan error, 1)
	go func() { aggDone <- agg.Run(aggCtx, aggL) }()
	defer func() {
		stopAgg()
		if err := <-aggDone; err != nil {
			fmt.Fprintln(out, "aggregator:", err)
		}
	}()

	// The agents: six consecutive loopback ports each (probe ports and admin).
	var agents []*demoAgent
	for i := range f.linux + f.windows {
		osName, n := "linux", i+1
		if i >= f.linux {
			osName, n = "windows", i-f.linux+1
		}
		base, err := freePortRange(6, agents)
		if err != nil {
			return err
		}
		agents = append(agents, &demoAgent{node: fmt.Sprintf("demo-%s-%d", osName, n), os: osName, base: base,
			log: filepath.Join(dir, fmt.Sprintf("demo-%s-%d.log", osName, n))})
	}
	var peers, services []string
	firstHTTP := map[string]int{}
	for _, a := range agents {
		peers = append(peers, fmt.Sprintf("%s=%s@127.0.0.1:%d", a.node, a.os, a.base))
		if _, ok := firstHTTP[a.os]; !ok {
			firstHTTP[a.os] = a.base
			services = append(services, fmt.Sprintf("--service=%s=127.0.0.1:%d,localhost", a.os, a.base))
		}
	}
	peersFile := filepath.Join(dir, "peers")
	if err := os.WriteFile(peersFile, []byte(strings.Join(peers, "\n")+"\n"), 0o600); err != nil {
		return err
	}

	fmt.Fprintf(out, "xosprobe demo: %d Linux and %d Windows agents, aggregator and DNS on loopback\n", f.linux, f.windows)
	note := ""
	if wineErr == nil {
		fmt.Fprintf(out, "Windows agents: the windows/amd64 binary %s under %s (QueryPerformanceCounter clock, Winsock)\n", f.windowsBinary, wine)
		note = wineLatencyNote
		fmt.Fprintln(out, "NOTE: "+note)
	} else {
		fmt.Fprintf(out, "NOTE: no Windows binary under Wine here (%v).\n"+
			"      The \"windows\" agents are this Linux binary labelled windows: their delta is noise, not the Windows path.\n"+
			"      Install wine64, run test/wine/setup.sh and make build for the real thing.\n", wineErr)
		note = "\"windows\" agents are this Linux binary labelled windows: the delta is noise."
	}
	fmt.Fprintf(out, "aggregator: %s/metrics  %s/matrix\n", aggURL, aggURL)
	fmt.Fprintln(out, "NetworkPolicy: nothing enforces it on loopback, so netpol-deny fails with policy_not_enforced (as on a Flannel Windows node).")

	n := len(agents)
	for _, a := range agents {
		args := []string{"agent", "--node", a.node, "--pod", a.node, "--listen-ip", "127.0.0.1",
			"--port-base", strconv.Itoa(a.base), "--admin-addr", net.JoinHostPort("127.0.0.1", strconv.Itoa(a.base+5)),
			"--peers-file", peersFile, "--k-same", strconv.Itoa(n), "--k-cross", strconv.Itoa(n), "--max-peers", strconv.Itoa(2 * n),
			"--dns-server", dnsAddr, "--aggregator-url", aggURL, "--token-file", tokenFile,
			"--interval", f.interval.String(), "--timeout", (f.interval * 9 / 10).String(), "--deny-timeout", "300ms",
			"--shutdown-delay", "0s", "--log-level", "warn"}
		args = append(args, services...)
		switch {
		case a.os == "linux":
			a.cmd = exec.Command(self, args...)
		case wineErr == nil:
			a.cmd = exec.Command(wine, append([]string{f.windowsBinary}, args...)...)
			a.cmd.Env = append(os.Environ(), "WINEDEBUG=-all")
		default:
			a.cmd = exec.Command(self, append(args, "--os", "windows")...)
		}
		logFile, err := os.Create(a.log)
		if err != nil {
			return err
		}
		defer logFile.Close()
		a.cmd.Stdout, a.cmd.Stderr = logFile, logFile
		dieWithParent(a.cmd)
		if err := a.cmd.Start(); err != nil {
			return fmt.Errorf("starting %s: %w", a.node, err)
		}
	}
	var wg sync.WaitGroup
	exited := make(chan *demoAgent, len(agents))
	for _, a := range agents {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = a.cmd.Wait()
			exited <- a
		}()
	}
	stopping := false
	defer func() {
		stopping = true
		for _, a := range agents {
			_ = a.cmd.Process.Kill()
		}
		wg.Wait()
	}()
	for _, a := range agents {
		fmt.Fprintf(out, "  %-16s %-7s probe ports %d-%d  metrics http://127.0.0.1:%d/metrics\n", a.node, a.os, a.base, a.base+3, a.base+5)
	}

	start := time.Now()
	tick := time.NewTicker(f.refresh)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			fmt.Fprintf(out, "\n=== final, after %s\n", time.Since(start).Round(time.Second))
			return showDemo(out, agg, f.check, note)
		case a := <-exited:
			if stopping {
				continue
			}
			tail, _ := os.ReadFile(a.log)
			return fmt.Errorf("agent %s exited early: %s\n%s", a.node, a.cmd.ProcessState, lastLines(string(tail), 20))
		case <-tick.C:
			fmt.Fprintf(out, "\n=== %s\n", time.Since(start).Round(time.Second))
			if err := showDemo(out, agg, f.check, note); err != nil {
				return err
			}
		}
	}
}

// wineLatencyNote labels every view of Wine-run Windows agents: on a busy
// host Wine adds milliseconds to every Windows connect, which a reader who
// expects "8-15 ms slower" would take for confirmation.
const wineLatencyNote = "windows latencies here are emulated: xosprobe.exe under Wine on this Linux host. " +
	"They measure Wine and this machine, not Windows or HNS; the delta below is no Windows figure."

// wineRuns runs the Windows binary's version command under Wine: a prefix
// not prepared for Go binaries (no ProcessPrng, which Go >= 1.22 needs and
// Wine 8 lacks; test/wine/setup.sh installs a shim) crashes the Go runtime,
// and the demo then says so and falls back instead of failing.
func wineRuns(ctx context.Context, wine, exe string) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, wine, exe, "version")
	cmd.Env = append(os.Environ(), "WINEDEBUG=-all")
	out, err := cmd.CombinedOutput()
	if err == nil && strings.HasPrefix(string(out), "xosprobe ") {
		return nil
	}
	first, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
	if strings.Contains(string(out), "ProcessPrng") || strings.Contains(string(out), "bcryptprimitives") {
		return fmt.Errorf("the Wine prefix cannot run Go binaries (%s): run test/wine/setup.sh", first)
	}
	return fmt.Errorf("%s %s version failed (%w): %s; is the Wine prefix prepared (test/wine/setup.sh)?", wine, exe, err, first)
}

// showDemo prints the six steps per OS pair, then the aggregator's OS x OS
// table with the cross-OS delta and the per-node heat map, under note.
func showDemo(out io.Writer, agg *aggregator.Server, check, note string) error {
	if err := agg.Compute(); err != nil {
		return err
	}
	if note != "" {
		fmt.Fprintln(out, "("+note+")")
	}
	m := agg.Matrix("", true)
	sort.Slice(m.Pairs, func(i, j int) bool { return m.Pairs[i].Pair < m.Pairs[j].Pair })
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprint(tw, "six steps (success, p50 ms)")
	for _, c := range probe.Checks {
		fmt.Fprintf(tw, "\t%s", c)
	}
	fmt.Fprintln(tw)
	for _, p := range m.Pairs {
		fmt.Fprint(tw, p.Pair)
		for _, c := range probe.Checks {
			fmt.Fprintf(tw, "\t%s", stepCell(p.Checks[string(c)], string(c)))
		}
		fmt.Fprintln(tw)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(out)
	mm := agg.Matrix(check, true)
	return matrix.Render(out, mm, matrix.RenderOptions{Check: check})
}

// mainPhase is the phase a step's latency is summarised by.
var mainPhase = map[string]string{"dns": "resolve_system", "tcp": "connect", "http": "first_byte",
	"service": "total", "netpol-allow": "connect", "netpol-deny": "connect"}

func stepCell(c matrix.CheckSummary, check string) string {
	if c.Samples == 0 {
		return "-"
	}
	cell := fmt.Sprintf("%3.0f%%", c.SuccessRate*100)
	if ph, ok := c.Phases[mainPhase[check]]; ok && ph.Samples > 0 {
		cell += fmt.Sprintf(" %.3f", ph.P50*1e3)
	}
	return cell
}

// demoDNS serves A 127.0.0.1 for "localhost." over UDP and TCP on one
// loopback port (TCP alone where UDP sockets cannot be made).
func demoDNS() (string, func(), error) {
	h := dns.HandlerFunc(func(w dns.ResponseWriter, q *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(q)
		if len(q.Question) == 1 && q.Question[0].Name == "localhost." && q.Question[0].Qtype == dns.TypeA {
			rr, _ := dns.NewRR("localhost. 5 IN A 127.0.0.1")
			m.Answer = append(m.Answer, rr)
		} else if len(q.Question) == 1 && q.Question[0].Name != "localhost." {
			m.Rcode = dns.RcodeNameError
		}
		_ = w.WriteMsg(m)
	})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	servers := []*dns.Server{{Listener: l, Handler: h}}
	if pc, err := net.ListenPacket("udp", l.Addr().String()); err == nil {
		servers = append(servers, &dns.Server{PacketConn: pc, Handler: h})
	}
	for _, s := range servers {
		started := make(chan struct{})
		s.NotifyStartedFunc = func() { close(started) }
		go func() { _ = s.ActivateAndServe() }()
		<-started
	}
	return l.Addr().String(), func() {
		for _, s := range servers {
			_ = s.Shutdown()
		}
	}, nil
}

// freePortRange finds n consecutive free loopback ports below the ephemeral
// range (so no client's TIME_WAIT blocks them), clear of the agents' ranges.
func freePortRange(n int, taken []*demoAgent) (int, error) {
	for range 100 {
		base := 20000 + mrand.IntN(12000)
		ok := true
		for _, a := range taken {
			ok = ok && (base+n <= a.base || base >= a.base+n)
		}
		for i := 0; i < n && ok; i++ {
			l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(base+i)))
			if err != nil {
				ok = false
				break
			}
			l.Close()
		}
		if ok {
			return base, nil
		}
	}
	return 0, errors.New("no free loopback port range")
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
