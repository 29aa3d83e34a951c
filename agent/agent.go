// Package agent is the DaemonSet process: it serves the responder ports peers
// probe, picks its own peers from a Source (the Kubernetes informers or a
// static list), runs the six checks against them on a schedule, exports the
// results as metrics and ships them to the aggregator.
package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/xosprobe/xosprobe/agent/metrics"
	"github.com/xosprobe/xosprobe/agent/peers"
	"github.com/xosprobe/xosprobe/agent/reporter"
	"github.com/xosprobe/xosprobe/agent/residency"
	"github.com/xosprobe/xosprobe/agent/responder"
	"github.com/xosprobe/xosprobe/agent/scheduler"
	"github.com/xosprobe/xosprobe/aggregator/wire"
	"github.com/xosprobe/xosprobe/probe"
	"github.com/xosprobe/xosprobe/probe/clock"
	"github.com/xosprobe/xosprobe/probe/kernelrtt"
	"github.com/xosprobe/xosprobe/probe/kernelrtt/ebpf"
)

// Config is the agent's whole configuration; cmd/ fills it from flags.
type Config struct {
	Self probe.Endpoint // own pod, node and OS

	ListenIP  string // responder listen address ("" = all interfaces)
	Ports     Ports
	AdminAddr string // /metrics, /healthz, /readyz

	Peers     peers.Config
	Scheduler scheduler.Config
	HTTPPath  string
	DNSServer string // cluster DNS host:port for the dns step's direct query; "" skips it
	// DenyTimeout bounds the netpol steps' wait for a blocked port.
	DenyTimeout time.Duration
	// PolicyGrace is how long after its expected verdict changes a netpol
	// job's mismatches are held back (see lifecycle); 0 holds none.
	PolicyGrace time.Duration
	// Warmup is how long a new destination's failures are held back while
	// nothing toward it has succeeded (see lifecycle); 0 holds none.
	Warmup time.Duration
	// KernelRTT chooses where probes' kernel RTT comes from; "" is auto.
	KernelRTT KernelRTTMode

	Reporter reporter.Config // URL "" disables reporting (metrics only)

	// ShutdownDelay keeps the responder serving after readiness turns false,
	// so peers and Services stop sending before the ports close.
	ShutdownDelay time.Duration
	// ReleaseStartupPages gives back, once the agent is up, the executable's
	// pages only start-up touched (Linux; see package residency).
	ReleaseStartupPages bool
	Version             string
}

// KernelRTTMode chooses the source of probes' kernel RTT.
type KernelRTTMode string

const (
	// KernelRTTAuto uses the eBPF collector when it loads (Linux, with
	// CAP_BPF and CAP_NET_ADMIN), else the socket query, and logs why once.
	KernelRTTAuto KernelRTTMode = "auto"
	// KernelRTTEBPF requires the eBPF collector: the agent does not start
	// without it.
	KernelRTTEBPF KernelRTTMode = "ebpf"
	// KernelRTTSocket asks each probe's socket: getsockopt(TCP_INFO) on Linux,
	// WSAIoctl(SIO_TCP_INFO) on Windows.
	KernelRTTSocket KernelRTTMode = "tcp_info"
)

// KernelRTTModes lists the valid modes, for flag help and validation.
var KernelRTTModes = []KernelRTTMode{KernelRTTAuto, KernelRTTEBPF, KernelRTTSocket}

// Expecter says which NetworkPolicy verdict to expect for traffic from this
// agent to port on dst, and why (the deciding policies, for the mismatch log).
// Static mode declares it; in a cluster the NetworkPolicy evaluator computes
// it from the live objects.
type Expecter interface {
	// Expectations returns the expectation function for one recomputation of
	// the job set, built from the current state.
	Expectations() ExpectFunc
	// Changes fires when expectations may have changed; nil if they never do.
	Changes() <-chan struct{}
}

// ExpectFunc is the expected verdict for port on dst, and why.
type ExpectFunc func(dst PeerInfo, port int) (probe.Verdict, string)

// Declared expects what the shipped NetworkPolicies declare between agents:
// the allow port open, the deny port blocked.
type Declared struct{}

func (Declared) Expectations() ExpectFunc { return declared }
func (Declared) Changes() <-chan struct{} { return nil }

func declared(dst PeerInfo, port int) (probe.Verdict, string) {
	if port == dst.Ports.Deny {
		return probe.VerdictDeny, "declared: the deny port"
	}
	return probe.VerdictAllow, "declared: the allow port"
}

// Agent is one running agent.
type Agent struct {
	cfg     Config
	log     *slog.Logger
	source  Source
	expect  Expecter
	prober  *probe.Prober
	metrics *metrics.Agent
	report  *reporter.Reporter // nil when reporting is off
	sched   *scheduler.Scheduler

	ready atomic.Bool
	// draining is set once shutdown starts: nothing may turn ready true again.
	draining atomic.Bool
	mu       sync.Mutex
	lastSel  []peers.Peer
	// why holds the expecter's reason per netpol job key; mismatch the last
	// mismatch logged per key, so each change is logged once.
	why      map[string]string
	mismatch map[string]string
	// denyState is, per netpol-deny job expecting deny, whether its last run
	// was blocked; enforced counts them per destination OS.
	denyState map[string]denyState
	enforced  map[string]*[2]int // dst OS -> {blocked, total}
	onResult  func(probe.Result) // test hook
	// excluded is the last exclusion set logged, by node.
	excluded map[string]ExcludedPeer

	life *lifecycle
	now  func() time.Time // the lifecycle's clock; tests replace it
}

type denyState struct {
	dstOS   string
	blocked bool
}

// New builds an agent. expect may be nil for Declared.
func New(cfg Config, src Source, expect Expecter, log *slog.Logger) (*Agent, error) {
	if cfg.Self.Node == "" || (cfg.Self.OS != "linux" && cfg.Self.OS != "windows") {
		return nil, fmt.Errorf("agent: own node %q and OS %q (linux or windows) are required", cfg.Self.Node, cfg.Self.OS)
	}
	if err := cfg.Peers.Validate(); err != nil {
		return nil, err
	}
	if cfg.Scheduler.Interval <= 0 {
		return nil, errors.New("agent: probe interval must be positive")
	}
	if cfg.PolicyGrace < 0 || cfg.Warmup < 0 {
		return nil, fmt.Errorf("agent: policy grace %s and warm-up %s must not be negative", cfg.PolicyGrace, cfg.Warmup)
	}
	if expect == nil {
		expect = Declared{}
	}
	a := &Agent{cfg: cfg, log: log, source: src, expect: expect, prober: probe.New(),
		metrics: metrics.New(cfg.Self.OS, cfg.Version), why: map[string]string{}, mismatch: map[string]string{},
		denyState: map[string]denyState{}, enforced: map[string]*[2]int{}, now: time.Now}
	a.life = newLifecycle(cfg.PolicyGrace, cfg.Warmup, a.now())
	if cfg.DenyTimeout > 0 {
		a.prober.DenyTimeout = cfg.DenyTimeout
	}
	if cfg.Reporter.URL != "" {
		rc := cfg.Reporter
		rc.Agent = wire.Agent{Pod: cfg.Self.Pod, Node: cfg.Self.Node, OS: cfg.Self.OS}
		a.report = reporter.New(rc, &http.Client{}, reporterStats{a.metrics}, log.With("component", "reporter"))
	}
	a.sched = scheduler.New(cfg.Scheduler, a.runJob,
		func(j scheduler.Job) { a.metrics.ProbeSkipped.WithLabelValues(string(j.Check)).Inc() },
		func(n int) { a.metrics.ProbeLoops.Set(float64(n)) })
	return a, nil
}

// Metrics exposes the agent's metrics (for tests and the admin server).
func (a *Agent) Metrics() *metrics.Agent { return a.metrics }

// Run serves and probes until ctx ends, then shuts down in order: readiness
// false, drain, stop probing, flush results, close the ports.
func (a *Agent) Run(ctx context.Context) error {
	res := clock.MeasureResolution(a.prober.Clock, 100*time.Millisecond)
	a.metrics.SetClockResolution(res)
	a.metrics.SetClockResolution(clock.MeasureResolution(clock.WallClock(), 100*time.Millisecond))
	a.log.Info("agent starting", "node", a.cfg.Self.Node, "os", a.cfg.Self.OS, "clock", res.Clock, "clock_step", res.Step)
	collector, err := a.openKernelRTT()
	if err != nil {
		return err
	}
	if collector != nil {
		defer collector.Close() // after wg.Wait: no probe runs any more
	}

	adminL, err := listenAdmin(a.cfg.AdminAddr)
	if err != nil {
		return err
	}
	resp, err := responder.Listen(responder.Config{
		HTTPAddr:  net.JoinHostPort(a.cfg.ListenIP, strconv.Itoa(a.cfg.Ports.HTTP)),
		TCPAddr:   net.JoinHostPort(a.cfg.ListenIP, strconv.Itoa(a.cfg.Ports.TCP)),
		AllowAddr: net.JoinHostPort(a.cfg.ListenIP, strconv.Itoa(a.cfg.Ports.Allow)),
		DenyAddr:  net.JoinHostPort(a.cfg.ListenIP, strconv.Itoa(a.cfg.Ports.Deny)),
		Node:      a.cfg.Self.Node, OS: a.cfg.Self.OS,
	}, a.log.With("component", "responder"))
	if err != nil {
		adminL.Close()
		return err
	}
	admin := newAdminServer(a.adminMux())

	// Each part gets its own context so shutdown can stop them in order.
	respCtx, stopResp := context.WithCancel(context.Background())
	probeCtx, stopProbing := context.WithCancel(context.Background())
	reportCtx, stopReport := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	goRun := func(f func()) { wg.Add(1); go func() { defer wg.Done(); f() }() }
	goRun(func() { resp.Serve(respCtx) })
	goRun(func() { _ = admin.Serve(adminL) })
	goRun(func() { a.sched.Run(probeCtx) })
	if a.report != nil {
		goRun(func() { a.report.Run(reportCtx) })
	}
	goRun(func() { a.follow(probeCtx) })

	<-ctx.Done()
	a.draining.Store(true)
	a.ready.Store(false)
	a.log.Info("shutting down: not ready, draining", "delay", a.cfg.ShutdownDelay)
	time.Sleep(a.cfg.ShutdownDelay)
	stopProbing()
	stopReport() // the reporter makes one last flush with its own grace period
	stopResp()
	sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	_ = admin.Shutdown(sctx)
	cancel()
	wg.Wait()
	a.log.Info("agent stopped")
	return nil
}

// openKernelRTT picks the kernel RTT source per the configured mode and logs
// it once, with the reason when the eBPF collector is unavailable. A non-nil
// collector is the prober's until the caller closes it.
func (a *Agent) openKernelRTT() (*ebpf.Collector, error) {
	socket := kernelrtt.SourceTCPInfo
	if runtime.GOOS == "windows" {
		socket = kernelrtt.SourceSIOTCPInfo
	}
	mode := a.cfg.KernelRTT
	if mode == "" {
		mode = KernelRTTAuto
	}
	if mode == KernelRTTSocket || (mode == KernelRTTAuto && runtime.GOOS != "linux") {
		a.log.Info("kernel RTT source", "source", socket, "mode", mode)
		return nil, nil
	}
	c, err := ebpf.Open(ebpf.Options{})
	if err != nil {
		if mode == KernelRTTEBPF {
			return nil, fmt.Errorf("kernel RTT (--kernel-rtt=ebpf): %w", err)
		}
		// Missing privileges is the default deployment (without the ebpf
		// overlay): worth a line, not a warning.
		level, attrs := slog.LevelWarn, []any{"source", socket, "mode", mode, "reason", err.Error()}
		if errors.Is(err, ebpf.ErrPermission) {
			level, attrs = slog.LevelInfo, append(attrs, "hint", "deploy with manifests/overlays/ebpf to grant CAP_BPF and CAP_NET_ADMIN")
		}
		a.log.Log(context.Background(), level, "kernel RTT source: eBPF collector unavailable, asking each socket", attrs...)
		return nil, nil
	}
	a.prober.RTTCollector = c
	a.log.Info("kernel RTT source", "source", kernelrtt.SourceEBPF, "mode", mode, "cgroup", c.Cgroup(), "fallback", socket)
	return c, nil
}

// follow recomputes the job set at start and on every source change.
func (a *Agent) follow(ctx context.Context) {
	started := false
	for {
		v := a.source.View()
		if v.Synced {
			a.sched.Update(a.jobs(v))
			a.ready.Store(!a.draining.Load())
			if !started {
				started = true
				a.releaseStartupPages()
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-a.source.Changes():
		case <-a.expect.Changes():
		}
	}
}

// releaseStartupPages runs once the first job set is scheduled: by then the
// code that start-up alone needed (package inits, flag parsing, the informers'
// first list) has run.
func (a *Agent) releaseStartupPages() {
	if !a.cfg.ReleaseStartupPages {
		return
	}
	n, err := residency.ReleaseStartupPages()
	if err != nil {
		a.log.Debug("start-up pages kept", "reason", err.Error())
		return
	}
	a.log.Info("released the executable's start-up pages; the ones in use fault back", "mapped_mib", n>>20)
}

// jobs turns the view into the (peer, check) jobs this agent runs.
func (a *Agent) jobs(v View) []scheduler.Job {
	nodes := make([]peers.Node, 0, len(v.Peers)+1)
	byNode := make(map[string]PeerInfo, len(v.Peers))
	selfSeen := false
	for _, p := range v.Peers {
		nodes = append(nodes, peers.Node{Name: p.Node, OS: p.OS, Zone: p.Zone})
		byNode[p.Node] = p
		selfSeen = selfSeen || p.Node == a.cfg.Self.Node
	}
	if !selfSeen {
		nodes = append(nodes, peers.Node{Name: a.cfg.Self.Node, OS: a.cfg.Self.OS})
	}
	sel, err := peers.Select(a.cfg.Self.Node, nodes, a.cfg.Peers)
	if err != nil {
		a.log.Error("peer selection failed; keeping no peers", "error", err)
		return nil
	}
	a.recordSelection(sel)
	a.recordExcluded(v.Excluded)

	var jobs []scheduler.Job
	expect := a.expect.Expectations()
	whys := map[string]string{}
	var dests []string
	var expects []jobExpect
	defer func() {
		a.life.update(a.now(), dests, expects)
		a.mu.Lock()
		for k, why := range whys {
			// One line per change, naming the deciding policies: what an
			// operator (or the e2e) reads to see a new expectation.
			if prev, ok := a.why[k]; ok && prev != why {
				a.log.Info("NetworkPolicy expectation changed", "job", k, "because", why, "was", prev)
			}
		}
		a.why = whys
		for k := range a.mismatch {
			if _, ok := whys[k]; !ok {
				delete(a.mismatch, k) // the peer left
			}
		}
		for k := range a.denyState {
			if _, ok := whys[k]; !ok {
				a.setDenyState(k, denyState{})
			}
		}
		a.mu.Unlock()
	}()
	src := a.cfg.Self
	for _, sp := range sel.Peers {
		p := byNode[sp.Name]
		dst := probe.Endpoint{Pod: p.Pod, Node: p.Node, OS: p.OS}
		hostPort := func(port int) string { return net.JoinHostPort(p.IP, strconv.Itoa(port)) }
		// timeout 0 is the scheduler's per-run timeout.
		add := func(c probe.Check, t probe.Target, timeout time.Duration) {
			t.Src, t.Dst = src, dst
			// One peer's checks take turns: each times the peer alone.
			jobs = append(jobs, scheduler.Job{Key: p.Node + "/" + string(c), Check: c, Target: t, Peer: p.Node, Timeout: timeout})
		}
		dests = append(dests, p.Node)
		add(probe.CheckTCP, probe.Target{Addr: hostPort(p.Ports.TCP)}, 0)
		add(probe.CheckHTTP, probe.Target{Addr: hostPort(p.Ports.HTTP), HTTPPath: a.cfg.HTTPPath}, 0)
		for check, port := range map[probe.Check]int{probe.CheckNetpolAllow: p.Ports.Allow, probe.CheckNetpolDeny: p.Ports.Deny} {
			v, why := expect(p, port)
			// The whole run is the connect DenyTimeout bounds. The peer's
			// responder serves both ports, so a refusal there is a policy.
			add(check, probe.Target{Addr: hostPort(port), Expect: v, Listening: true}, a.prober.DenyTimeout)
			whys[p.Node+"/"+string(check)] = why
			expects = append(expects, jobExpect{key: p.Node + "/" + string(check), verdict: v})
		}
	}
	// dns and service probe each OS's Service once, not once per peer: they
	// measure this node's resolver and Service data path towards that OS.
	for _, s := range v.Services {
		dst := probe.Endpoint{Pod: s.Name, OS: s.OS}
		if s.FQDN != "" {
			dests = append(dests, "service/"+s.OS+"/dns")
			jobs = append(jobs, scheduler.Job{Key: "service/" + s.OS + "/dns", Check: probe.CheckDNS,
				Target: probe.Target{Src: src, Dst: dst, Name: s.FQDN, DNSServer: a.cfg.DNSServer}})
		}
		if s.ClusterIP != "" && s.Port > 0 {
			dests = append(dests, "service/"+s.OS+"/service")
			jobs = append(jobs, scheduler.Job{Key: "service/" + s.OS + "/service", Check: probe.CheckService,
				Target: probe.Target{Src: src, Dst: dst, ServiceAddr: net.JoinHostPort(s.ClusterIP, strconv.Itoa(s.Port)), HTTPPath: a.cfg.HTTPPath}})
		}
	}
	return jobs
}

func (a *Agent) recordSelection(sel peers.Selection) {
	a.mu.Lock()
	changed := !slices.Equal(a.lastSel, sel.Peers)
	a.lastSel = sel.Peers
	a.mu.Unlock()
	a.metrics.Peers.Reset()
	for _, p := range sel.Peers {
		a.metrics.Peers.WithLabelValues(p.OS.String(), p.Reason.String()).Inc()
	}
	if changed {
		a.log.Info("peer set changed", "peers", len(sel.Peers), "linux_nodes", sel.Linux, "windows_nodes", sel.Windows, "coverage_shortfall", sel.Shortfall)
	}
	if sel.Shortfall > 0 {
		a.log.Warn("cross-OS coverage capped: some nodes have fewer probers of this OS than configured", "shortfall", sel.Shortfall)
	}
}

// recordExcluded exports the agents not probed by OS and reason, and logs
// each node once when it becomes excluded, changes reason or comes back.
func (a *Agent) recordExcluded(ex []ExcludedPeer) {
	a.metrics.PeersExcluded.Reset()
	now := make(map[string]ExcludedPeer, len(ex))
	for _, e := range ex {
		a.metrics.PeersExcluded.WithLabelValues(e.OS, e.Reason).Inc()
		now[e.Node] = e
	}
	a.mu.Lock()
	prev := a.excluded
	a.excluded = now
	a.mu.Unlock()
	for node, e := range now {
		if prev[node] != e {
			a.log.Info("peer not probed", "dst_node", node, "dst_os", e.OS, "reason", e.Reason)
		}
	}
	for node, e := range prev {
		if _, ok := now[node]; !ok {
			a.log.Info("peer no longer excluded", "dst_node", node, "dst_os", e.OS, "was", e.Reason)
		}
	}
}

// runJob is the hot path: one probe run, its metrics and its report.
func (a *Agent) runJob(ctx context.Context, j scheduler.Job) {
	res := a.prober.Func(j.Check)(ctx, j.Target)
	if res.Outcome == probe.OutcomeCanceled {
		return // the peer left or we are stopping: not a measurement
	}
	a.judge(j, &res)
	if a.report != nil {
		a.report.Add(toWire(&res))
	}
	if a.onResult != nil {
		a.onResult(res)
	}
}

// judge records a run in the metrics: counted, or held back by the
// lifecycle (warm-up, policy grace) so that no failure ratio, mismatch or
// alert sees it.
func (a *Agent) judge(j scheduler.Job, res *probe.Result) {
	dest := j.Peer
	if dest == "" {
		dest = j.Key // a probe Service
	}
	jd := a.life.judge(a.now(), dest, j.Key, res)
	if jd.isFirstSuccess {
		a.metrics.SetTimeToFirstSuccess(res.Dst.OS, jd.firstSuccess)
		a.log.Info("first success toward this OS", "dst_os", res.Dst.OS, "check", res.Check, "after", jd.firstSuccess)
	}
	if jd.isRealized {
		a.metrics.ObserveRealization(res.Check, res.Dst.OS, jd.realized)
		a.log.Info("NetworkPolicy change realized", "check", res.Check, "dst_node", res.Dst.Node, "dst_os", res.Dst.OS,
			"verdict", res.Observed, "after", jd.realized)
	}
	if jd.hold != "" {
		a.metrics.ObserveHeld(res, jd.hold)
		a.log.Debug("failure held back", "hold", jd.hold, "check", res.Check, "dst_node", res.Dst.Node, "outcome", res.Outcome)
		return
	}
	a.metrics.Observe(res)
	if res.Expected != "" {
		a.noteVerdict(j.Key, res)
	}
}

// noteVerdict logs a NetworkPolicy mismatch once each time it starts or
// changes, with the policies that decided the expectation, and once when it clears.
func (a *Agent) noteVerdict(key string, r *probe.Result) {
	state := ""
	// An unknown expectation (VerdictUnknown) is never a mismatch.
	if r.Observed != "" && r.Expected != probe.VerdictUnknown && r.Observed != r.Expected {
		state = string(r.Expected) + "/" + string(r.Observed)
	}
	a.mu.Lock()
	prev := a.mismatch[key]
	why, current := a.why[key]
	if !current { // a run of a job the last recomputation removed: its peer is gone
		a.mu.Unlock()
		return
	}
	a.mismatch[key] = state
	if r.Check == probe.CheckNetpolDeny && r.Expected == probe.VerdictDeny && r.Observed != "" {
		a.setDenyState(key, denyState{dstOS: r.Dst.OS, blocked: r.Observed == probe.VerdictDeny})
	}
	a.mu.Unlock()
	switch state {
	case prev:
	case "":
		a.log.Info("NetworkPolicy verdict matches again", "check", r.Check, "dst_node", r.Dst.Node, "dst_os", r.Dst.OS, "expected", r.Expected)
	default:
		a.log.Warn("NetworkPolicy verdict differs from the policies", "check", r.Check, "dst_node", r.Dst.Node, "dst_os", r.Dst.OS,
			"addr", r.Addr, "expected", r.Expected, "observed", r.Observed, "outcome", r.Outcome, "because", why)
	}
}

// setDenyState records the last deny verdict of a job (the zero state removes
// it) and updates the enforcement gauge of the affected OS; a.mu is held.
// Counts change before the gauge is touched, so a job that stays has its
// series updated in place, never deleted and re-created under a scrape.
func (a *Agent) setDenyState(key string, st denyState) {
	old, had := a.denyState[key]
	if had {
		a.countDeny(old.dstOS, -b2i(old.blocked), -1)
		delete(a.denyState, key)
	}
	if st.dstOS != "" {
		a.denyState[key] = st
		a.countDeny(st.dstOS, b2i(st.blocked), 1)
	}
	if had {
		a.refreshEnforced(old.dstOS)
	}
	if st.dstOS != "" && (!had || st.dstOS != old.dstOS) {
		a.refreshEnforced(st.dstOS)
	}
}

// countDeny adds to the {blocked, total} deny counts toward os; a.mu is held.
func (a *Agent) countDeny(os string, blocked, total int) {
	c := a.enforced[os]
	if c == nil {
		c = &[2]int{}
		a.enforced[os] = c
	}
	c[0] += blocked
	c[1] += total
}

// refreshEnforced sets the enforcement gauge toward os from its counts, or
// deletes it when no deny job toward os is left; a.mu is held.
func (a *Agent) refreshEnforced(os string) {
	c := a.enforced[os]
	if c == nil || c[1] == 0 {
		a.metrics.NetpolEnforced.DeleteLabelValues(a.cfg.Self.OS, os)
		return
	}
	a.metrics.NetpolEnforced.WithLabelValues(a.cfg.Self.OS, os).Set(float64(c[0]) / float64(c[1]))
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

func toWire(r *probe.Result) wire.Result {
	w := wire.Result{Check: string(r.Check), DstPod: r.Dst.Pod, DstNode: r.Dst.Node, DstOS: r.Dst.OS,
		Outcome: string(r.Outcome), Start: r.Start, Expected: string(r.Expected), Observed: string(r.Observed)}
	if len(r.Phases) > 0 {
		w.Phases = make([]wire.Phase, len(r.Phases))
		for i, p := range r.Phases {
			w.Phases[i] = wire.Phase{Name: string(p.Phase), Duration: p.Duration}
		}
	}
	if r.KernelRTT.Available() {
		w.KernelRTT, w.RTTSource = r.KernelRTT.RTT, string(r.KernelRTT.Source)
	}
	return w
}

func (a *Agent) adminMux() *http.ServeMux {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(a.metrics.Registry, promhttp.HandlerOpts{EnableOpenMetrics: true}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		if !a.ready.Load() {
			http.Error(w, "not ready", http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ok\n"))
	})
	return mux
}

// reporterStats routes the reporter's counts into the agent's metrics.
type reporterStats struct{ m *metrics.Agent }

func (s reporterStats) Buffered(n int) { s.m.ReporterBuffered.Set(float64(n)) }
func (s reporterStats) Sent(n int)     { s.m.ReporterSent.Add(float64(n)) }
func (s reporterStats) Dropped(reason string, n int) {
	s.m.ReporterDropped.WithLabelValues(reason).Add(float64(n))
}
func (s reporterStats) SendError(reason string) { s.m.ReporterSendErrors.WithLabelValues(reason).Inc() }
