package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/xosprobe/xosprobe/agent"
	"github.com/xosprobe/xosprobe/agent/discovery"
	"github.com/xosprobe/xosprobe/probe"
	"github.com/xosprobe/xosprobe/probe/clock"
)

type checkConfig struct {
	target, path, name, dnsServer, service, allowTarget, denyTarget string
	timeout, denyTimeout                                            time.Duration
	json                                                            bool
	count                                                           int
	junit                                                           string
	progress                                                        io.Writer // slow steps are announced here (stderr)
	kube                                                            kubeFlags
	node, pod, namespace                                            string
	ports                                                           agent.Ports
	newProber                                                       func() *probe.Prober         // a seam for tests
	runFunc                                                         func(probe.Check) probe.Func // a seam for tests; nil: the prober's
}

func newCheckCmd() *cobra.Command {
	cmd, _ := checkCommand()
	return cmd
}

// checkCommand returns the command and the config its flags fill, so tests
// can set what has no flag (the Kubernetes client, the ports).
func checkCommand() (*cobra.Command, *checkConfig) {
	cfg := &checkConfig{ports: agent.DefaultPorts, newProber: probe.New, progress: os.Stderr}
	cmd := &cobra.Command{
		Use:   "check [HOST:PORT]",
		Short: "Run the six-step connectivity check once and explain what failed",
		Long: `Runs dns, tcp, http, service, netpol-allow and netpol-deny once, each as far as
its inputs allow, and prints a table of verdicts, phase timings and kernel RTT.

Given HOST:PORT (as Test-NetConnection is), it runs tcp and http toward it and
first says what the name resolved to and which source address the route uses.

Inside an agent pod with no target flags it takes its targets from the cluster:
one agent of each OS, the per-OS probe Services, and the NetworkPolicy verdicts
the live policies imply. Elsewhere give the targets as flags; steps without
inputs are shown as skipped.

A refused netpol-deny connect proves enforcement only toward a port known to
listen (an agent's deny port, as in cluster mode); toward a --deny-target it is
inconclusive: a policy that rejects, or nothing listening.

Exit code 0 only when every step that ran passed; 1 when one failed; 2 on bad
usage; 3 when none failed but one was inconclusive (it proves nothing either
way, so it is neither a pass nor a failure of the cluster).`,
		Example: `  kubectl exec -n xosprobe ds/xosprobe-agent-windows -- xosprobe.exe check
  xosprobe check hybrid-gateway.shop.svc.cluster.local:80 --path /api/health --count 20
  xosprobe check --target 10.244.1.7:9440 --name xosprobe-windows.xosprobe.svc.cluster.local \
      --dns-server 10.96.0.10:53 --service 10.96.12.4:9440 --deny-target 10.244.1.7:9443 --json`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 1 {
				if cfg.target != "" {
					return fmt.Errorf("give the target once: HOST:PORT %q and --target %q", args[0], cfg.target)
				}
				cfg.target = args[0]
			}
			// Usage errors end here, before any probe, with exit 2.
			if err := cfg.validate(); err != nil {
				return err
			}
			steps, err := cfg.plan(cmd.Context())
			if err != nil {
				return err
			}
			rep := runCheck(cmd.Context(), cfg.newProber(), *cfg, steps)
			if cfg.target != "" {
				rep.Target = describeTarget(cmd.Context(), cfg.target, cfg.timeout)
			}
			if err := writeCheck(cmd.OutOrStdout(), rep, cfg.json); err != nil {
				return err
			}
			if cfg.junit != "" {
				if err := writeJUnit(cfg.junit, rep); err != nil {
					return err
				}
			}
			if !rep.Passed {
				return errFailed
			}
			if rep.Inconclusive {
				return errInconclusive
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.target, "target", "", "peer pod HOST:PORT for the tcp and http steps")
	f.StringVar(&cfg.path, "path", probe.DefaultHTTPPath, "health path for the http and service steps")
	f.StringVar(&cfg.name, "name", "", "Service FQDN for the dns step (svc.ns.svc.cluster.local)")
	f.StringVar(&cfg.dnsServer, "dns-server", "", "cluster DNS IP:PORT for the direct query of the dns step (taking targets from the cluster, default: the pod adapter's DNS server on Windows, the first nameserver of /etc/resolv.conf on Linux, else the --dns-service ClusterIP)")
	f.StringVar(&cfg.service, "service", "", "Service VIP:PORT for the service step")
	f.StringVar(&cfg.allowTarget, "allow-target", "", "HOST:PORT that NetworkPolicy allows from here (netpol-allow)")
	f.StringVar(&cfg.denyTarget, "deny-target", "", "HOST:PORT that NetworkPolicy denies from here (netpol-deny)")
	f.DurationVar(&cfg.timeout, "timeout", 5*time.Second, "deadline of each step")
	f.DurationVar(&cfg.denyTimeout, "deny-timeout", probe.DefaultDenyTimeout, "how long a NetworkPolicy step waits before calling a port blocked")
	f.BoolVar(&cfg.json, "json", false, "print one JSON document instead of a table")
	f.IntVar(&cfg.count, "count", 1, "run each step this many times and report min/p50/max per phase")
	f.StringVar(&cfg.junit, "junit", "", "also write the verdicts as a JUnit XML report to this file (for CI gates)")
	f.StringVar(&cfg.node, "node", os.Getenv("NODE_NAME"), "in a pod: this node's name [$NODE_NAME]")
	f.StringVar(&cfg.pod, "pod", os.Getenv("POD_NAME"), "in a pod: this pod's name [$POD_NAME]")
	f.StringVar(&cfg.namespace, "namespace", os.Getenv("POD_NAMESPACE"), "in a pod: the agents' namespace [$POD_NAMESPACE]")
	cfg.kube.register(f)
	return cmd, cfg
}

// validate refuses what cannot be a run, before any probe: these would
// otherwise fail as network faults.
func (cfg checkConfig) validate() error {
	// The agent refuses these too; a zero deadline would report a healthy
	// target as connect_timeout.
	if cfg.timeout <= 0 || cfg.denyTimeout <= 0 {
		return fmt.Errorf("--timeout %s and --deny-timeout %s must be positive", cfg.timeout, cfg.denyTimeout)
	}
	if cfg.count < 1 {
		return fmt.Errorf("--count %d: want 1 or more", cfg.count)
	}
	for _, hp := range []struct{ flag, v string }{{"--target", cfg.target}, {"--service", cfg.service},
		{"--allow-target", cfg.allowTarget}, {"--deny-target", cfg.denyTarget}, {"--dns-server", cfg.dnsServer}} {
		if hp.v == "" {
			continue
		}
		host, port, err := net.SplitHostPort(hp.v)
		if err != nil || host == "" {
			return fmt.Errorf("%s %q: want HOST:PORT (e.g. 10.244.1.7:9440, web.shop.svc.cluster.local:80)", hp.flag, hp.v)
		}
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			return fmt.Errorf("%s %q: the port must be a number from 1 to 65535", hp.flag, hp.v)
		}
	}
	if !strings.HasPrefix(cfg.path, "/") {
		return fmt.Errorf("--path %q: want an absolute path starting with /", cfg.path)
	}
	return nil
}

// targetInfo is what `check HOST:PORT` says before its table: the target,
// what its name resolved to, and the source address the route uses.
type targetInfo struct {
	Target     string   `json:"target"`
	Resolved   []string `json:"resolved,omitempty"`
	ResolveErr string   `json:"resolveError,omitempty"`
	Source     string   `json:"source,omitempty"`
}

func describeTarget(ctx context.Context, target string, timeout time.Duration) *targetInfo {
	ti := &targetInfo{Target: target}
	host, port, _ := net.SplitHostPort(target)
	ips := []string{host}
	if net.ParseIP(host) == nil {
		rctx, cancel := context.WithTimeout(ctx, timeout)
		addrs, err := net.DefaultResolver.LookupHost(rctx, host)
		cancel()
		if err != nil {
			ti.ResolveErr = err.Error()
			return ti
		}
		ti.Resolved, ips = addrs, addrs
	}
	// The source address, as Test-NetConnection reports it: the local end
	// of a TCP connection to the target (made after the timed steps, so it
	// warms nothing they measure). When that fails, a UDP "connection",
	// which sends nothing, still shows the route's source address where
	// the OS reports it.
	addr := net.JoinHostPort(ips[0], port)
	d := net.Dialer{Timeout: min(timeout, 2*time.Second)}
	if c, err := d.DialContext(ctx, "tcp", addr); err == nil {
		ti.Source = c.LocalAddr().(*net.TCPAddr).IP.String()
		_ = c.Close()
		return ti
	}
	if c, err := net.Dial("udp", addr); err == nil {
		if la, ok := c.LocalAddr().(*net.UDPAddr); ok && !la.IP.IsUnspecified() {
			ti.Source = la.IP.String()
		}
		_ = c.Close()
	}
	return ti
}

// checkReport is the outcome of one `xosprobe check` run; --json prints it as is.
type checkReport struct {
	Target    *targetInfo      `json:"target,omitempty"`
	OS        string           `json:"os"`
	Clock     clock.Resolution `json:"clock"`
	WallClock clock.Resolution `json:"wallClock"` // time.Now, shown for comparison
	Passed    bool             `json:"passed"`
	// Inconclusive is true when a step neither passed nor failed (a refusal
	// toward a port not known to listen).
	Inconclusive bool        `json:"inconclusive,omitempty"`
	Steps        []checkStep `json:"steps"`
	// Enforcement says, per destination, whether NetworkPolicy appears enforced.
	Enforcement []string `json:"networkPolicyEnforcement,omitempty"`
}

type checkStep struct {
	Check  probe.Check `json:"check"`
	To     string      `json:"to,omitempty"` // the destination, when the run covers several
	Status string      `json:"status"`       // pass, fail, inconclusive, skipped
	Why    string      `json:"why,omitempty"`
	// Result is the run shown: the only one, or with --count the first of
	// the worst verdict (the last when all passed).
	Result *probe.Result `json:"result,omitempty"`
	// With --count: how many runs passed, and each phase's spread.
	Runs   int          `json:"runs,omitempty"`
	Passed int          `json:"passedRuns,omitempty"`
	Stats  []phaseStats `json:"phaseStats,omitempty"`
}

// phaseStats is one phase over the runs of a step.
type phaseStats struct {
	Phase probe.Phase `json:"phase"`
	N     int         `json:"n"`
	MinMs float64     `json:"minMs"`
	P50Ms float64     `json:"p50Ms"`
	MaxMs float64     `json:"maxMs"`
}

// step is one planned run: a check, its target, or why it is skipped.
type step struct {
	check  probe.Check
	target probe.Target
	to     string
	skip   string
}

func (cfg checkConfig) hasTargets() bool {
	return cfg.target != "" || cfg.name != "" || cfg.service != "" || cfg.allowTarget != "" || cfg.denyTarget != ""
}

// plan returns the steps to run: from the flags, or from the cluster when the
// command runs in a pod with no target flags.
func (cfg checkConfig) plan(ctx context.Context) ([]step, error) {
	if cfg.hasTargets() {
		return cfg.flagPlan(), nil
	}
	if os.Getenv("KUBERNETES_SERVICE_HOST") == "" && cfg.kube.kubeconfig == "" {
		return nil, errors.New("no targets: give --target, --name, --service, --allow-target or --deny-target, " +
			"or run inside an agent pod (or with --kubeconfig) to take them from the cluster")
	}
	return cfg.clusterPlan(ctx)
}

func (cfg checkConfig) flagPlan() []step {
	need := func(v, flag string) string {
		if v == "" {
			return "no " + flag + " given"
		}
		return ""
	}
	return []step{
		{check: probe.CheckDNS, target: probe.Target{Name: cfg.name, DNSServer: cfg.dnsServer}, skip: need(cfg.name, "--name")},
		{check: probe.CheckTCP, target: probe.Target{Addr: cfg.target}, skip: need(cfg.target, "--target")},
		{check: probe.CheckHTTP, target: probe.Target{Addr: cfg.target, HTTPPath: cfg.path}, skip: need(cfg.target, "--target")},
		{check: probe.CheckService, target: probe.Target{ServiceAddr: cfg.service, HTTPPath: cfg.path}, skip: need(cfg.service, "--service")},
		{check: probe.CheckNetpolAllow, target: probe.Target{Addr: cfg.allowTarget, Expect: probe.VerdictAllow}, skip: need(cfg.allowTarget, "--allow-target")},
		{check: probe.CheckNetpolDeny, target: probe.Target{Addr: cfg.denyTarget, Expect: probe.VerdictDeny}, skip: need(cfg.denyTarget, "--deny-target")},
	}
}

// clusterPlan discovers the agents and probe Services and plans the six steps
// toward one agent (and the Service) of each OS.
func (cfg checkConfig) clusterPlan(ctx context.Context) ([]step, error) {
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	if err := cfg.kube.validate(cfg.node, cfg.namespace, cfg.pod); err != nil {
		return nil, err
	}
	// One list of what the informers need first: an API server that cannot
	// be reached, or RBAC that forbids it, fails here within seconds with
	// the API's own words, not after the informers' sync timeout.
	if err := cfg.preflight(ctx); err != nil {
		return nil, err
	}
	d, err := cfg.kube.discovery(cfg.node, cfg.namespace, cfg.pod, log)
	if err != nil {
		return nil, err
	}
	dctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- d.Run(dctx) }()
	for !d.Synced() {
		select {
		case err := <-done:
			return nil, fmt.Errorf("reading the cluster: %w", err)
		case <-time.After(20 * time.Millisecond):
		}
	}
	snap := d.Snapshot()
	expect := agent.Declared{}.Expectations()
	if cfg.kube.watchPolicies {
		expect = agent.PolicyExpecter{D: d, Namespace: cfg.namespace, SelfPod: cfg.pod, Log: log}.Expectations()
	}
	cancel()
	if err := <-done; err != nil { // canceled on purpose once the snapshot is taken
		log.Debug("discovery stopped", "error", err)
	}

	// Info level: which source named the DNS server is worth a line on stderr.
	dnsServer, err := clusterDNSServer(ctx, cfg.dnsServer, &cfg.kube, true,
		slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo})))
	if err != nil {
		return nil, err
	}
	var steps []step
	for _, osName := range []string{"linux", "windows"} {
		var peer *discovery.Peer
		for i := range snap.Peers {
			if snap.Peers[i].OS == osName {
				peer = &snap.Peers[i]
				break
			}
		}
		svc, haveSvc := snap.Services[osName]
		to := osName + " (no agent found)"
		if peer != nil {
			to = fmt.Sprintf("%s %s %s", osName, peer.Node, peer.IP)
		}
		add := func(c probe.Check, t probe.Target, skip string) {
			steps = append(steps, step{check: c, target: t, to: to, skip: skip})
		}
		switch {
		case !haveSvc:
			add(probe.CheckDNS, probe.Target{}, "no "+osName+" probe Service found")
			add(probe.CheckService, probe.Target{}, "no "+osName+" probe Service found")
		default:
			add(probe.CheckDNS, probe.Target{Name: svc.FQDN, DNSServer: dnsServer}, "")
			if svc.ClusterIP == "" {
				add(probe.CheckService, probe.Target{}, svc.Name+" has no ClusterIP")
			} else {
				add(probe.CheckService, probe.Target{ServiceAddr: net.JoinHostPort(svc.ClusterIP, strconv.Itoa(int(svc.Port))), HTTPPath: cfg.path}, "")
			}
		}
		if peer == nil {
			for _, c := range []probe.Check{probe.CheckTCP, probe.CheckHTTP, probe.CheckNetpolAllow, probe.CheckNetpolDeny} {
				add(c, probe.Target{}, "no ready "+osName+" agent besides this one")
			}
			continue
		}
		pi := agent.PeerInfo{Node: peer.Node, OS: peer.OS, Pod: peer.Pod, IP: peer.IP, Ports: cfg.ports}
		hp := func(port int) string { return net.JoinHostPort(peer.IP, strconv.Itoa(port)) }
		add(probe.CheckTCP, probe.Target{Addr: hp(cfg.ports.TCP)}, "")
		add(probe.CheckHTTP, probe.Target{Addr: hp(cfg.ports.HTTP), HTTPPath: cfg.path}, "")
		allow, _ := expect(pi, cfg.ports.Allow)
		deny, _ := expect(pi, cfg.ports.Deny)
		// The peer's responder serves both ports: a refusal there is a policy.
		add(probe.CheckNetpolAllow, probe.Target{Addr: hp(cfg.ports.Allow), Expect: allow, Listening: true}, "")
		add(probe.CheckNetpolDeny, probe.Target{Addr: hp(cfg.ports.Deny), Expect: deny, Listening: true}, "")
	}
	return steps, nil
}

// preflightTimeout bounds the first API requests of check in a pod.
const preflightTimeout = 5 * time.Second

func (cfg *checkConfig) preflight(ctx context.Context) error {
	client, err := cfg.kube.clientset()
	if err != nil {
		return fmt.Errorf("reading the cluster: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, preflightTimeout)
	defer cancel()
	one := metav1.ListOptions{Limit: 1}
	if _, err := client.CoreV1().Nodes().List(ctx, one); err != nil {
		return fmt.Errorf("reading the cluster: %w", err)
	}
	one.LabelSelector = cfg.kube.selector
	if _, err := client.CoreV1().Pods(cfg.namespace).List(ctx, one); err != nil {
		return fmt.Errorf("reading the cluster: %w", err)
	}
	return nil
}

func runCheck(ctx context.Context, p *probe.Prober, cfg checkConfig, steps []step) checkReport {
	p.DenyTimeout = cfg.denyTimeout
	rep := checkReport{
		OS:        runtime.GOOS,
		Clock:     clock.MeasureResolution(p.Clock, 50*time.Millisecond),
		WallClock: clock.MeasureResolution(clock.WallClock(), 50*time.Millisecond),
		Passed:    true,
	}
	timedOut := map[string]bool{} // addresses tcp could not reach within the deadline
	for _, s := range steps {
		if s.skip == "" && s.check == probe.CheckHTTP && timedOut[s.target.Addr] {
			s.skip = "tcp to the same address timed out (connect_timeout): http would only wait out its deadline"
		}
		if s.skip != "" {
			rep.Steps = append(rep.Steps, checkStep{Check: s.check, To: s.to, Status: "skipped", Why: s.skip})
			continue
		}
		st := runStep(ctx, p, cfg, s)
		r := st.Result
		if s.check == probe.CheckTCP && r.Outcome == probe.OutcomeConnectTimeout {
			timedOut[s.target.Addr] = true
		}
		switch st.Status {
		case "inconclusive":
			rep.Inconclusive = true
		case "fail":
			rep.Passed = false
		}
		rep.Steps = append(rep.Steps, st)
		if s.check == probe.CheckNetpolDeny {
			rep.Enforcement = append(rep.Enforcement, enforcement(s.to, r))
		}
	}
	return rep
}

// slowStep is how long a step runs before check says it is still waiting
// (a variable for tests).
var slowStep = 2 * time.Second

// runStep runs one planned step cfg.count times. Its status is the worst
// run's: one failing run fails the step.
func runStep(ctx context.Context, p *probe.Prober, cfg checkConfig, s step) checkStep {
	st := checkStep{Check: s.check, To: s.to}
	var shown *probe.Result
	byPhase := map[probe.Phase][]time.Duration{}
	var order []probe.Phase
	rank := map[string]int{"pass": 0, "inconclusive": 1, "fail": 2}
	run := p.Func
	if cfg.runFunc != nil {
		run = cfg.runFunc
	}
	runs := max(cfg.count, 1)
	for i := range runs {
		sctx, cancel := context.WithTimeout(ctx, cfg.timeout)
		after, announced := slowStep, make(chan struct{})
		slow := time.AfterFunc(after, func() {
			defer close(announced)
			if cfg.progress != nil {
				fmt.Fprintf(cfg.progress, "  %s%s: still waiting after %s (deadline %s)...\n", prefix(s.to), s.check, after, cfg.timeout)
			}
		})
		r := run(s.check)(sctx, s.target)
		if !slow.Stop() {
			<-announced // the line is out before the table
		}
		cancel()
		status, why := stepStatus(r)
		if status == "pass" {
			st.Passed++
		}
		switch {
		case i == 0, rank[status] > rank[st.Status]:
			st.Status, st.Why, shown = status, why, &r
		case status == "pass" && st.Status == "pass":
			shown = &r // all passed so far: show the latest
		}
		for _, ph := range r.Phases {
			if _, ok := byPhase[ph.Phase]; !ok {
				order = append(order, ph.Phase)
			}
			byPhase[ph.Phase] = append(byPhase[ph.Phase], ph.Duration)
		}
	}
	st.Result = shown
	if runs > 1 {
		st.Runs = runs
		for _, ph := range order {
			ds := byPhase[ph]
			slices.Sort(ds)
			msOf := func(d time.Duration) float64 { return d.Seconds() * 1e3 }
			st.Stats = append(st.Stats, phaseStats{Phase: ph, N: len(ds),
				MinMs: msOf(ds[0]), P50Ms: msOf(ds[(len(ds)-1)/2]), MaxMs: msOf(ds[len(ds)-1])})
		}
		if st.Status != "pass" {
			st.Why = fmt.Sprintf("%d of %d runs passed; %s", st.Passed, runs, st.Why)
		}
	}
	return st
}

// stepStatus judges one run: pass, fail, or inconclusive when the run
// proves nothing either way — a refusal toward a port not known to listen,
// or a NetworkPolicy step whose expected verdict depends on policy kinds the
// evaluator cannot see (a Calico GlobalNetworkPolicy, say): observed, not
// judged, so never a failure of the cluster.
func stepStatus(r probe.Result) (status, why string) {
	switch {
	case r.Outcome == probe.OutcomeInconclusive, r.Outcome == probe.OutcomeExpectationUnknown:
		return "inconclusive", r.Outcome.Explain()
	case !r.Succeeded():
		return "fail", r.Outcome.Explain()
	}
	return "pass", ""
}

// enforcement turns a netpol-deny result into the operator's finding.
func enforcement(to string, r *probe.Result) string {
	where := r.Addr
	if to != "" {
		where = to
	}
	switch {
	case r.Expected == probe.VerdictAllow:
		return fmt.Sprintf("NetworkPolicy toward %s: not testable, no policy denies the deny port", where)
	case r.Outcome == probe.OutcomeInconclusive:
		return fmt.Sprintf("NetworkPolicy toward %s: inconclusive — connection refused: a policy that rejects, or nothing listening; "+
			"not proof of enforcement", where)
	case r.Outcome == probe.OutcomeExpectationUnknown:
		observed := string(r.Observed)
		if observed == "" {
			observed = "no verdict"
		}
		return fmt.Sprintf("NetworkPolicy toward %s: not judged — policy kinds xosprobe does not model decide this traffic "+
			"(observed: %s); `xosprobe policy explain` names them", where, observed)
	case r.Observed == probe.VerdictDeny:
		return fmt.Sprintf("NetworkPolicy toward %s: enforced — %s", where, r.Detail)
	case r.Observed == probe.VerdictAllow:
		return fmt.Sprintf("NetworkPolicy toward %s: NOT enforced — the denied port accepted a connection. "+
			"The CNI on the destination node does not enforce NetworkPolicy (Flannel on Windows enforces none; some Calico for Windows setups only partly)", where)
	}
	return fmt.Sprintf("NetworkPolicy toward %s: unknown (%s)", where, r.Outcome)
}

func writeCheck(w io.Writer, rep checkReport, asJSON bool) error {
	if asJSON {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(rep)
	}
	if ti := rep.Target; ti != nil {
		resolved := "an address"
		switch {
		case ti.ResolveErr != "":
			resolved = "does not resolve: " + ti.ResolveErr
		case len(ti.Resolved) > 0:
			resolved = "resolves to " + strings.Join(ti.Resolved, ", ")
		}
		source := ti.Source
		if source == "" {
			source = "unknown (no route)"
		}
		fmt.Fprintf(w, "target %s: %s; source address %s\n", ti.Target, resolved, source)
	}
	fmt.Fprintf(w, "xosprobe check on %s: clock %s, resolution %s (time.Now steps %s)\n\n",
		rep.OS, rep.Clock.Clock, rep.Clock.Step, rep.WallClock.Step)
	withTo := false
	for _, s := range rep.Steps {
		withTo = withTo || s.To != ""
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	to := func(s checkStep) string {
		if withTo {
			return s.To + "\t"
		}
		return ""
	}
	if withTo {
		fmt.Fprint(tw, "TO\t")
	}
	header := "TIMINGS (ms)"
	for _, s := range rep.Steps {
		if s.Runs > 1 {
			header = "TIMINGS (ms, min/p50/max)"
		}
	}
	fmt.Fprintf(tw, "STEP\tVERDICT\tREASON\t%s\tKERNEL RTT\n", header)
	var notes []string
	for _, s := range rep.Steps {
		if s.Result == nil {
			fmt.Fprintf(tw, "%s%s\tSKIPPED\t%s\t\t\n", to(s), s.Check, s.Why)
			continue
		}
		r := s.Result
		reason := "-"
		if r.Succeeded() && r.Detail != "" {
			reason = r.Detail // e.g. "blocked as expected (connect_timeout)"
		}
		if !r.Succeeded() {
			reason = string(r.Outcome)
			notes = append(notes, fmt.Sprintf("%s%s: %s\n    %s\n    why: %s", prefix(s.To), s.Check, r.Outcome, r.Detail, s.Why))
		}
		for _, f := range r.Findings {
			notes = append(notes, fmt.Sprintf("%s%s: finding %s\n    %s", prefix(s.To), s.Check, f.Code, f.Detail))
		}
		rtt := "n/a"
		if r.KernelRTT.Available() {
			rtt = fmt.Sprintf("%s (%s)", ms(r.KernelRTT.RTT), r.KernelRTT.Source)
		}
		tm := timings(r.Phases)
		verdict := strings.ToUpper(s.Status)
		if s.Runs > 1 {
			tm = spreads(s.Stats)
			verdict = fmt.Sprintf("%s %d/%d", verdict, s.Passed, s.Runs)
		}
		fmt.Fprintf(tw, "%s%s\t%s\t%s\t%s\t%s\n", to(s), s.Check, verdict, reason, tm, rtt)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(rep.Enforcement) > 0 {
		fmt.Fprintf(w, "\n%s\n", strings.Join(rep.Enforcement, "\n"))
	}
	if len(notes) > 0 {
		fmt.Fprintf(w, "\n%s\n", strings.Join(notes, "\n"))
	}
	verdict := "all steps that ran passed"
	switch {
	case !rep.Passed:
		verdict = "FAILED"
	case rep.Inconclusive:
		verdict = "INCONCLUSIVE: no step failed, but not every step could tell"
	}
	_, err := fmt.Fprintf(w, "\n%s\n", verdict)
	return err
}

func prefix(to string) string {
	if to == "" {
		return ""
	}
	return "[" + to + "] "
}

func timings(phases []probe.PhaseDuration) string {
	parts := make([]string, 0, len(phases))
	for _, p := range phases {
		parts = append(parts, fmt.Sprintf("%s=%s", p.Phase, ms(p.Duration)))
	}
	if len(parts) == 0 {
		return "-"
	}
	return strings.Join(parts, " ")
}

// spreads prints each phase as min/p50/max over the runs.
func spreads(stats []phaseStats) string {
	parts := make([]string, 0, len(stats))
	for _, p := range stats {
		parts = append(parts, fmt.Sprintf("%s=%.3f/%.3f/%.3f", p.Phase, p.MinMs, p.P50Ms, p.MaxMs))
	}
	if len(parts) == 0 {
		return "-"
	}
	return strings.Join(parts, " ")
}

// ms prints a duration in milliseconds to the microsecond.
func ms(d time.Duration) string { return fmt.Sprintf("%.3f", d.Seconds()*1e3) }
