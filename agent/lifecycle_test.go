package agent

import (
	"log/slog"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/xosprobe/xosprobe/agent/metrics"
	"github.com/xosprobe/xosprobe/agent/scheduler"
	"github.com/xosprobe/xosprobe/probe"
)

// switchable expects what its field says on the deny port, allow elsewhere.
type switchable struct{ deny probe.Verdict }

func (s *switchable) Expectations() ExpectFunc {
	v := s.deny
	return func(dst PeerInfo, port int) (probe.Verdict, string) {
		if port == dst.Ports.Deny {
			return v, "test"
		}
		return probe.VerdictAllow, "test"
	}
}
func (s *switchable) Changes() <-chan struct{} { return nil }

// lifecycleAgent is an agent whose clock the test moves; nothing runs.
type lifecycleAgent struct {
	*Agent
	t      *testing.T
	clock  time.Time
	start  time.Time
	view   View
	expect *switchable
	jobs   map[string]scheduler.Job
}

func newLifecycleAgent(t *testing.T, grace, warmup time.Duration) *lifecycleAgent {
	t.Helper()
	cfg := testConfig("lin-1", "linux", 1, "")
	cfg.PolicyGrace, cfg.Warmup = grace, warmup
	la := &lifecycleAgent{t: t, clock: time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC), expect: &switchable{deny: probe.VerdictDeny}}
	la.start = la.clock
	a, err := New(cfg, StaticSource{}, la.expect, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	a.now = func() time.Time { return la.clock }
	a.life = newLifecycle(grace, warmup, la.clock)
	la.Agent = a
	la.view = View{Peers: []PeerInfo{{Node: "win-1", OS: "windows", Pod: "w1", IP: "10.0.0.3", Ports: PortsFromBase(9440)}}}
	la.recompute()
	return la
}

// at moves the clock to d after the start.
func (la *lifecycleAgent) at(d time.Duration) *lifecycleAgent { la.clock = la.start.Add(d); return la }

func (la *lifecycleAgent) recompute() {
	la.jobs = map[string]scheduler.Job{}
	for _, j := range la.Agent.jobs(la.view) {
		la.jobs[j.Key] = j
	}
}

// run judges a run of job key as if the probe returned outcome/observed.
func (la *lifecycleAgent) run(key string, outcome probe.Outcome, observed probe.Verdict) {
	la.t.Helper()
	j, ok := la.jobs[key]
	require.True(la.t, ok, "no job %s", key)
	r := probe.Result{Check: j.Check, Src: j.Target.Src, Dst: j.Target.Dst, Outcome: outcome,
		Expected: j.Target.Expect, Observed: observed}
	la.judge(j, &r)
}

// sample finds the series of name whose labels include want; nil if none.
func (la *lifecycleAgent) sample(name string, want map[string]string) *dto.Metric {
	la.t.Helper()
	families, err := la.metrics.Registry.Gather()
	require.NoError(la.t, err)
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
	series:
		for _, m := range f.GetMetric() {
			have := map[string]string{}
			for _, l := range m.GetLabel() {
				have[l.GetName()] = l.GetValue()
			}
			for k, v := range want {
				if have[k] != v {
					continue series
				}
			}
			return m
		}
	}
	return nil
}

func (la *lifecycleAgent) total(check, dstOS, result string) float64 {
	return la.sample(metrics.ProbeTotal, map[string]string{"check": check, "dst_os": dstOS, "result": result}).GetCounter().GetValue()
}

func (la *lifecycleAgent) held(check, dstOS, result, hold string) float64 {
	return la.sample(metrics.ProbeHeld, map[string]string{"check": check, "dst_os": dstOS, "result": result, "hold": hold}).GetCounter().GetValue()
}

func (la *lifecycleAgent) mismatches(check, dstOS string) float64 {
	return la.sample(metrics.NetpolMismatch, map[string]string{"check": check, "dst_os": dstOS}).GetCounter().GetValue()
}

func (la *lifecycleAgent) firstSuccess(dstOS string) float64 {
	return la.sample(metrics.TimeToFirstSuccess, map[string]string{"src_os": "linux", "dst_os": dstOS}).GetGauge().GetValue()
}

func TestWarmupHoldsFailuresUntilFirstSuccess(t *testing.T) {
	la := newLifecycleAgent(t, 0, time.Minute)
	timeout := string(probe.OutcomeConnectTimeout)

	la.at(10*time.Second).run("win-1/tcp", probe.OutcomeConnectTimeout, "")
	assert.Equal(t, 1.0, la.held("tcp", "windows", timeout, metrics.HoldWarmup))
	assert.Zero(t, la.total("tcp", "windows", timeout), "a warming-up failure is not a verdict")
	// A blocked deny check completes no connection: it ends no warm-up.
	la.at(15*time.Second).run("win-1/netpol-deny", probe.OutcomeSuccess, probe.VerdictDeny)
	la.at(20*time.Second).run("win-1/http", probe.OutcomeHTTPTimeout, "")
	assert.Equal(t, 1.0, la.held("http", "windows", string(probe.OutcomeHTTPTimeout), metrics.HoldWarmup))

	la.at(25*time.Second).run("win-1/tcp", probe.OutcomeSuccess, "")
	assert.Equal(t, 25.0, la.firstSuccess("windows"))
	la.at(30*time.Second).run("win-1/tcp", probe.OutcomeConnectTimeout, "")
	assert.Equal(t, 1.0, la.total("tcp", "windows", timeout), "once the peer answered, a failure counts")
	la.at(40*time.Second).run("win-1/tcp", probe.OutcomeSuccess, "")
	assert.Equal(t, 25.0, la.firstSuccess("windows"), "set once, at the first success")

	// A peer that appears later gets its own warm-up, bounded in time.
	la.view.Peers = append(la.view.Peers, PeerInfo{Node: "win-2", OS: "windows", Pod: "w2", IP: "10.0.0.4", Ports: PortsFromBase(9440)})
	la.at(5 * time.Minute).recompute()
	la.at(5*time.Minute+30*time.Second).run("win-2/tcp", probe.OutcomeConnectRefused, "")
	assert.Equal(t, 1.0, la.held("tcp", "windows", string(probe.OutcomeConnectRefused), metrics.HoldWarmup))
	la.at(6*time.Minute+time.Second).run("win-2/tcp", probe.OutcomeConnectRefused, "")
	assert.Equal(t, 1.0, la.total("tcp", "windows", string(probe.OutcomeConnectRefused)), "the warm-up is bounded")
	assert.Equal(t, 1.0, la.held("tcp", "windows", string(probe.OutcomeConnectRefused), metrics.HoldWarmup))

	// No warm-up configured: the first failure counts.
	la = newLifecycleAgent(t, 0, 0)
	la.at(time.Second).run("win-1/tcp", probe.OutcomeConnectTimeout, "")
	assert.Equal(t, 1.0, la.total("tcp", "windows", timeout))
}

func TestPolicyGraceAndRealization(t *testing.T) {
	notEnforced := string(probe.OutcomePolicyNotEnforced)
	unexpected := string(probe.OutcomeUnexpectedBlock)
	realization := func(la *lifecycleAgent) (count uint64, sum float64) {
		h := la.sample(metrics.PolicyRealization, map[string]string{"check": "netpol-deny", "src_os": "linux", "dst_os": "windows"}).GetHistogram()
		return h.GetSampleCount(), h.GetSampleSum()
	}

	t.Run("a new job is in grace; the first set is not measured", func(t *testing.T) {
		la := newLifecycleAgent(t, 2*time.Minute, 0)
		la.at(10*time.Second).run("win-1/netpol-deny", probe.OutcomePolicyNotEnforced, probe.VerdictAllow)
		assert.Equal(t, 1.0, la.held("netpol-deny", "windows", notEnforced, metrics.HoldGrace))
		assert.Zero(t, la.mismatches("netpol-deny", "windows"))
		assert.Zero(t, la.total("netpol-deny", "windows", notEnforced))
		la.at(20*time.Second).run("win-1/netpol-deny", probe.OutcomeSuccess, probe.VerdictDeny)
		n, _ := realization(la)
		assert.Zero(t, n, "when the first expectation began is unknown")
		// Realized: a flip back counts at once, grace or not.
		la.at(30*time.Second).run("win-1/netpol-deny", probe.OutcomePolicyNotEnforced, probe.VerdictAllow)
		assert.Equal(t, 1.0, la.mismatches("netpol-deny", "windows"))
		assert.Equal(t, 1.0, la.total("netpol-deny", "windows", notEnforced))
	})

	t.Run("a changed expectation: grace, then realization", func(t *testing.T) {
		la := newLifecycleAgent(t, 2*time.Minute, 0)
		la.at(10*time.Second).run("win-1/netpol-deny", probe.OutcomeSuccess, probe.VerdictDeny)
		la.expect.deny = probe.VerdictAllow // a policy now allows the deny port
		la.at(time.Minute).recompute()
		la.at(time.Minute+10*time.Second).run("win-1/netpol-deny", probe.OutcomeUnexpectedBlock, probe.VerdictDeny)
		assert.Equal(t, 1.0, la.held("netpol-deny", "windows", unexpected, metrics.HoldGrace))
		assert.Zero(t, la.mismatches("netpol-deny", "windows"))
		la.at(time.Minute+40*time.Second).run("win-1/netpol-deny", probe.OutcomeSuccess, probe.VerdictAllow)
		n, sum := realization(la)
		assert.Equal(t, uint64(1), n)
		assert.InDelta(t, 40.0, sum, 1e-9)
		la.at(time.Minute+50*time.Second).run("win-1/netpol-deny", probe.OutcomeSuccess, probe.VerdictAllow)
		n, _ = realization(la)
		assert.Equal(t, uint64(1), n, "once per change")
		// Recomputing with the same expectation is no change.
		la.at(2 * time.Minute).recompute()
		la.at(2*time.Minute+10*time.Second).run("win-1/netpol-deny", probe.OutcomeUnexpectedBlock, probe.VerdictDeny)
		assert.Equal(t, 1.0, la.mismatches("netpol-deny", "windows"))
	})

	t.Run("grace ends before realization: the mismatch counts, realization still measured", func(t *testing.T) {
		la := newLifecycleAgent(t, 2*time.Minute, 0)
		la.expect.deny = probe.VerdictAllow
		la.at(time.Minute).recompute()
		la.at(3*time.Minute+time.Second).run("win-1/netpol-deny", probe.OutcomeUnexpectedBlock, probe.VerdictDeny)
		assert.Equal(t, 1.0, la.mismatches("netpol-deny", "windows"))
		assert.Equal(t, 1.0, la.total("netpol-deny", "windows", unexpected))
		assert.Zero(t, la.held("netpol-deny", "windows", unexpected, metrics.HoldGrace))
		la.at(6*time.Minute).run("win-1/netpol-deny", probe.OutcomeSuccess, probe.VerdictAllow)
		n, sum := realization(la)
		assert.Equal(t, uint64(1), n)
		assert.InDelta(t, 300.0, sum, 1e-9)
	})

	t.Run("a superseded change is never measured", func(t *testing.T) {
		la := newLifecycleAgent(t, 2*time.Minute, 0)
		la.expect.deny = probe.VerdictAllow
		la.at(time.Minute).recompute()
		la.expect.deny = probe.VerdictDeny // reverted before it was realized
		la.at(time.Minute + 30*time.Second).recompute()
		la.at(time.Minute+40*time.Second).run("win-1/netpol-deny", probe.OutcomeSuccess, probe.VerdictDeny)
		n, sum := realization(la)
		assert.Equal(t, uint64(1), n, "the revert's own realization")
		assert.InDelta(t, 10.0, sum, 1e-9)
	})

	t.Run("a run planned under the old expectation judges nothing", func(t *testing.T) {
		la := newLifecycleAgent(t, 2*time.Minute, 0)
		old := la.jobs["win-1/netpol-deny"]
		la.expect.deny = probe.VerdictAllow
		la.at(time.Minute).recompute()
		la.jobs["win-1/netpol-deny"] = old
		la.at(time.Minute+5*time.Second).run("win-1/netpol-deny", probe.OutcomeSuccess, probe.VerdictDeny)
		n, _ := realization(la)
		assert.Zero(t, n)
	})
}

func TestExcludedPeersGauge(t *testing.T) {
	la := newLifecycleAgent(t, 0, 0)
	la.view.Excluded = []ExcludedPeer{{Node: "win-2", OS: "windows", Reason: "node_cordoned"},
		{Node: "win-3", OS: "windows", Reason: "node_cordoned"}, {Node: "lin-2", OS: "linux", Reason: "terminating"}}
	la.recompute()
	assert.Equal(t, 2.0, testutil.ToFloat64(la.metrics.PeersExcluded.WithLabelValues("windows", "node_cordoned")))
	assert.Equal(t, 1.0, testutil.ToFloat64(la.metrics.PeersExcluded.WithLabelValues("linux", "terminating")))
	la.view.Excluded = la.view.Excluded[:1]
	la.recompute()
	assert.Equal(t, 1, testutil.CollectAndCount(la.metrics.PeersExcluded), "a peer back in service leaves no series behind")
}
