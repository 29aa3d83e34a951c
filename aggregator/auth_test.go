package aggregator

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	authv1 "k8s.io/api/authentication/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/xosprobe/xosprobe/agent/reporter"
	"github.com/xosprobe/xosprobe/aggregator/auth"
	"github.com/xosprobe/xosprobe/aggregator/wire"
)

// testJWT is a JWT-shaped token named name for audience aud (default the
// aggregator's), expiring in 2033: plausible until a review says otherwise.
func testJWT(name string, aud ...string) string {
	if len(aud) == 0 {
		aud = []string{"xosprobe-aggregator"}
	}
	claims, _ := json.Marshal(map[string]any{"sub": name, "aud": aud, "exp": 2e9})
	return "eyJhbGciOiJSUzI1NiJ9." + base64.RawURLEncoding.EncodeToString(claims) + ".c2ln"
}

// fakeTokenReview answers TokenReviews like the API server for two tokens.
func fakeTokenReview(t *testing.T, calls *atomic.Int32, down *atomic.Bool) auth.Authenticator {
	t.Helper()
	type tok struct{ user, aud string }
	tokens := map[string]tok{
		testJWT("agent"):    {"system:serviceaccount:xosprobe:xosprobe-agent", "xosprobe-aggregator"},
		testJWT("other-sa"): {"system:serviceaccount:kube-system:default", "xosprobe-aggregator"},
	}
	cs := fake.NewClientset()
	cs.PrependReactor("create", "tokenreviews", func(a k8stesting.Action) (bool, runtime.Object, error) {
		calls.Add(1)
		if down.Load() {
			return true, nil, errors.New("dial tcp 10.96.0.1:443: connect: connection refused")
		}
		tr := a.(k8stesting.CreateAction).GetObject().(*authv1.TokenReview).DeepCopy()
		tk, ok := tokens[tr.Spec.Token]
		switch {
		case !ok:
			tr.Status.Error = "invalid bearer token"
		case len(tr.Spec.Audiences) != 1 || tr.Spec.Audiences[0] != tk.aud:
			tr.Status.Error = "invalid bearer token, token audiences are invalid for the target audiences"
		default:
			tr.Status = authv1.TokenReviewStatus{Authenticated: true, Audiences: []string{tk.aud},
				User: authv1.UserInfo{Username: tk.user}}
		}
		return true, tr, nil
	})
	a, err := auth.NewTokenReview(cs.AuthenticationV1().TokenReviews(), auth.TokenReviewConfig{
		Audience: "xosprobe-aggregator", ServiceAccounts: []string{"xosprobe:xosprobe-agent"}})
	require.NoError(t, err)
	return a
}

func TestAuthTokenReview(t *testing.T) {
	var calls atomic.Int32
	var down atomic.Bool
	s := startServer(t, Config{Now: newClock(t0).Now, Auth: fakeTokenReview(t, &calls, &down)}, nil)
	a := &agent{node: "lin", os: "linux"}
	body := func() []byte {
		return encode(t, a.batch(res("tcp", "win", "windows", "success", t0, connect(time.Millisecond))))
	}

	for _, tc := range []struct {
		name, token string
		code        int
		challenge   string
		msg         string
	}{
		{name: "no token", code: http.StatusUnauthorized, challenge: `Bearer realm="xosprobe-aggregator"`, msg: "missing bearer token"},
		{name: "unknown token", token: testJWT("forged"), code: http.StatusUnauthorized, challenge: `error="invalid_token"`, msg: "invalid bearer token"},
		{name: "wrong service account", token: testJWT("other-sa"), code: http.StatusForbidden, msg: "system:serviceaccount:kube-system:default is not the agent ServiceAccount"},
		{name: "wrong audience", token: testJWT("other-aud", "https://kubernetes.default.svc.cluster.local"), code: http.StatusUnauthorized, challenge: `error="invalid_token"`, msg: "audiences"},
		{name: "agent", token: testJWT("agent"), code: http.StatusOK},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := post(t, s.URL, body(), tc.token, wire.ContentType)
			assert.Equal(t, tc.code, r.code, r.body)
			assert.Contains(t, r.body, tc.msg)
			if tc.challenge != "" {
				assert.Contains(t, r.header.Get("WWW-Authenticate"), tc.challenge)
			}
		})
	}
	assert.Equal(t, 4.0, mustMetric(t, s.Server, Batches, lbl("source", "agent", "result", "rejected_auth")))

	t.Run("cached", func(t *testing.T) {
		before := calls.Load()
		for range 5 {
			require.Equal(t, http.StatusOK, post(t, s.URL, body(), testJWT("agent"), wire.ContentType).code)
			require.Equal(t, http.StatusForbidden, post(t, s.URL, body(), testJWT("other-sa"), wire.ContentType).code)
		}
		assert.Equal(t, before, calls.Load(), "repeated tokens are answered from the cache")
		assert.Equal(t, 10.0, mustMetric(t, s.Server, AuthCache, lbl("result", "hit")))
	})
	t.Run("api server down", func(t *testing.T) {
		down.Store(true)
		defer down.Store(false)
		r := post(t, s.URL, body(), testJWT("a-new-token"), wire.ContentType)
		assert.Equal(t, http.StatusServiceUnavailable, r.code, "an outage is retried, not a verdict")
		assert.NotEmpty(t, r.header.Get("Retry-After"))
		// Cached tokens keep working through an API server outage.
		assert.Equal(t, http.StatusOK, post(t, s.URL, body(), testJWT("agent"), wire.ContentType).code)
	})
}

func TestAuthSharedToken(t *testing.T) {
	s := startServer(t, Config{Now: newClock(t0).Now, Auth: sharedAuth(t, "s3cret")}, nil)
	a := &agent{node: "lin", os: "linux"}
	for tok, code := range map[string]int{"": 401, "s3cre": 401, "s3cret": 200} {
		r := post(t, s.URL, encode(t, a.batch()), tok, wire.ContentType)
		assert.Equal(t, code, r.code, "token %q: %s", tok, r.body)
	}
}

// TestReporterRetryCountedOnce drives the real agent reporter against the
// aggregator behind a proxy that fails requests: before the aggregator saw
// them (the retry must be counted), and after (the response is lost; the
// retry must not be counted again).
func TestReporterRetryCountedOnce(t *testing.T) {
	for _, tc := range []struct {
		name         string
		afterForward bool
	}{{"503 before the aggregator", false}, {"503 after the aggregator counted it", true}} {
		t.Run(tc.name, func(t *testing.T) {
			s := startServer(t, Config{Now: newClock(t0).Now}, nil)
			var attempts atomic.Int32
			proxy := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				n := attempts.Add(1)
				if n == 1 && !tc.afterForward {
					http.Error(w, "injected", http.StatusServiceUnavailable)
					return
				}
				req, _ := http.NewRequestWithContext(r.Context(), r.Method, s.URL+r.URL.Path, r.Body)
				req.Header = r.Header.Clone()
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					http.Error(w, err.Error(), http.StatusBadGateway)
					return
				}
				defer resp.Body.Close()
				b, _ := io.ReadAll(resp.Body)
				if n == 1 {
					http.Error(w, "injected after forwarding", http.StatusServiceUnavailable)
					return
				}
				w.Header().Set(BatchStatusHeader, resp.Header.Get(BatchStatusHeader))
				w.WriteHeader(resp.StatusCode)
				_, _ = w.Write(b)
			})}
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			require.NoError(t, err)
			go func() { _ = proxy.Serve(ln) }()
			defer proxy.Close()

			stats := &reporterStats{}
			cfg := reporter.Config{URL: "http://" + ln.Addr().String(), Agent: wire.Agent{Pod: "agent-lin", Node: "lin", OS: "linux"},
				MaxBatch: 100, FlushInterval: 10 * time.Millisecond, MinBackoff: time.Millisecond, MaxBackoff: 5 * time.Millisecond,
				Token: func() (string, error) { return testToken, nil }}
			rep := reporter.New(cfg, &http.Client{}, stats, slog.New(slog.DiscardHandler))
			for range 10 {
				rep.Add(res("tcp", "win", "windows", "success", t0, connect(time.Millisecond)))
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan struct{})
			go func() { rep.Run(ctx); close(done) }()
			require.Eventually(t, func() bool { return stats.sent.Load() == 10 }, 5*time.Second, 5*time.Millisecond)
			cancel()
			<-done

			assert.GreaterOrEqual(t, attempts.Load(), int32(2), "the batch was retried")
			require.NoError(t, s.Compute())
			assert.Equal(t, 10.0, mustMetric(t, s.Server, PairSamples, lbl("check", "tcp", "phase", "connect", "pair", "linux->windows")))
			dups, _ := metric(t, s.Server, Batches, lbl("source", "agent", "result", "duplicate"))
			if tc.afterForward {
				assert.Equal(t, 1.0, dups)
			} else {
				assert.Equal(t, 0.0, dups)
			}
		})
	}
}

type reporterStats struct{ sent atomic.Int64 }

func (r *reporterStats) Buffered(int)        {}
func (r *reporterStats) Sent(n int)          { r.sent.Add(int64(n)) }
func (r *reporterStats) Dropped(string, int) {}
func (r *reporterStats) SendError(string)    {}

// A source that spent its failure budget gets 429 before any TokenReview;
// an admitted token from the same address (an agent behind the node's SNAT)
// still gets through, and the budget refills.
func TestAuthFailuresLimitedPerSource(t *testing.T) {
	var calls atomic.Int32
	var down atomic.Bool
	clk := newClock(t0)
	s := startServer(t, Config{Now: clk.Now, Auth: fakeTokenReview(t, &calls, &down),
		AuthFailureBurst: 3, AuthFailureEvery: time.Minute}, nil)
	a := &agent{node: "lin", os: "linux"}
	send := func(token string) response {
		return post(t, s.URL, encode(t, a.batch(res("tcp", "win", "windows", "success", t0, connect(time.Millisecond)))), token, wire.ContentType)
	}
	require.Equal(t, http.StatusOK, send(testJWT("agent")).code)
	for i := range 3 {
		require.Equal(t, http.StatusUnauthorized, send(testJWT(fmt.Sprint("forged-", i))).code)
	}
	reviews := calls.Load()
	r := send(testJWT("forged-3"))
	assert.Equal(t, http.StatusTooManyRequests, r.code, r.body)
	assert.Contains(t, r.body, "too many failed authentications from 127.0.0.1")
	assert.NotEmpty(t, r.header.Get("Retry-After"))
	assert.Equal(t, http.StatusTooManyRequests, send(testJWT("not-yet-reviewed")).code, "an unknown token waits too")
	assert.Equal(t, reviews, calls.Load(), "a spent source reached TokenReview")

	assert.Equal(t, http.StatusOK, send(testJWT("agent")).code, "the admitted token keeps working")

	clk.Set(t0.Add(time.Minute))
	assert.Equal(t, http.StatusUnauthorized, send(testJWT("forged-4")).code, "one failure back per minute")
	assert.Equal(t, http.StatusTooManyRequests, send(testJWT("forged-5")).code)
}
