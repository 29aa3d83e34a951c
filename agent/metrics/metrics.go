// Package metrics defines every metric the agent exports, in one place, so
// dashboards and alert rules can be checked against it. Labels are bounded:
// check, phase, OS, outcome — never a pod, node or IP (O(n²) series is what
// sinks mesh probers); per-pair detail goes to the aggregator's /matrix.
package metrics

import (
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/xosprobe/xosprobe/probe"
	"github.com/xosprobe/xosprobe/probe/clock"
)

// Metric names, shared with dashboards and alert rules.
const (
	ProbeDuration      = "xosprobe_probe_duration_seconds"
	ProbeTotal         = "xosprobe_probe_total"
	KernelRTT          = "xosprobe_kernel_rtt_seconds"
	ClockResolution    = "xosprobe_clock_resolution_seconds"
	NetpolMismatch     = "xosprobe_netpol_mismatch_total"
	DNSFindings        = "xosprobe_dns_findings_total"
	NetpolEnforced     = "xosprobe_netpol_enforced_ratio"
	Peers              = "xosprobe_peers"
	ProbeLoops         = "xosprobe_probe_loops"
	ProbeSkipped       = "xosprobe_probe_skipped_total"
	ReporterBuffered   = "xosprobe_reporter_buffered_results"
	ReporterSent       = "xosprobe_reporter_sent_results_total"
	ReporterDropped    = "xosprobe_reporter_dropped_results_total"
	ReporterSendErrors = "xosprobe_reporter_send_errors_total"
	BuildInfo          = "xosprobe_build_info"
	ProbeHeld          = "xosprobe_probe_held_total"
	PeersExcluded      = "xosprobe_peers_excluded"
	PolicyRealization  = "xosprobe_policy_realization_seconds"
	TimeToFirstSuccess = "xosprobe_agent_time_to_first_success_seconds"
)

// Hold values: why a failed run is held back from xosprobe_probe_total and
// xosprobe_netpol_mismatch_total (the `hold` label of xosprobe_probe_held_total).
const (
	// HoldWarmup: nothing toward this peer has succeeded yet, within the
	// warm-up after the agent started or the peer appeared.
	HoldWarmup = "warmup"
	// HoldGrace: the job's expected NetworkPolicy verdict changed within the
	// policy grace, so the network may not have applied it yet.
	HoldGrace = "grace"
)

// Policy realization latency reaches from sub-second (Linux iptables, eBPF)
// to several minutes (Windows HNS ACLs): 0.5 s to 10 min.
var realizationBuckets = []float64{0.5, 1, 2, 5, 10, 15, 20, 30, 45, 60, 90, 120, 180, 240, 300, 450, 600}

// Buckets: 50 µs doubling to ~1.6 s. Pod RTTs sit at tens of µs to a few ms;
// the cross-OS delta of interest is 1-20 ms.
var durationBuckets = prometheus.ExponentialBuckets(50e-6, 2, 16)

// Agent holds the agent's metrics.
type Agent struct {
	Registry *prometheus.Registry

	duration        *prometheus.HistogramVec
	total           *prometheus.CounterVec
	kernelRTT       *prometheus.HistogramVec
	clockResolution *prometheus.GaugeVec
	netpolMismatch  *prometheus.CounterVec
	dnsFindings     *prometheus.CounterVec
	// NetpolEnforced is, per destination OS, the share of peers whose last
	// deny check (expected deny) was blocked: 1 enforced, 0 not at all.
	NetpolEnforced *prometheus.GaugeVec

	Peers              *prometheus.GaugeVec
	PeersExcluded      *prometheus.GaugeVec
	probeHeld          *prometheus.CounterVec
	policyRealization  *prometheus.HistogramVec
	timeToFirstSuccess *prometheus.GaugeVec
	ProbeLoops         prometheus.Gauge
	ProbeSkipped       *prometheus.CounterVec
	ReporterBuffered   prometheus.Gauge
	ReporterSent       prometheus.Counter
	ReporterDropped    *prometheus.CounterVec
	ReporterSendErrors *prometheus.CounterVec

	srcOS string

	// The hot path's series, by label values: WithLabelValues validates,
	// hashes and compares every label on each call (an http run's Observe:
	// 610-660 ns through it, 355-380 ns cached; BenchmarkObserve).
	mu         sync.RWMutex
	durations  map[seriesKey]prometheus.Observer // check, phase, dst_os
	totals     map[seriesKey]prometheus.Counter  // check, dst_os, result
	kernelRTTs map[seriesKey]prometheus.Observer // dst_os, source
	// check, dst_os, expected (a mismatch observed the other verdict): in a
	// cluster whose CNI enforces no NetworkPolicy every netpol-deny run
	// mismatches.
	mismatches map[seriesKey]prometheus.Counter
}

// seriesKey holds the label values of a cached series beside src_os, which
// is the agent's own.
type seriesKey struct{ a, b, c string }

// New registers the agent's metrics on a fresh registry, with the Go runtime
// and process collectors (process CPU is the probe-cost panel).
func New(srcOS, version string) *Agent {
	histogram := func(name, help string, labels ...string) *prometheus.HistogramVec {
		return prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: name, Help: help, Buckets: durationBuckets,
			// Native histograms beside the classic buckets: ~10% bucket growth,
			// capped, reset hourly so a spike does not widen buckets forever.
			NativeHistogramBucketFactor:     1.1,
			NativeHistogramMaxBucketNumber:  160,
			NativeHistogramMinResetDuration: time.Hour,
		}, labels)
	}
	m := &Agent{
		Registry:   prometheus.NewRegistry(),
		srcOS:      srcOS,
		durations:  map[seriesKey]prometheus.Observer{},
		totals:     map[seriesKey]prometheus.Counter{},
		kernelRTTs: map[seriesKey]prometheus.Observer{},
		mismatches: map[seriesKey]prometheus.Counter{},
		duration:   histogram(ProbeDuration, "Duration of each probe phase.", "check", "phase", "src_os", "dst_os"),
		total: prometheus.NewCounterVec(prometheus.CounterOpts{Name: ProbeTotal,
			Help: "Probe runs by outcome: success or the classified failure reason."}, []string{"check", "src_os", "dst_os", "result"}),
		kernelRTT: histogram(KernelRTT, "Kernel smoothed RTT of probe connections after the handshake.", "src_os", "dst_os", "source"),
		clockResolution: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: ClockResolution,
			Help: "Measured step of the clock: the probe clock (qpc, monotonic) and time.Now for comparison."}, []string{"os", "clock"}),
		netpolMismatch: prometheus.NewCounterVec(prometheus.CounterOpts{Name: NetpolMismatch,
			Help: "NetworkPolicy checks whose observed verdict differs from the expected one."}, []string{"check", "src_os", "dst_os", "expected", "observed"}),
		dnsFindings: prometheus.NewCounterVec(prometheus.CounterOpts{Name: DNSFindings,
			Help: "DNS findings that do not fail the check, e.g. short_name_fails."}, []string{"finding", "src_os", "dst_os"}),
		NetpolEnforced: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: NetpolEnforced,
			Help: "Share of peers whose last netpol-deny check (NetworkPolicy expects deny) was blocked: 1 enforced, 0 not enforced at all."}, []string{"src_os", "dst_os"}),
		Peers: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: Peers,
			Help: "Peers this agent probes, by OS and why each was selected."}, []string{"dst_os", "reason"}),
		PeersExcluded: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: PeersExcluded,
			Help: "Agents of other nodes this agent does not probe, by OS and reason: not_ready, terminating, no_ip, node_cordoned, node_draining, node_unknown (see agent/discovery)."}, []string{"dst_os", "reason"}),
		probeHeld: prometheus.NewCounterVec(prometheus.CounterOpts{Name: ProbeHeld,
			Help: "Failed probe runs held back from xosprobe_probe_total and the mismatch count: hold is warmup (nothing toward the peer succeeded yet) or grace (the expected NetworkPolicy verdict just changed)."},
			[]string{"check", "src_os", "dst_os", "result", "hold"}),
		policyRealization: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: PolicyRealization,
			Help:    "Time from a change of a netpol job's expected verdict to its first run observing the new verdict.",
			Buckets: realizationBuckets}, []string{"check", "src_os", "dst_os"}),
		timeToFirstSuccess: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: TimeToFirstSuccess,
			Help: "Time from this agent's start to its first successful connection toward a destination of this OS."}, []string{"src_os", "dst_os"}),
		ProbeLoops: prometheus.NewGauge(prometheus.GaugeOpts{Name: ProbeLoops, Help: "Running (peer, check) probe loops."}),
		ProbeSkipped: prometheus.NewCounterVec(prometheus.CounterOpts{Name: ProbeSkipped,
			Help: "Probe runs skipped because the concurrency limit stayed full for a whole interval."}, []string{"check"}),
		ReporterBuffered: prometheus.NewGauge(prometheus.GaugeOpts{Name: ReporterBuffered,
			Help: "Results waiting to be sent to the aggregator."}),
		ReporterSent: prometheus.NewCounter(prometheus.CounterOpts{Name: ReporterSent,
			Help: "Results the aggregator accepted."}),
		ReporterDropped: prometheus.NewCounterVec(prometheus.CounterOpts{Name: ReporterDropped,
			Help: "Results dropped before the aggregator accepted them: buffer_full (oldest dropped) or rejected (4xx)."}, []string{"reason"}),
		ReporterSendErrors: prometheus.NewCounterVec(prometheus.CounterOpts{Name: ReporterSendErrors,
			Help: "Failed batch sends by reason; sends are retried with backoff."}, []string{"reason"}),
	}
	build := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: BuildInfo, Help: "Build of the running binary."}, []string{"version", "os"})
	build.WithLabelValues(version, srcOS).Set(1)
	m.Registry.MustRegister(m.duration, m.total, m.kernelRTT, m.clockResolution, m.netpolMismatch, m.dnsFindings, m.NetpolEnforced,
		m.Peers, m.PeersExcluded, m.probeHeld, m.policyRealization, m.timeToFirstSuccess, m.ProbeLoops, m.ProbeSkipped, m.ReporterBuffered, m.ReporterSent, m.ReporterDropped, m.ReporterSendErrors, build,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// SetClockResolution exports a measured clock resolution.
func (m *Agent) SetClockResolution(r clock.Resolution) {
	m.clockResolution.WithLabelValues(m.srcOS, r.Clock).Set(r.Step.Seconds())
}

// Observe records one probe result.
func (m *Agent) Observe(r *probe.Result) {
	dst := r.Dst.OS
	check := string(r.Check)
	series(m, m.totals, seriesKey{check, dst, string(r.Outcome)}, func() prometheus.Counter {
		return m.total.WithLabelValues(check, m.srcOS, dst, string(r.Outcome))
	}).Inc()
	// Phases of a failed run are partial (a connect that later timed out on
	// first byte): they would skew the latency distribution, so only
	// successful runs feed the histograms.
	if r.Succeeded() {
		for _, p := range r.Phases {
			series(m, m.durations, seriesKey{check, string(p.Phase), dst}, func() prometheus.Observer {
				return m.duration.WithLabelValues(check, string(p.Phase), m.srcOS, dst)
			}).Observe(p.Duration.Seconds())
		}
		if r.KernelRTT.Available() {
			source := string(r.KernelRTT.Source)
			series(m, m.kernelRTTs, seriesKey{dst, source, ""}, func() prometheus.Observer {
				return m.kernelRTT.WithLabelValues(m.srcOS, dst, source)
			}).Observe(r.KernelRTT.RTT.Seconds())
		}
	}
	if r.Expected != "" && r.Observed != "" && r.Expected != r.Observed {
		expected, observed := string(r.Expected), string(r.Observed)
		series(m, m.mismatches, seriesKey{check, dst, expected}, func() prometheus.Counter {
			return m.netpolMismatch.WithLabelValues(check, m.srcOS, dst, expected, observed)
		}).Inc()
	}
	for _, f := range r.Findings {
		m.dnsFindings.WithLabelValues(f.Code, m.srcOS, dst).Inc()
	}
}

// ObserveHeld records a failed run held back by hold (HoldWarmup,
// HoldGrace): it counts in xosprobe_probe_held_total only, so no failure
// ratio, mismatch or alert sees it. Held runs are rare (a peer's first
// minutes, a policy change), so their series are not cached.
func (m *Agent) ObserveHeld(r *probe.Result, hold string) {
	m.probeHeld.WithLabelValues(string(r.Check), m.srcOS, r.Dst.OS, string(r.Outcome), hold).Inc()
}

// ObserveRealization records how long a changed NetworkPolicy expectation
// took to be observed by check toward dstOS.
func (m *Agent) ObserveRealization(check probe.Check, dstOS string, d time.Duration) {
	m.policyRealization.WithLabelValues(string(check), m.srcOS, dstOS).Observe(d.Seconds())
}

// SetTimeToFirstSuccess exports the time from the agent's start to its
// first success toward dstOS.
func (m *Agent) SetTimeToFirstSuccess(dstOS string, d time.Duration) {
	m.timeToFirstSuccess.WithLabelValues(m.srcOS, dstOS).Set(d.Seconds())
}

// series returns the cached series of k in cache, creating it with create
// on first use. Series are never deleted, so a cached one stays exported.
func series[T any](m *Agent, cache map[seriesKey]T, k seriesKey, create func() T) T {
	m.mu.RLock()
	v, ok := cache[k]
	m.mu.RUnlock()
	if ok {
		return v
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if v, ok := cache[k]; ok {
		return v
	}
	v = create()
	cache[k] = v
	return v
}
