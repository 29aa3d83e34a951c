package metrics

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/xosprobe/xosprobe/probe"
	"github.com/xosprobe/xosprobe/probe/kernelrtt"
)

func httpResult(dst string, outcome probe.Outcome) *probe.Result {
	r := &probe.Result{Check: probe.CheckHTTP, Outcome: outcome, Dst: probe.Endpoint{OS: dst},
		KernelRTT: kernelrtt.Sample{RTT: 40 * time.Microsecond, Source: kernelrtt.SourceTCPInfo}}
	if outcome == probe.OutcomeSuccess {
		r.Phases = []probe.PhaseDuration{{Phase: probe.PhaseConnect, Duration: time.Millisecond},
			{Phase: probe.PhaseFirstByte, Duration: 2 * time.Millisecond}}
	}
	return r
}

// The series cache must hand each label combination its own series, on
// every call, and leave failed runs out of the histograms as before.
func TestObserveKeepsEachSeriesApart(t *testing.T) {
	m := New("linux", "test")
	for range 3 {
		m.Observe(httpResult("windows", probe.OutcomeSuccess))
	}
	m.Observe(httpResult("linux", probe.OutcomeSuccess))
	m.Observe(httpResult("windows", probe.OutcomeConnectTimeout))

	assert.Equal(t, 3.0, testutil.ToFloat64(m.total.WithLabelValues("http", "linux", "windows", "success")))
	assert.Equal(t, 1.0, testutil.ToFloat64(m.total.WithLabelValues("http", "linux", "linux", "success")))
	assert.Equal(t, 1.0, testutil.ToFloat64(m.total.WithLabelValues("http", "linux", "windows", "connect_timeout")))

	count := func(check, phase, dst string) uint64 {
		h, err := m.duration.GetMetricWithLabelValues(check, phase, "linux", dst)
		require.NoError(t, err)
		var pb dto.Metric
		require.NoError(t, h.(prometheus.Metric).Write(&pb))
		return pb.GetHistogram().GetSampleCount()
	}
	assert.Equal(t, uint64(3), count("http", "connect", "windows"))
	assert.Equal(t, uint64(3), count("http", "first_byte", "windows"))
	assert.Equal(t, uint64(1), count("http", "connect", "linux"))
	assert.Equal(t, 4, testutil.CollectAndCount(m.duration), "connect and first_byte toward each OS")
	assert.Equal(t, 2, testutil.CollectAndCount(m.kernelRTT), "one series per destination OS")
}

// NetworkPolicy mismatches are counted per check, destination OS and
// (expected, observed) pair, through the cache as well.
func TestObserveCountsEachMismatchApart(t *testing.T) {
	m := New("linux", "test")
	mismatch := func(c probe.Check, dst string, expected, observed probe.Verdict) *probe.Result {
		return &probe.Result{Check: c, Dst: probe.Endpoint{OS: dst}, Outcome: probe.OutcomePolicyNotEnforced, Expected: expected, Observed: observed}
	}
	for range 2 {
		m.Observe(mismatch(probe.CheckNetpolDeny, "windows", probe.VerdictDeny, probe.VerdictAllow))
	}
	m.Observe(mismatch(probe.CheckNetpolDeny, "linux", probe.VerdictDeny, probe.VerdictAllow))
	m.Observe(mismatch(probe.CheckNetpolAllow, "windows", probe.VerdictAllow, probe.VerdictDeny))
	m.Observe(mismatch(probe.CheckNetpolAllow, "windows", probe.VerdictDeny, probe.VerdictAllow))
	m.Observe(mismatch(probe.CheckNetpolAllow, "windows", probe.VerdictAllow, probe.VerdictAllow)) // no mismatch

	assert.Equal(t, 2.0, testutil.ToFloat64(m.netpolMismatch.WithLabelValues("netpol-deny", "linux", "windows", "deny", "allow")))
	assert.Equal(t, 1.0, testutil.ToFloat64(m.netpolMismatch.WithLabelValues("netpol-deny", "linux", "linux", "deny", "allow")))
	assert.Equal(t, 1.0, testutil.ToFloat64(m.netpolMismatch.WithLabelValues("netpol-allow", "linux", "windows", "allow", "deny")))
	assert.Equal(t, 1.0, testutil.ToFloat64(m.netpolMismatch.WithLabelValues("netpol-allow", "linux", "windows", "deny", "allow")))
	assert.Equal(t, 4, testutil.CollectAndCount(m.netpolMismatch))
}

// BenchmarkObserve is the metrics cost of one successful http run: its
// outcome, two phases and the kernel RTT.
func BenchmarkObserve(b *testing.B) {
	m := New("linux", "test")
	r := httpResult("windows", probe.OutcomeSuccess)
	b.ReportAllocs()
	for b.Loop() {
		m.Observe(r)
	}
}
