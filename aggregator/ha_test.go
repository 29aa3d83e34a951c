package aggregator

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/xosprobe/xosprobe/aggregator/matrix"
	"github.com/xosprobe/xosprobe/aggregator/wire"
)

const replicaSecret = "replica-secret"

func replicaConfig(t *testing.T, clk *clock, self string, peers ...string) Config {
	return Config{Now: clk.Now, SelfURL: self, Peers: peers, ReplicaAuth: sharedAuth(t, replicaSecret), ReplicaToken: staticToken(replicaSecret),
		BootstrapGrace: 100 * time.Millisecond, BootstrapTimeout: 10 * time.Second, DrainTimeout: 5 * time.Second}
}

// traffic generates batches from a mixed cluster: 6 Linux and 3 Windows
// agents, each probing 4 peers with tcp and http, a few failures.
type traffic struct {
	agents []*agent
	round  int
}

func newTraffic() *traffic {
	tr := &traffic{}
	for i := range 6 {
		tr.agents = append(tr.agents, &agent{node: fmt.Sprint("lin-", i), os: "linux"})
	}
	for i := range 3 {
		tr.agents = append(tr.agents, &agent{node: fmt.Sprint("win-", i), os: "windows"})
	}
	return tr
}

// next returns one batch per agent.
func (tr *traffic) next() []*wire.Batch {
	tr.round++
	var out []*wire.Batch
	for ai, a := range tr.agents {
		var rs []wire.Result
		for p := 1; p <= 4; p++ {
			dst := tr.agents[(ai+p)%len(tr.agents)]
			for k := range 5 {
				v := time.Duration(300+37*((tr.round*7+ai*13+p*5+k)%50)) * time.Microsecond
				if a.os == "windows" || dst.os == "windows" {
					v += 8 * time.Millisecond
				}
				outcome := "success"
				if (tr.round+ai+p+k)%23 == 0 {
					outcome = "connect_timeout"
				}
				start := t0.Add(-time.Duration(k) * 300 * time.Millisecond)
				rs = append(rs,
					res("tcp", dst.node, dst.os, outcome, start, connect(v)),
					res("http", dst.node, dst.os, outcome, start, connect(v), wire.Phase{Name: "total", Duration: 2 * v}))
			}
		}
		out = append(out, a.batch(rs...))
	}
	return out
}

// view is everything the replicas must agree on: computed metrics (not
// process counters) and the /matrix document.
type view struct {
	metrics map[string]float64
	matrix  *matrix.Matrix
}

var computedMetrics = []string{CrossOSDelta, CrossOSDeltaSamples, CrossOSBaselineSamples, CrossOSDeltaSignificant,
	CrossOSDeltaInsufficient, CrossOSDeltaCILow, CrossOSDeltaCIHigh, PairQuantile, PairSamples,
	CrossOSRegression, CrossOSRegressionBaseline, CrossOSRegressed, CrossOSRegressionInsufficient}

func viewOf(t *testing.T, s *Server) view {
	t.Helper()
	require.NoError(t, s.Compute())
	mfs, err := s.metrics.reg.Gather()
	require.NoError(t, err)
	v := view{metrics: map[string]float64{}}
	for _, mf := range mfs {
		if !slices.Contains(computedMetrics, mf.GetName()) {
			continue
		}
		for _, m := range mf.GetMetric() {
			var sb strings.Builder
			sb.WriteString(mf.GetName())
			for _, l := range m.GetLabel() {
				fmt.Fprintf(&sb, ",%s=%s", l.GetName(), l.GetValue())
			}
			v.metrics[sb.String()] = m.GetGauge().GetValue()
		}
	}
	v.matrix = s.Matrix("", true)
	v.matrix.GeneratedAt, v.matrix.ComputedAt = time.Time{}, time.Time{}
	return v
}

func assertSameView(t *testing.T, want, got view, what string) {
	t.Helper()
	require.NotEmpty(t, want.metrics)
	assert.ElementsMatch(t, slices.Collect(maps.Keys(want.metrics)), slices.Collect(maps.Keys(got.metrics)), "%s: metric series", what)
	for k, w := range want.metrics {
		assert.InDelta(t, w, got.metrics[k], 1e-12, "%s: %s", what, k)
	}
	assert.Equal(t, want.matrix, got.matrix, "%s: /matrix", what)
}

func waitForwarded(t *testing.T, servers ...*testServer) {
	t.Helper()
	require.Eventually(t, func() bool {
		for _, s := range servers {
			if s.PendingForwards() > 0 {
				return false
			}
		}
		return true
	}, 10*time.Second, 5*time.Millisecond, "forward queues never drained")
}

// TestHAFailover: two replicas behind a round-robin "Service", a reference
// single server fed everything. The replicas agree with the reference
// before a failure, the survivor after it, and the restarted replica once
// it has bootstrapped, including batches retried to both replicas.
func TestHAFailover(t *testing.T) {
	clk := newClock(t0)
	ref := startServer(t, Config{Now: clk.Now}, nil)
	lnA, lnB := listen(t), listen(t)
	urlA, urlB := "http://"+lnA.Addr().String(), "http://"+lnB.Addr().String()
	a := launch(t, replicaConfig(t, clk, urlA, urlB), lnA)
	b := launch(t, replicaConfig(t, clk, urlB, urlA), lnB)
	a.waitReady(t)
	b.waitReady(t)

	tr := newTraffic()
	rr := 0
	sendAll := func(replicas ...*testServer) {
		for _, batch := range tr.next() {
			body := encode(t, batch)
			require.Equal(t, http.StatusOK, post(t, ref.URL, body, testToken, wire.ContentType).code)
			target := replicas[rr%len(replicas)]
			rr++
			r := post(t, target.URL, body, testToken, wire.ContentType)
			require.Equal(t, http.StatusOK, r.code, r.body)
			if rr%5 == 0 {
				// The agent's retry reaches the other replica: counted once everywhere.
				other := replicas[rr%len(replicas)]
				require.Equal(t, http.StatusOK, post(t, other.URL, body, testToken, wire.ContentType).code)
			}
		}
	}

	for range 10 {
		sendAll(a, b)
	}
	waitForwarded(t, a, b)
	want := viewOf(t, ref.Server)
	assertSameView(t, want, viewOf(t, a.Server), "replica A before the failure")
	assertSameView(t, want, viewOf(t, b.Server), "replica B before the failure")

	b.stop()
	for range 10 {
		sendAll(a) // the Service routes everything to the survivor
	}
	want = viewOf(t, ref.Server)
	assertSameView(t, want, viewOf(t, a.Server), "survivor A")
	assert.Positive(t, a.PendingForwards(), "A keeps B's batches queued while B is down")

	// B restarts elsewhere (a new pod IP): it bootstraps from A, which
	// learns its address from the snapshot request.
	lnB2 := listen(t)
	urlB2 := "http://" + lnB2.Addr().String()
	b2 := startServer(t, replicaConfig(t, clk, urlB2, urlA), lnB2)
	assert.Equal(t, 1.0, mustMetric(t, b2.Server, Bootstrap, lbl("result", "merged")))
	assert.Contains(t, a.peers.urls(), urlB2)
	assertSameView(t, viewOf(t, ref.Server), viewOf(t, b2.Server), "B right after bootstrapping")

	for range 10 {
		sendAll(a, b2)
	}
	// Retry of a batch B2 already has through the snapshot: a duplicate.
	old := encode(t, tr.agents[0].batch())
	require.Equal(t, http.StatusOK, post(t, a.URL, old, testToken, wire.ContentType).code)
	require.Equal(t, http.StatusOK, post(t, ref.URL, old, testToken, wire.ContentType).code)
	waitForwarded(t, b2)
	require.Eventually(t, func() bool { return a.peers.pendingFor(urlB2) == 0 }, 10*time.Second, 5*time.Millisecond)
	r := post(t, b2.URL, old, testToken, wire.ContentType)
	assert.Equal(t, "duplicate", r.header.Get(BatchStatusHeader))

	want = viewOf(t, ref.Server)
	assertSameView(t, want, viewOf(t, a.Server), "A after B's return")
	assertSameView(t, want, viewOf(t, b2.Server), "B after its return")
	dups, _ := metric(t, b2.Server, Batches, lbl("source", "peer", "result", "duplicate"))
	t.Logf("B2 received %v forwarded batches it already had from the snapshot", dups)
}

// TestConcurrentStartAndDrain: replicas started together do not wait for
// each other's bootstrap timeout, and a graceful stop forwards what is queued.
func TestConcurrentStartAndDrain(t *testing.T) {
	clk := newClock(t0)
	lnA, lnB := listen(t), listen(t)
	urlA, urlB := "http://"+lnA.Addr().String(), "http://"+lnB.Addr().String()
	start := time.Now()
	a := launch(t, replicaConfig(t, clk, urlA, urlB), lnA)
	b := launch(t, replicaConfig(t, clk, urlB, urlA), lnB)
	a.waitReady(t)
	b.waitReady(t)
	assert.Less(t, time.Since(start), 5*time.Second)
	first, second := a, b
	if urlB < urlA {
		first, second = b, a
	}
	assert.Equal(t, 1.0, mustMetric(t, first.Server, Bootstrap, lbl("result", "empty")))
	assert.Equal(t, 1.0, mustMetric(t, second.Server, Bootstrap, lbl("result", "merged")))

	tr := newTraffic()
	var wg sync.WaitGroup
	for _, batch := range tr.next() {
		body := encode(t, batch)
		wg.Go(func() {
			assert.Equal(t, http.StatusOK, post(t, a.URL, body, testToken, wire.ContentType).code)
		})
	}
	wg.Wait()
	stopped := time.Now()
	a.stop() // graceful: drains A's queue to B before returning
	assert.Less(t, time.Since(stopped), 2*time.Second)
	assert.Zero(t, a.PendingForwards())
	require.NoError(t, b.Compute())
	require.NoError(t, a.Compute())
	for _, pair := range []string{"linux->linux", "windows->linux", "linux->windows", "windows->windows"} {
		l := lbl("check", "tcp", "phase", "connect", "pair", pair)
		assert.Equal(t, mustMetric(t, a.Server, PairSamples, l), mustMetric(t, b.Server, PairSamples, l), pair)
	}
}

func TestReplicationEndpoints(t *testing.T) {
	clk := newClock(t0)
	single := startServer(t, Config{Now: clk.Now}, nil)
	for _, path := range []string{ReplicatePath, SnapshotPath} {
		method := http.MethodPost
		if path == SnapshotPath {
			method = http.MethodGet
		}
		req, _ := http.NewRequest(method, single.URL+path, nil)
		req.Header.Set("Authorization", "Bearer "+replicaSecret)
		assert.Equal(t, http.StatusNotFound, do(t, req).code, "%s without replication", path)
	}

	s := startServer(t, replicaConfig(t, clk, ""), nil)
	batch := (&agent{node: "lin", os: "linux"}).batch(res("tcp", "win", "windows", "success", t0, connect(time.Millisecond)))
	good := appendFrame(nil, frame{recv: t0.UnixNano(), data: encode(t, batch)})
	replicate := func(body []byte, token string) response {
		req, _ := http.NewRequest(http.MethodPost, s.URL+ReplicatePath, bytes.NewReader(body))
		req.Header.Set("Content-Type", ReplicateContentType)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		return do(t, req)
	}
	assert.Equal(t, http.StatusUnauthorized, replicate(good, "").code)
	assert.Equal(t, http.StatusUnauthorized, replicate(good, testToken).code, "the agents' token is not the replica secret")
	// A bad frame after a good one: nothing is applied.
	bad := appendFrame(bytes.Clone(good), frame{recv: t0.UnixNano(), data: []byte("XOSP\x01garbage")})
	r := replicate(bad, replicaSecret)
	assert.Equal(t, http.StatusBadRequest, r.code)
	assert.Contains(t, r.body, "frame 1")
	assert.Equal(t, 0, s.dedup.size())
	r = replicate(good, replicaSecret)
	assert.Equal(t, http.StatusOK, r.code, r.body)
	assert.JSONEq(t, `{"accepted":1,"duplicate":0}`, r.body)
	assert.JSONEq(t, `{"accepted":0,"duplicate":1}`, replicate(good, replicaSecret).body)

	req, _ := http.NewRequest(http.MethodGet, s.URL+SnapshotPath, nil)
	assert.Equal(t, http.StatusUnauthorized, do(t, req).code)
}

func TestFrames(t *testing.T) {
	var body []byte
	want := []frame{{recv: 1, data: []byte("a")}, {recv: -5, data: nil}, {recv: 1 << 60, data: bytes.Repeat([]byte{7}, 300)}}
	for _, f := range want {
		body = appendFrame(body, f)
	}
	got, err := decodeFrames(body)
	require.NoError(t, err)
	require.Len(t, got, 3)
	for i := range want {
		assert.Equal(t, want[i].recv, got[i].recv)
		assert.Equal(t, len(want[i].data), len(got[i].data))
	}
	for cut := 1; cut < len(body); cut++ {
		_, err := decodeFrames(body[:cut])
		boundary := cut == 3 || cut == 5
		assert.Equal(t, boundary, err == nil, "cut at %d", cut)
	}
}

func (ps *peerSet) pendingFor(url string) int {
	ps.mu.Lock()
	p := ps.peers[url]
	ps.mu.Unlock()
	if p == nil {
		return 0
	}
	return p.pending()
}

// TestForwardShrinksOn413: a peer with a smaller body limit answers 413;
// the forwarder halves its requests until they fit, losing nothing.
func TestForwardShrinksOn413(t *testing.T) {
	var mu sync.Mutex
	received := 0
	peer := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if len(body) > 3000 {
			http.Error(w, "too large", http.StatusRequestEntityTooLarge)
			return
		}
		frames, err := decodeFrames(body)
		assert.NoError(t, err)
		mu.Lock()
		received += len(frames)
		mu.Unlock()
	}))
	defer peer.Close()
	s, err := New(Config{Auth: sharedAuth(t, testToken), ReplicaAuth: sharedAuth(t, replicaSecret), ReplicaToken: staticToken(replicaSecret),
		Peers: []string{peer.URL}})
	require.NoError(t, err)
	for i := range 10 {
		s.peers.enqueue(frame{recv: int64(i), data: bytes.Repeat([]byte{'x'}, 1000)})
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { s.peers.run(ctx); close(done) }()
	require.Eventually(t, func() bool { return s.PendingForwards() == 0 }, 5*time.Second, 5*time.Millisecond)
	cancel()
	<-done
	assert.Equal(t, 10, received)
	assert.Equal(t, 10.0, mustMetric(t, s, ReplicationBatches, lbl("result", "sent")))
	_, dropped := metric(t, s, ReplicationBatches, lbl("result", "dropped"))
	assert.False(t, dropped)
}

// TestDiscoveredPeerExpires: a discovered peer that stays unreachable is
// dropped with its queue after PeerExpiry; a static one would be kept.
func TestDiscoveredPeerExpires(t *testing.T) {
	dead := listen(t)
	deadURL := "http://" + dead.Addr().String()
	require.NoError(t, dead.Close())
	s, err := New(Config{Auth: sharedAuth(t, testToken), ReplicaAuth: sharedAuth(t, replicaSecret), ReplicaToken: staticToken(replicaSecret),
		SelfURL: "http://127.0.0.1:1", PeerExpiry: 200 * time.Millisecond,
		LookupPeers: func(context.Context) ([]string, error) { return []string{deadURL, "http://127.0.0.1:1/"}, nil }})
	require.NoError(t, err)
	s.lookupPeers(context.Background())
	require.Equal(t, []string{deadURL}, s.peers.urls(), "self is not a peer")
	s.peers.enqueue(frame{recv: 1, data: []byte("x")})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { s.peers.run(ctx); close(done) }()
	require.Eventually(t, func() bool { return len(s.peers.urls()) == 0 }, 5*time.Second, 10*time.Millisecond)
	cancel()
	<-done
	assert.Equal(t, 1.0, mustMetric(t, s, ReplicationBatches, lbl("result", "dropped")))
	assert.Positive(t, mustMetric(t, s, ReplicationErrors, nil))
}

// FuzzDecodeFrames: any replication body either decodes into frames that
// lie within it or is an error; never a panic.
func FuzzDecodeFrames(f *testing.F) {
	f.Add(appendFrame(appendFrame(nil, frame{recv: 5, data: []byte("XOSP")}), frame{recv: -1}))
	f.Add([]byte{0x80})
	f.Add([]byte{2, 0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Fuzz(func(t *testing.T, body []byte) {
		frames, err := decodeFrames(body)
		if err != nil {
			return
		}
		n := 0
		for _, fr := range frames {
			n += len(fr.data)
		}
		if n > len(body) {
			t.Fatalf("frames hold %d bytes of a %d-byte body", n, len(body))
		}
	})
}

func staticToken(tok string) func() (string, error) {
	return func() (string, error) { return tok, nil }
}

// TestForwardLimitGrowsBack: once the peer takes larger requests again (its
// limit was lowered only for a while), the forwarder's requests grow back.
func TestForwardLimitGrowsBack(t *testing.T) {
	var mu sync.Mutex
	strict, largest := true, 0
	peer := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		defer mu.Unlock()
		if strict && len(body) > 3000 {
			http.Error(w, "too large", http.StatusRequestEntityTooLarge)
			return
		}
		if !strict {
			largest = max(largest, len(body))
		}
	}))
	defer peer.Close()
	s, err := New(Config{Auth: sharedAuth(t, testToken), ReplicaAuth: sharedAuth(t, replicaSecret), ReplicaToken: staticToken(replicaSecret),
		Peers: []string{peer.URL}})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { s.peers.run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	enqueue := func(n int) {
		for i := range n {
			s.peers.enqueue(frame{recv: int64(i), data: bytes.Repeat([]byte{'x'}, 1000)})
		}
		require.Eventually(t, func() bool { return s.PendingForwards() == 0 }, 10*time.Second, 5*time.Millisecond)
	}
	enqueue(10) // shrinks below 3000 bytes
	mu.Lock()
	strict = false
	mu.Unlock()
	enqueue(400)
	mu.Lock()
	defer mu.Unlock()
	assert.Greater(t, largest, 3000, "requests grew past the old limit after %d successes", growAfter)
}

func TestReplicaMayRegisterOnlyItself(t *testing.T) {
	for _, tc := range []struct {
		url, remote string
		want        bool
	}{
		{"http://10.244.1.5:9446", "10.244.1.5:51234", true},
		{"http://[::ffff:10.244.1.5]:9446", "10.244.1.5:51234", true},
		{"http://10.244.9.9:9446", "10.244.1.5:51234", false},
		{"http://evil.example:9446", "10.244.1.5:51234", false},
		{"http://10.244.1.5:9446", "garbage", false},
	} {
		assert.Equal(t, tc.want, sameHost(tc.url, tc.remote), "%s from %s", tc.url, tc.remote)
	}
}
