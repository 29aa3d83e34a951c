package reporter

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/xosprobe/xosprobe/aggregator/wire"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

type stats struct {
	mu       sync.Mutex
	buffered int
	sent     int
	dropped  map[string]int
	errors   map[string]int
}

func newStats() *stats { return &stats{dropped: map[string]int{}, errors: map[string]int{}} }

func (s *stats) Buffered(n int) { s.mu.Lock(); s.buffered = n; s.mu.Unlock() }
func (s *stats) Sent(n int)     { s.mu.Lock(); s.sent += n; s.mu.Unlock() }
func (s *stats) Dropped(r string, n int) {
	s.mu.Lock()
	s.dropped[r] += n
	s.mu.Unlock()
}
func (s *stats) SendError(r string) { s.mu.Lock(); s.errors[r]++; s.mu.Unlock() }
func (s *stats) get(f func(*stats) int) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return f(s)
}

// aggregator is a fake ingest endpoint that decodes batches and answers with
// whatever status respond returns for the nth request.
type aggregator struct {
	mu       sync.Mutex
	batches  []*wire.Batch
	requests atomic.Int64
	tokens   []string
	respond  func(n int64, b *wire.Batch) int
}

func (a *aggregator) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	n := a.requests.Add(1)
	body, _ := io.ReadAll(r.Body)
	b, err := wire.Decode(body)
	if err != nil || r.URL.Path != Path || r.Header.Get("Content-Type") != wire.ContentType {
		http.Error(w, fmt.Sprint("bad batch: ", err), http.StatusBadRequest)
		return
	}
	code := http.StatusOK
	if a.respond != nil {
		code = a.respond(n, b)
	}
	a.mu.Lock()
	a.tokens = append(a.tokens, r.Header.Get("Authorization"))
	if code/100 == 2 {
		a.batches = append(a.batches, b)
	}
	a.mu.Unlock()
	w.WriteHeader(code)
}

func (a *aggregator) accepted() (ids []string, results int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, b := range a.batches {
		ids = append(ids, b.ID)
		results += len(b.Results)
	}
	return ids, results
}

func result(i int) wire.Result {
	return wire.Result{Check: "tcp", DstNode: fmt.Sprintf("n%d", i), DstOS: "linux", Outcome: "success", Start: time.Now()}
}

func fastConfig(url string) Config {
	return Config{URL: url, Agent: wire.Agent{Pod: "agent-1", Node: "n0", OS: "windows"}, BufferSize: 100, MaxBatch: 10,
		FlushInterval: 10 * time.Millisecond, Timeout: 200 * time.Millisecond, MinBackoff: 5 * time.Millisecond, MaxBackoff: 20 * time.Millisecond}
}

func run(t *testing.T, r *Reporter) context.CancelFunc {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { r.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return cancel
}

func newReporter(cfg Config, st *stats) *Reporter {
	return New(cfg, &http.Client{}, st, slog.New(slog.DiscardHandler))
}

func TestDeliversEverythingInBatches(t *testing.T) {
	agg := &aggregator{}
	srv := httptest.NewServer(agg)
	defer srv.Close()
	st := newStats()
	cfg := fastConfig(srv.URL)
	cfg.Token = func() (string, error) { return "tok", nil }
	r := newReporter(cfg, st)
	run(t, r)
	for i := range 35 {
		r.Add(result(i))
	}
	require.Eventually(t, func() bool { _, n := agg.accepted(); return n == 35 }, 5*time.Second, 5*time.Millisecond)
	ids, _ := agg.accepted()
	assert.GreaterOrEqual(t, len(ids), 4, "MaxBatch 10 splits 35 results")
	assert.Len(t, uniq(ids), len(ids), "every batch has its own ID")
	// The reporter counts a batch once its response is read, just after the server saw it.
	require.Eventually(t, func() bool { return st.get(func(s *stats) int { return s.sent }) == 35 }, 5*time.Second, time.Millisecond)
	agg.mu.Lock()
	assert.Equal(t, "Bearer tok", agg.tokens[0])
	agg.mu.Unlock()
}

func TestRetriesKeepTheBatchID(t *testing.T) {
	var mu sync.Mutex
	seen := map[string]int{}
	agg := &aggregator{respond: func(n int64, b *wire.Batch) int {
		mu.Lock()
		seen[b.ID]++
		mu.Unlock()
		switch n {
		case 1:
			return http.StatusServiceUnavailable
		case 2:
			w := http.StatusTooManyRequests
			return w
		}
		return http.StatusAccepted
	}}
	srv := httptest.NewServer(agg)
	defer srv.Close()
	st := newStats()
	r := newReporter(fastConfig(srv.URL), st)
	run(t, r)
	for i := range 5 {
		r.Add(result(i))
	}
	require.Eventually(t, func() bool { _, n := agg.accepted(); return n == 5 }, 5*time.Second, 5*time.Millisecond)
	ids, _ := agg.accepted()
	require.Len(t, ids, 1)
	mu.Lock()
	assert.Equal(t, 3, seen[ids[0]], "the same ID on every attempt")
	mu.Unlock()
	assert.Equal(t, 1, st.get(func(s *stats) int { return s.errors["server_error"] }))
	assert.Equal(t, 1, st.get(func(s *stats) int { return s.errors["throttled"] }))
}

func TestAggregatorDownThenBack(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := l.Addr().String()
	l.Close() // nothing listens: connection refused

	st := newStats()
	r := newReporter(fastConfig("http://"+addr), st)
	run(t, r)
	for i := range 20 {
		r.Add(result(i))
	}
	require.Eventually(t, func() bool { return st.get(func(s *stats) int { return s.errors["network"] }) >= 3 }, 5*time.Second, time.Millisecond)

	l, err = net.Listen("tcp", addr)
	require.NoError(t, err)
	agg := &aggregator{}
	srv := &http.Server{Handler: agg}
	go func() { _ = srv.Serve(l) }()
	defer srv.Close()
	require.Eventually(t, func() bool { _, n := agg.accepted(); return n == 20 }, 5*time.Second, 5*time.Millisecond,
		"results buffered while the aggregator was away are delivered")
	assert.Zero(t, st.get(func(s *stats) int { return s.dropped["buffer_full"] }))
}

func TestSlowAggregatorTimesOutAndRetries(t *testing.T) {
	agg := &aggregator{}
	var slow atomic.Bool
	slow.Store(true)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if slow.Load() {
			select {
			case <-r.Context().Done():
			case <-time.After(5 * time.Second):
			}
			return
		}
		agg.ServeHTTP(w, r)
	}))
	defer srv.Close()
	st := newStats()
	r := newReporter(fastConfig(srv.URL), st)
	run(t, r)
	r.Add(result(1))
	require.Eventually(t, func() bool { return st.get(func(s *stats) int { return s.errors["network"] }) >= 1 }, 5*time.Second, time.Millisecond)
	slow.Store(false)
	require.Eventually(t, func() bool { _, n := agg.accepted(); return n == 1 }, 5*time.Second, 5*time.Millisecond)
}

func TestTooLargeSplits(t *testing.T) {
	agg := &aggregator{respond: func(_ int64, b *wire.Batch) int {
		if len(b.Results) > 3 {
			return http.StatusRequestEntityTooLarge
		}
		return http.StatusOK
	}}
	srv := httptest.NewServer(agg)
	defer srv.Close()
	st := newStats()
	r := newReporter(fastConfig(srv.URL), st)
	r.Add(result(0)) // queue before Run so all ten go in one batch
	for i := 1; i < 10; i++ {
		r.Add(result(i))
	}
	run(t, r)
	require.Eventually(t, func() bool { _, n := agg.accepted(); return n == 10 }, 5*time.Second, 5*time.Millisecond)
	ids, _ := agg.accepted()
	assert.Len(t, uniq(ids), len(ids))
	assert.Zero(t, st.get(func(s *stats) int { return s.dropped["rejected"] }))
}

func TestRejectedBatchIsDroppedAndCounted(t *testing.T) {
	agg := &aggregator{respond: func(n int64, _ *wire.Batch) int {
		if n == 1 {
			return http.StatusBadRequest
		}
		return http.StatusOK
	}}
	srv := httptest.NewServer(agg)
	defer srv.Close()
	st := newStats()
	r := newReporter(fastConfig(srv.URL), st)
	for i := range 4 {
		r.Add(result(i))
	}
	run(t, r)
	require.Eventually(t, func() bool { return st.get(func(s *stats) int { return s.dropped["rejected"] }) == 4 }, 5*time.Second, time.Millisecond)
	r.Add(result(9))
	require.Eventually(t, func() bool { _, n := agg.accepted(); return n == 1 }, 5*time.Second, 5*time.Millisecond, "a rejection does not stop later batches")
}

func TestFullBufferDropsOldestAndNeverBlocks(t *testing.T) {
	st := newStats()
	cfg := fastConfig("http://127.0.0.1:1")
	r := newReporter(cfg, st) // not running: nothing drains the buffer
	start := time.Now()
	for i := range 250 {
		r.Add(result(i))
	}
	assert.Less(t, time.Since(start), time.Second)
	assert.Equal(t, 150, st.get(func(s *stats) int { return s.dropped["buffer_full"] }))
	assert.Equal(t, 100, st.get(func(s *stats) int { return s.buffered }))
	got := r.take(1000)
	require.Len(t, got, 100)
	assert.Equal(t, "n150", got[0].DstNode, "the oldest were dropped")
	assert.Equal(t, "n249", got[99].DstNode)
}

func TestShutdownFlushes(t *testing.T) {
	agg := &aggregator{}
	srv := httptest.NewServer(agg)
	defer srv.Close()
	cfg := fastConfig(srv.URL)
	cfg.FlushInterval = time.Hour // only the shutdown flush can send
	r := newReporter(cfg, newStats())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { r.Run(ctx); close(done) }()
	for i := range 3 {
		r.Add(result(i))
	}
	cancel()
	<-done
	_, n := agg.accepted()
	assert.Equal(t, 3, n)
}

func uniq(s []string) map[string]bool {
	m := map[string]bool{}
	for _, v := range s {
		m[v] = true
	}
	return m
}

// A batch the aggregator has not acknowledged is retried under its own ID —
// both halves of a split too — and nothing is lost or re-cut in between.
func TestUnacknowledgedBatchesKeepTheirIDs(t *testing.T) {
	agg := &aggregator{respond: func(n int64, b *wire.Batch) int {
		switch {
		case len(b.Results) > 5:
			return http.StatusRequestEntityTooLarge
		case n == 2:
			return http.StatusServiceUnavailable
		}
		return http.StatusOK
	}}
	srv := httptest.NewServer(agg)
	defer srv.Close()
	st := newStats()
	r := newReporter(fastConfig(srv.URL), st)
	for i := range 10 {
		r.Add(result(i))
	}
	r.flush(context.Background(), false) // 413, split, first half 503: both halves wait
	require.Len(t, r.pending, 2)
	first, second := r.pending[0].ID, r.pending[1].ID
	assert.Len(t, r.pending[0].Results, 5)
	assert.Len(t, r.pending[1].Results, 5)
	assert.Zero(t, st.get(func(s *stats) int { return s.dropped["rejected"] + s.dropped["buffer_full"] }))

	r.Add(result(10)) // newer results queue behind the pending batches
	r.flush(context.Background(), false)
	ids, n := agg.accepted()
	assert.Equal(t, []string{first, second}, ids[:2], "retried under the same IDs, in order")
	assert.Equal(t, 11, n)
	assert.Empty(t, r.pending)
}

// A pod name may be 253 characters; every batch ID must still fit
// wire.MaxIDLen with its sequence number and splits, and stay distinct per pod.
func TestBatchIDPrefixFitsLongPodNames(t *testing.T) {
	long := strings.Repeat("p", 253)
	seen := map[string]string{}
	for _, pod := range []string{"a", strings.Repeat("x", 57), strings.Repeat("x", 58), strings.Repeat("y", 113), long, long[:252] + "q"} {
		p := batchIDPrefix(pod, math.MaxUint64)
		id := p + strconv.FormatUint(math.MaxUint64, 10) + strings.Repeat("a", maxSplitSuffix)
		assert.LessOrEqual(t, len(id), wire.MaxIDLen, "pod of %d characters", len(pod))
		_, err := wire.Encode(nil, &wire.Batch{ID: id, Agent: wire.Agent{Node: "n", OS: "linux", Pod: pod}})
		assert.NoError(t, err, "pod of %d characters", len(pod))
		if other, dup := seen[p]; dup {
			t.Errorf("pods %q and %q share the prefix %q", other, pod, p)
		}
		seen[p] = pod
	}
	assert.Equal(t, "a/3w5e11264sgsf/", batchIDPrefix("a", math.MaxUint64), "short names stay as they are")
}
