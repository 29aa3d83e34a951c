package aggregator

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/stretchr/testify/require"

	"github.com/xosprobe/xosprobe/aggregator/auth"
	"github.com/xosprobe/xosprobe/aggregator/wire"
)

// t0 is 5 s into a 10 s bucket, so results a few seconds old share it.
var t0 = time.Unix(1_800_000_005, 0)

const testToken = "agent-secret"

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock(t time.Time) *clock { return &clock{t: t} }

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Set(t time.Time) {
	c.mu.Lock()
	c.t = t
	c.mu.Unlock()
}

func sharedAuth(t testing.TB, tokens ...string) auth.Authenticator {
	t.Helper()
	a, err := auth.NewSharedToken("test", tokens...)
	require.NoError(t, err)
	return a
}

// testServer is a Server running on a loopback listener.
type testServer struct {
	*Server
	URL  string
	stop func() // cancels Run and waits for it
}

// startServer runs a Server on ln (a new loopback listener if nil) until
// the test ends or stop is called, and waits until it is ready.
func startServer(t testing.TB, cfg Config, ln net.Listener) *testServer {
	t.Helper()
	ts := launch(t, cfg, ln)
	ts.waitReady(t)
	return ts
}

// launch is startServer without the wait, for replicas that bootstrap from
// each other.
func launch(t testing.TB, cfg Config, ln net.Listener) *testServer {
	t.Helper()
	if ln == nil {
		ln = listen(t)
	}
	if cfg.Auth == nil {
		cfg.Auth = sharedAuth(t, testToken)
	}
	if cfg.ShutdownDelay == 0 {
		cfg.ShutdownDelay = -1
	}
	if cfg.ComputeInterval == 0 {
		cfg.ComputeInterval = time.Hour // tests call Compute themselves
	}
	s, err := New(cfg)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx, ln) }()
	var once sync.Once
	ts := &testServer{Server: s, URL: "http://" + ln.Addr().String()}
	ts.stop = func() {
		once.Do(func() {
			cancel()
			require.NoError(t, <-done)
		})
	}
	t.Cleanup(ts.stop)
	return ts
}

func (ts *testServer) waitReady(t testing.TB) {
	t.Helper()
	require.Eventually(t, ts.Ready, 10*time.Second, 5*time.Millisecond, "server never became ready")
}

func listen(t testing.TB) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	return ln
}

// res is a shorthand for a result.
func res(check, dstNode, dstOS, outcome string, start time.Time, phases ...wire.Phase) wire.Result {
	return wire.Result{Check: check, DstPod: "pod-" + dstNode, DstNode: dstNode, DstOS: dstOS, Outcome: outcome,
		Start: start, Phases: phases}
}

func connect(d time.Duration) wire.Phase { return wire.Phase{Name: "connect", Duration: d} }

func encode(t testing.TB, b *wire.Batch) []byte {
	t.Helper()
	if b.Sent.IsZero() {
		b.Sent = t0
	}
	data, err := wire.Encode(nil, b)
	require.NoError(t, err)
	return data
}

type response struct {
	code   int
	body   string
	header http.Header
}

func post(t testing.TB, url string, body []byte, token, contentType string) response {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url+ResultsPath, bytes.NewReader(body))
	require.NoError(t, err)
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	return do(t, req)
}

func do(t testing.TB, req *http.Request) response {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return response{code: resp.StatusCode, body: string(b), header: resp.Header}
}

func send(t testing.TB, url string, b *wire.Batch) response {
	t.Helper()
	return post(t, url, encode(t, b), testToken, wire.ContentType)
}

// metric returns the value of name with exactly the given labels.
func metric(t testing.TB, s *Server, name string, labels map[string]string) (float64, bool) {
	t.Helper()
	mfs, err := s.metrics.reg.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if labelsMatch(m.GetLabel(), labels) {
				switch {
				case m.Gauge != nil:
					return m.GetGauge().GetValue(), true
				case m.Counter != nil:
					return m.GetCounter().GetValue(), true
				case m.Histogram != nil:
					return float64(m.GetHistogram().GetSampleCount()), true
				}
			}
		}
	}
	return 0, false
}

func labelsMatch(have []*dto.LabelPair, want map[string]string) bool {
	if len(have) != len(want) {
		return false
	}
	for _, l := range have {
		if want[l.GetName()] != l.GetValue() {
			return false
		}
	}
	return true
}

func mustMetric(t testing.TB, s *Server, name string, labels map[string]string) float64 {
	t.Helper()
	v, ok := metric(t, s, name, labels)
	require.True(t, ok, "metric %s%v not found", name, labels)
	return v
}

func lbl(kv ...string) map[string]string {
	m := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return m
}

// agent builds batches of one synthetic agent.
type agent struct {
	node, os string
	seq      int
}

func (a *agent) batch(results ...wire.Result) *wire.Batch {
	a.seq++
	return &wire.Batch{ID: fmt.Sprintf("%s/%d", a.node, a.seq), Agent: wire.Agent{Pod: "agent-" + a.node, Node: a.node, OS: a.os},
		Sent: t0, Results: results}
}

func contains(s string, subs ...string) bool {
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			return false
		}
	}
	return true
}
