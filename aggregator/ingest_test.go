package aggregator

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/xosprobe/xosprobe/aggregator/wire"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// lognormal samples with the given median, deterministic per seed.
func lognormal(seed uint64, n int, median time.Duration) []time.Duration {
	r := rand.New(rand.NewPCG(seed, seed))
	out := make([]time.Duration, n)
	for i := range out {
		out[i] = time.Duration(float64(median) * math.Exp(0.4*r.NormFloat64()))
	}
	return out
}

// sampleQuantile is the lower nearest-rank quantile DDSketch approximates.
func sampleQuantile(xs []time.Duration, q float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[int(q*float64(len(s)-1))].Seconds()
}

// TestDeltaEndToEnd sends results with a known shift between OS pairs
// through HTTP and checks the exported quantiles and deltas against the
// exact sample quantiles, within the sketches' 1% relative accuracy.
func TestDeltaEndToEnd(t *testing.T) {
	clk := newClock(t0)
	s := startServer(t, Config{Now: clk.Now}, nil)

	base := lognormal(1, 2000, 500*time.Microsecond)
	shift := map[string]time.Duration{"linux->linux": 0, "windows->linux": 10 * time.Millisecond, "linux->windows": 3 * time.Millisecond}
	samples := map[string][]time.Duration{}
	agents := map[string]*agent{"linux": {node: "lin-a", os: "linux"}, "windows": {node: "win-a", os: "windows"}}
	for pair, d := range shift {
		src, dst, _ := strings.Cut(pair, "->")
		var results []wire.Result
		for i, x := range base {
			v := x + d
			samples[pair] = append(samples[pair], v)
			results = append(results, res("tcp", fmt.Sprintf("%s-%d", dst, i%10), dst, "success", t0.Add(-time.Second), connect(v)))
			if len(results) == 500 {
				require.Equal(t, http.StatusOK, send(t, s.URL, agents[src].batch(results...)).code)
				results = nil
			}
		}
	}
	// Too few windows->windows samples to judge: exported, flagged.
	var ww []wire.Result
	for i := range 5 {
		ww = append(ww, res("tcp", "win-b", "windows", "success", t0.Add(-time.Second), connect(time.Duration(20+i)*time.Millisecond)))
	}
	ww = append(ww, res("tcp", "win-b", "windows", "connect_timeout", t0.Add(-time.Second)))
	require.Equal(t, http.StatusOK, send(t, s.URL, agents["windows"].batch(ww...)).code)

	require.NoError(t, s.Compute())
	const acc = 0.01
	for pair, xs := range samples {
		for _, q := range []float64{0.5, 0.9, 0.99} {
			ql := quantileLabel(q)
			want := sampleQuantile(xs, q)
			got := mustMetric(t, s.Server, PairQuantile, lbl("check", "tcp", "phase", "connect", "pair", pair, "quantile", ql))
			assert.InEpsilon(t, want, got, acc+1e-9, "%s q%s", pair, ql)
			if pair == "linux->linux" {
				continue
			}
			wantDelta := want - sampleQuantile(samples["linux->linux"], q)
			gotDelta := mustMetric(t, s.Server, CrossOSDelta, lbl("check", "tcp", "phase", "connect", "pair", pair, "quantile", ql))
			tol := acc * (want + sampleQuantile(samples["linux->linux"], q))
			assert.InDelta(t, wantDelta, gotDelta, tol, "%s delta q%s", pair, ql)
			assert.InDelta(t, shift[pair].Seconds(), gotDelta, tol, "the shift itself")
			assert.Equal(t, 1.0, mustMetric(t, s.Server, CrossOSDeltaSignificant, lbl("check", "tcp", "phase", "connect", "pair", pair, "quantile", ql)))
			assert.Equal(t, 0.0, mustMetric(t, s.Server, CrossOSDeltaInsufficient, lbl("check", "tcp", "phase", "connect", "pair", pair, "quantile", ql)))
			lo := mustMetric(t, s.Server, CrossOSDeltaCILow, lbl("check", "tcp", "phase", "connect", "pair", pair, "quantile", ql))
			hi := mustMetric(t, s.Server, CrossOSDeltaCIHigh, lbl("check", "tcp", "phase", "connect", "pair", pair, "quantile", ql))
			assert.True(t, lo <= gotDelta && gotDelta <= hi && lo > 0, "CI [%v, %v] around %v", lo, hi, gotDelta)
		}
		if pair != "linux->linux" {
			assert.Equal(t, 2000.0, mustMetric(t, s.Server, CrossOSDeltaSamples, lbl("check", "tcp", "phase", "connect", "pair", pair)))
		}
		assert.Equal(t, 2000.0, mustMetric(t, s.Server, PairSamples, lbl("check", "tcp", "phase", "connect", "pair", pair)))
	}
	assert.Equal(t, 2000.0, mustMetric(t, s.Server, CrossOSBaselineSamples, lbl("check", "tcp", "phase", "connect")))

	// windows->windows: 5 samples. Reported, insufficient, never significant;
	// the p99 interval cannot be bounded above, so that series is absent.
	for _, q := range []string{"0.5", "0.9", "0.99"} {
		l := lbl("check", "tcp", "phase", "connect", "pair", "windows->windows", "quantile", q)
		d := mustMetric(t, s.Server, CrossOSDelta, l)
		assert.Greater(t, d, 0.015)
		assert.Equal(t, 1.0, mustMetric(t, s.Server, CrossOSDeltaInsufficient, l))
		assert.Equal(t, 0.0, mustMetric(t, s.Server, CrossOSDeltaSignificant, l))
	}
	_, ok := metric(t, s.Server, CrossOSDeltaCIHigh, lbl("check", "tcp", "phase", "connect", "pair", "windows->windows", "quantile", "0.99"))
	assert.False(t, ok, "an unbounded CI end is omitted")
	assert.Equal(t, 5.0, mustMetric(t, s.Server, CrossOSDeltaSamples, lbl("check", "tcp", "phase", "connect", "pair", "windows->windows")))

	// Outcome counters cover every result, failures included.
	assert.Equal(t, 5.0, mustMetric(t, s.Server, PairResults, lbl("check", "tcp", "pair", "windows->windows", "result", "success")))
	assert.Equal(t, 1.0, mustMetric(t, s.Server, PairResults, lbl("check", "tcp", "pair", "windows->windows", "result", "connect_timeout")))
	assert.Equal(t, 2000.0, mustMetric(t, s.Server, PairResults, lbl("check", "tcp", "pair", "windows->linux", "result", "success")))
	assert.Equal(t, 6006.0, mustMetric(t, s.Server, ResultsIngested, lbl("source", "agent")))
	assert.Equal(t, 13.0, mustMetric(t, s.Server, Batches, lbl("source", "agent", "result", "accepted")))
	// No regression data yet: the baseline window is empty.
	_, ok = metric(t, s.Server, CrossOSRegressed, lbl("check", "tcp", "phase", "connect", "pair", "windows->linux", "quantile", "0.5"))
	assert.False(t, ok)
}

// TestRegression puts a 10 ms delta in the trailing hour and a 20 ms delta
// in the current window: the regression metric reports the 10 ms increase.
func TestRegression(t *testing.T) {
	clk := newClock(t0.Add(-30 * time.Minute))
	s := startServer(t, Config{Now: clk.Now}, nil)
	lin, win := &agent{node: "lin", os: "linux"}, &agent{node: "win", os: "windows"}
	feed := func(shift time.Duration) {
		var ll, wl []wire.Result
		for _, x := range lognormal(uint64(shift), 1000, 500*time.Microsecond) {
			ll = append(ll, res("tcp", "lin2", "linux", "success", clk.Now().Add(-time.Second), connect(x)))
			wl = append(wl, res("tcp", "lin2", "linux", "success", clk.Now().Add(-time.Second), connect(x+shift)))
		}
		b1, b2 := lin.batch(ll...), win.batch(wl...)
		b1.Sent, b2.Sent = clk.Now(), clk.Now()
		require.Equal(t, http.StatusOK, send(t, s.URL, b1).code)
		require.Equal(t, http.StatusOK, send(t, s.URL, b2).code)
	}
	feed(10 * time.Millisecond)
	clk.Set(t0)
	feed(20 * time.Millisecond)
	require.NoError(t, s.Compute())
	l := lbl("check", "tcp", "phase", "connect", "pair", "windows->linux", "quantile", "0.5")
	assert.InDelta(t, 0.010, mustMetric(t, s.Server, CrossOSRegression, l), 0.0005)
	assert.InDelta(t, 0.010, mustMetric(t, s.Server, CrossOSRegressionBaseline, l), 0.0005)
	assert.Equal(t, 1.0, mustMetric(t, s.Server, CrossOSRegressed, l))
	assert.Equal(t, 0.0, mustMetric(t, s.Server, CrossOSRegressionInsufficient, l))
	assert.InDelta(t, 0.020, mustMetric(t, s.Server, CrossOSDelta, l), 0.0005)
}

func TestDuplicateBatchCountedOnce(t *testing.T) {
	s := startServer(t, Config{Now: newClock(t0).Now}, nil)
	a := &agent{node: "lin", os: "linux"}
	b := a.batch(res("tcp", "win", "windows", "success", t0, connect(time.Millisecond)))
	body := encode(t, b)
	first := post(t, s.URL, body, testToken, wire.ContentType)
	require.Equal(t, http.StatusOK, first.code)
	assert.Equal(t, "accepted", first.header.Get(BatchStatusHeader))
	second := post(t, s.URL, body, testToken, wire.ContentType)
	require.Equal(t, http.StatusOK, second.code, "a duplicate is a success: the agent must not retry it")
	assert.Equal(t, "duplicate", second.header.Get(BatchStatusHeader))
	var ir IngestResponse
	require.NoError(t, json.Unmarshal([]byte(second.body), &ir))
	assert.Equal(t, IngestResponse{Batch: b.ID, Status: "duplicate", Results: 1}, ir)

	require.NoError(t, s.Compute())
	assert.Equal(t, 1.0, mustMetric(t, s.Server, PairSamples, lbl("check", "tcp", "phase", "connect", "pair", "linux->windows")))
	assert.Equal(t, 1.0, mustMetric(t, s.Server, PairResults, lbl("check", "tcp", "pair", "linux->windows", "result", "success")))
	assert.Equal(t, 1.0, mustMetric(t, s.Server, Batches, lbl("source", "agent", "result", "duplicate")))
	assert.Equal(t, 1.0, mustMetric(t, s.Server, DedupIDs, nil))
}

func TestRejections(t *testing.T) {
	s := startServer(t, Config{Now: newClock(t0).Now, MaxBodyBytes: 4096}, nil)
	a := &agent{node: "lin", os: "linux"}
	good := encode(t, a.batch(res("tcp", "win", "windows", "success", t0, connect(time.Millisecond))))
	var big []wire.Result
	for i := range 400 {
		big = append(big, res("tcp", fmt.Sprint("node-", i), "windows", "success", t0, connect(time.Millisecond)))
	}
	bigBody := encode(t, a.batch(big...))
	require.Greater(t, len(bigBody), 4096)
	v2 := bytes.Clone(good)
	v2[4] = 2 // the version varint follows the magic

	for _, tc := range []struct {
		name        string
		body        []byte
		contentType string
		chunked     bool
		code        int
		msg         []string
		result      string
	}{
		{name: "oversized", body: bigBody, contentType: wire.ContentType, code: http.StatusRequestEntityTooLarge, msg: []string{"4096-byte limit", "split"}, result: "too_large"},
		{name: "oversized without length", body: bigBody, contentType: wire.ContentType, chunked: true, code: http.StatusRequestEntityTooLarge, msg: []string{"4096-byte limit"}, result: "too_large"},
		{name: "wrong content type", body: good, contentType: "application/json", code: http.StatusUnsupportedMediaType, msg: []string{wire.ContentType}, result: "unsupported"},
		{name: "no content type", body: good, code: http.StatusUnsupportedMediaType, msg: []string{wire.ContentType}, result: "unsupported"},
		{name: "not a batch", body: []byte("{}"), contentType: wire.ContentType, code: http.StatusBadRequest, msg: []string{"bad magic"}, result: "malformed"},
		{name: "truncated", body: good[:len(good)-3], contentType: wire.ContentType, code: http.StatusBadRequest, msg: []string{"malformed batch: rtt source: truncated"}, result: "malformed"},
		{name: "other version", body: v2, contentType: wire.ContentType, code: http.StatusUnsupportedMediaType, msg: []string{"version 2", "reads 1"}, result: "unsupported"},
		{name: "content type parameters are fine", body: good, contentType: wire.ContentType + "; charset=binary", code: http.StatusOK, result: "accepted"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before, _ := metric(t, s.Server, Batches, lbl("source", "agent", "result", tc.result))
			var r response
			if tc.chunked {
				req, err := http.NewRequest(http.MethodPost, s.URL+ResultsPath, struct{ *bytes.Reader }{bytes.NewReader(tc.body)})
				require.NoError(t, err)
				req.Header.Set("Content-Type", tc.contentType)
				req.Header.Set("Authorization", "Bearer "+testToken)
				r = do(t, req)
			} else {
				r = post(t, s.URL, tc.body, testToken, tc.contentType)
			}
			assert.Equal(t, tc.code, r.code, r.body)
			assert.True(t, contains(r.body, tc.msg...), "body %q lacks %q", r.body, tc.msg)
			after := mustMetric(t, s.Server, Batches, lbl("source", "agent", "result", tc.result))
			assert.Equal(t, before+1, after)
		})
	}

	t.Run("field named", func(t *testing.T) {
		// A string index out of range in result 0's check.
		bad := corruptFirstResultCheck(t, a.batch(res("tcp", "win", "windows", "success", t0)))
		r := post(t, s.URL, bad, testToken, wire.ContentType)
		assert.Equal(t, http.StatusBadRequest, r.code)
		assert.Contains(t, r.body, "result 0 check")
		assert.Contains(t, r.body, "out of range")
	})
	t.Run("unknown agent os", func(t *testing.T) {
		b := (&agent{node: "x", os: "plan9"}).batch(res("tcp", "win", "windows", "success", t0))
		r := send(t, s.URL, b)
		assert.Equal(t, http.StatusBadRequest, r.code)
		assert.Contains(t, r.body, `agent os: "plan9"`)
	})
	t.Run("wrong method", func(t *testing.T) {
		req, _ := http.NewRequest(http.MethodGet, s.URL+ResultsPath, nil)
		r := do(t, req)
		assert.Equal(t, http.StatusMethodNotAllowed, r.code)
		assert.Contains(t, r.header.Get("Allow"), "POST")
	})
}

// corruptFirstResultCheck re-encodes b with its first result's check index
// pointing past the string table.
func corruptFirstResultCheck(t *testing.T, b *wire.Batch) []byte {
	t.Helper()
	body := encode(t, b)
	// Layout after the table: result count, then result 0's check index.
	// Find it by decoding up to there: the count is 1 and is the byte right
	// before the first result; the check index is the next byte.
	dec, err := wire.Decode(body)
	require.NoError(t, err)
	require.Len(t, dec.Results, 1)
	// The result encoding is 5 index bytes, start varint, phases, rtt, 3 indexes.
	// Walk back from the end: rtt source/expected/observed (3), rtt (1),
	// phase count (1), start varint, then 5 indexes.
	end := len(body) - 3 - 1 - 1
	// start is sent-start = 0 here: one byte.
	end--
	checkAt := end - 5
	out := bytes.Clone(body)
	out[checkAt] = 0x7f
	return out
}

func TestUnknownValuesSkipped(t *testing.T) {
	s := startServer(t, Config{Now: newClock(t0).Now}, nil)
	a := &agent{node: "lin", os: "linux"}
	b := a.batch(
		res("tcp", "win", "windows", "success", t0, connect(time.Millisecond), wire.Phase{Name: "warp", Duration: time.Millisecond}),
		res("quic", "win", "windows", "success", t0, connect(time.Millisecond)),
		res("tcp", "mac", "darwin", "success", t0, connect(time.Millisecond)),
		res("tcp", "win", "windows", "meteor_strike", t0),
		res("tcp", "win", "windows", "success", t0.Add(-3*time.Hour), connect(time.Millisecond)),
	)
	r := send(t, s.URL, b)
	require.Equal(t, http.StatusOK, r.code, r.body)
	var ir IngestResponse
	require.NoError(t, json.Unmarshal([]byte(r.body), &ir))
	assert.Equal(t, IngestResponse{Batch: b.ID, Status: "accepted", Results: 5, Ingested: 2, Skipped: 3,
		SkippedBy: map[string]int{"unknown_check": 1, "unknown_os": 1, "too_old": 1}}, ir)
	assert.Equal(t, 1.0, mustMetric(t, s.Server, ResultsSkipped, lbl("reason", "unknown_check")))
	assert.Equal(t, 1.0, mustMetric(t, s.Server, PhasesSkipped, lbl("reason", "unknown_phase")))
	assert.Equal(t, 1.0, mustMetric(t, s.Server, PairResults, lbl("check", "tcp", "pair", "linux->windows", "result", "other")))
	require.NoError(t, s.Compute())
	assert.Equal(t, 1.0, mustMetric(t, s.Server, PairSamples, lbl("check", "tcp", "phase", "connect", "pair", "linux->windows")))
}

// TestSkewedAgentClock: an agent an hour ahead still lands its results
// now, by their age, not in the future or past.
func TestSkewedAgentClock(t *testing.T) {
	s := startServer(t, Config{Now: newClock(t0).Now}, nil)
	a := &agent{node: "lin", os: "linux"}
	for _, skew := range []time.Duration{time.Hour, -time.Hour, 24 * time.Hour} {
		b := a.batch(res("tcp", "win", "windows", "success", t0.Add(skew-2*time.Second), connect(time.Millisecond)))
		b.Sent = t0.Add(skew)
		r := send(t, s.URL, b)
		require.Equal(t, http.StatusOK, r.code)
		assert.NotContains(t, r.body, "skipped\":1")
	}
	// A result that claims to start after it was sent is placed at receive time.
	b := a.batch(res("tcp", "win", "windows", "success", t0.Add(time.Minute), connect(time.Millisecond)))
	require.Equal(t, http.StatusOK, send(t, s.URL, b).code)
	require.NoError(t, s.Compute())
	assert.Equal(t, 4.0, mustMetric(t, s.Server, PairSamples, lbl("check", "tcp", "phase", "connect", "pair", "linux->windows")))
	m := s.Matrix("tcp", true)
	require.Len(t, m.Cells, 1)
	assert.Equal(t, t0.UTC(), m.Cells[0].At)
}

func TestConcurrentIngest(t *testing.T) {
	s := startServer(t, Config{Now: newClock(t0).Now}, nil)
	var sent atomic.Int64
	done := make(chan struct{})
	for w := range 8 {
		// Batches are built here: require may only stop the test goroutine.
		a := &agent{node: fmt.Sprint("node-", w), os: []string{"linux", "windows"}[w%2]}
		var bodies [][]byte
		for range 20 {
			var rs []wire.Result
			for i := range 50 {
				rs = append(rs, res("http", fmt.Sprint("dst-", i%7), "linux", "success", t0,
					connect(time.Millisecond), wire.Phase{Name: "total", Duration: 2 * time.Millisecond}))
			}
			bodies = append(bodies, encode(t, a.batch(rs...)))
		}
		go func() {
			defer func() { done <- struct{}{} }()
			for _, body := range bodies {
				for range 2 { // every batch twice: dedup under concurrency
					req, err := http.NewRequest(http.MethodPost, s.URL+ResultsPath, bytes.NewReader(body))
					if err != nil {
						continue
					}
					req.Header.Set("Content-Type", wire.ContentType)
					req.Header.Set("Authorization", "Bearer "+testToken)
					resp, err := http.DefaultClient.Do(req)
					if err != nil {
						continue // counted as not sent: the assertion below fails
					}
					resp.Body.Close()
					if resp.StatusCode == http.StatusOK {
						sent.Add(1)
					}
				}
			}
		}()
	}
	for range 8 {
		<-done
	}
	assert.EqualValues(t, 320, sent.Load())
	require.NoError(t, s.Compute())
	assert.Equal(t, 4000.0, mustMetric(t, s.Server, PairSamples, lbl("check", "http", "phase", "total", "pair", "linux->linux")))
	assert.Equal(t, 160.0, mustMetric(t, s.Server, Batches, lbl("source", "agent", "result", "duplicate")))
}
