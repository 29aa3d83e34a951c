package auth

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
	authv1 "k8s.io/api/authentication/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// fakeAPI is a TokenReview endpoint that knows a few tokens.
type fakeAPI struct {
	calls atomic.Int32
	fail  atomic.Bool
	gate  chan struct{} // when set, reviews block until it is closed
	// tokens maps a token to its user and audiences.
	tokens map[string]struct {
		user      string
		audiences []string
	}
}

func newFakeAPI() (*fakeAPI, *fake.Clientset) {
	f := &fakeAPI{tokens: map[string]struct {
		user      string
		audiences []string
	}{
		tok("agent-token"): {"system:serviceaccount:xosprobe:xosprobe-agent", []string{"xosprobe-aggregator"}},
		tok("other-sa"):    {"system:serviceaccount:default:default", []string{"xosprobe-aggregator"}},
		// Claims audience "xosprobe-aggregator", but the API server knows
		// better: the refusal must come from the review.
		tok("other-aud"): {"system:serviceaccount:xosprobe:xosprobe-agent", []string{"https://kubernetes.default.svc"}},
	}}
	cs := fake.NewClientset()
	cs.PrependReactor("create", "tokenreviews", func(a k8stesting.Action) (bool, runtime.Object, error) {
		f.calls.Add(1)
		if f.gate != nil {
			<-f.gate
		}
		if f.fail.Load() {
			return true, nil, errors.New("connection refused")
		}
		tr := a.(k8stesting.CreateAction).GetObject().(*authv1.TokenReview).DeepCopy()
		tok, ok := f.tokens[tr.Spec.Token]
		if !ok {
			tr.Status = authv1.TokenReviewStatus{Error: "invalid bearer token"}
			return true, tr, nil
		}
		// What the API server does: the intersection of requested and token audiences.
		var common []string
		for _, want := range tr.Spec.Audiences {
			for _, have := range tok.audiences {
				if want == have {
					common = append(common, want)
				}
			}
		}
		if len(common) == 0 {
			tr.Status = authv1.TokenReviewStatus{Error: "token audiences are invalid for the target audiences"}
			return true, tr, nil
		}
		tr.Status = authv1.TokenReviewStatus{Authenticated: true, Audiences: common,
			User: authv1.UserInfo{Username: tok.user, UID: "uid-" + tok.user}}
		return true, tr, nil
	})
	return f, cs
}

// tok is a JWT-shaped token named name, for audience aud (default the
// aggregator's), expiring in 2033: what a projected token looks like before
// a review, which alone tells whether it is valid.
func tok(name string, aud ...string) string {
	if len(aud) == 0 {
		aud = []string{"xosprobe-aggregator"}
	}
	claims, _ := json.Marshal(map[string]any{"sub": name, "aud": aud, "exp": 2e9})
	return "eyJhbGciOiJSUzI1NiJ9." + base64.RawURLEncoding.EncodeToString(claims) + ".c2ln"
}

func tokOrEmpty(name string) string {
	if name == "" {
		return ""
	}
	return tok(name)
}

type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func newReview(t *testing.T, cs *fake.Clientset, clk *fakeClock) *TokenReview {
	t.Helper()
	tr, err := NewTokenReview(cs.AuthenticationV1().TokenReviews(), TokenReviewConfig{
		Audience: "xosprobe-aggregator", ServiceAccounts: []string{"xosprobe:xosprobe-agent"},
		CacheTTL: time.Minute, NegativeTTL: 5 * time.Second, MaxEntries: 4, Now: clk.Now,
	})
	require.NoError(t, err)
	return tr
}

func TestTokenReviewVerdicts(t *testing.T) {
	for _, tc := range []struct {
		name, token string
		want        error
		user        string
	}{
		{name: "agent admitted", token: "agent-token", user: "system:serviceaccount:xosprobe:xosprobe-agent"},
		{name: "unknown token", token: "garbage", want: ErrUnauthenticated},
		{name: "wrong service account", token: "other-sa", want: ErrForbidden},
		{name: "wrong audience", token: "other-aud", want: ErrUnauthenticated},
		{name: "no token", token: "", want: ErrNoToken},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, cs := newFakeAPI()
			tr := newReview(t, cs, &fakeClock{t: time.Unix(1e9, 0)})
			id, err := tr.Authenticate(context.Background(), tokOrEmpty(tc.token))
			if tc.want != nil {
				require.ErrorIs(t, err, tc.want)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tc.user, id.Username)
		})
	}
}

func TestTokenReviewChecksStatusAudiences(t *testing.T) {
	// An API server that authenticates but ignores audiences must not be trusted.
	cs := fake.NewClientset()
	cs.PrependReactor("create", "tokenreviews", func(a k8stesting.Action) (bool, runtime.Object, error) {
		tr := a.(k8stesting.CreateAction).GetObject().(*authv1.TokenReview).DeepCopy()
		tr.Status = authv1.TokenReviewStatus{Authenticated: true,
			User: authv1.UserInfo{Username: "system:serviceaccount:xosprobe:xosprobe-agent"}}
		return true, tr, nil
	})
	tr := newReview(t, cs, &fakeClock{t: time.Unix(1e9, 0)})
	_, err := tr.Authenticate(context.Background(), tok("any"))
	require.ErrorIs(t, err, ErrUnauthenticated)
	assert.Contains(t, err.Error(), "audience")
}

func TestTokenReviewCache(t *testing.T) {
	api, cs := newFakeAPI()
	clk := &fakeClock{t: time.Unix(1e9, 0)}
	tr := newReview(t, cs, clk)
	ctx := context.Background()

	for range 5 {
		_, err := tr.Authenticate(ctx, tok("agent-token"))
		require.NoError(t, err)
	}
	assert.EqualValues(t, 1, api.calls.Load(), "positive answer cached")

	clk.Add(59 * time.Second)
	_, _ = tr.Authenticate(ctx, tok("agent-token"))
	assert.EqualValues(t, 1, api.calls.Load(), "still inside the TTL")
	clk.Add(2 * time.Second)
	_, _ = tr.Authenticate(ctx, tok("agent-token"))
	assert.EqualValues(t, 2, api.calls.Load(), "reviewed again after the TTL")

	for range 3 {
		_, err := tr.Authenticate(ctx, tok("other-sa"))
		require.ErrorIs(t, err, ErrForbidden)
	}
	assert.EqualValues(t, 3, api.calls.Load(), "negative answer cached briefly")
	clk.Add(6 * time.Second)
	_, err := tr.Authenticate(ctx, tok("other-sa"))
	require.ErrorIs(t, err, ErrForbidden)
	assert.EqualValues(t, 4, api.calls.Load(), "negative answer expires after NegativeTTL")

	hits, misses := tr.CacheStats()
	assert.EqualValues(t, 4, misses)
	assert.EqualValues(t, 7, hits)
}

func TestTokenReviewFailureIsNotCached(t *testing.T) {
	api, cs := newFakeAPI()
	tr := newReview(t, cs, &fakeClock{t: time.Unix(1e9, 0)})
	api.fail.Store(true)
	_, err := tr.Authenticate(context.Background(), tok("agent-token"))
	require.Error(t, err)
	assert.False(t, errors.Is(err, ErrUnauthenticated) || errors.Is(err, ErrForbidden), "an outage is not a verdict: %v", err)
	api.fail.Store(false)
	_, err = tr.Authenticate(context.Background(), tok("agent-token"))
	require.NoError(t, err)
	assert.EqualValues(t, 2, api.calls.Load())
}

func TestTokenReviewCacheBounded(t *testing.T) {
	api, cs := newFakeAPI()
	for i := range 10 {
		api.tokens[tok(fmt.Sprint("tok", i))] = struct {
			user      string
			audiences []string
		}{"system:serviceaccount:xosprobe:xosprobe-agent", []string{"xosprobe-aggregator"}}
	}
	tr := newReview(t, cs, &fakeClock{t: time.Unix(1e9, 0)})
	for i := range 10 {
		_, err := tr.Authenticate(context.Background(), tok(fmt.Sprint("tok", i)))
		require.NoError(t, err)
	}
	assert.Equal(t, 4, tr.admitted.order.Len())
	assert.Len(t, tr.admitted.entries, 4)
	// The most recent ones survive.
	_, _ = tr.Authenticate(context.Background(), tok("tok9"))
	assert.EqualValues(t, 10, api.calls.Load())
	_, _ = tr.Authenticate(context.Background(), tok("tok0"))
	assert.EqualValues(t, 11, api.calls.Load())
}

func TestTokenReviewConcurrentCallsShareOneReview(t *testing.T) {
	api, cs := newFakeAPI()
	tr := newReview(t, cs, &fakeClock{t: time.Unix(1e9, 0)})
	// The review blocks until all callers have had time to arrive: with
	// singleflight they wait on the one call in flight, then the cache answers.
	api.gate = make(chan struct{})
	var wg sync.WaitGroup
	for range 20 {
		wg.Go(func() {
			_, err := tr.Authenticate(context.Background(), tok("agent-token"))
			assert.NoError(t, err)
		})
	}
	require.Eventually(t, func() bool { return api.calls.Load() >= 1 }, 5*time.Second, time.Millisecond)
	time.Sleep(100 * time.Millisecond) // let the other 19 pile up behind it
	close(api.gate)
	wg.Wait()
	assert.EqualValues(t, 1, api.calls.Load(), "20 concurrent callers, one TokenReview")
}

func TestTokenExpiryShortensCache(t *testing.T) {
	clk := &fakeClock{t: time.Unix(1e9, 0)}
	payload := base64.RawURLEncoding.EncodeToString(fmt.Appendf(nil, `{"exp":%d,"aud":["xosprobe-aggregator"]}`, int64(1e9+10)))
	jwt := "eyJhbGciOiJSUzI1NiJ9." + payload + ".sig"
	api, cs := newFakeAPI()
	api.tokens[jwt] = api.tokens[tok("agent-token")]
	tr := newReview(t, cs, clk)
	_, err := tr.Authenticate(context.Background(), jwt)
	require.NoError(t, err)
	clk.Add(11 * time.Second)
	_, _ = tr.Authenticate(context.Background(), jwt)
	assert.EqualValues(t, 2, api.calls.Load(), "cache entry ends at the token's exp")

	exp, ok := tokenExpiry(jwt)
	require.True(t, ok)
	assert.Equal(t, time.Unix(1e9+10, 0), exp)
	for _, bad := range []string{"", "a.b", "a.!!!.c", "a." + base64.RawURLEncoding.EncodeToString([]byte(`{"exp":"x"}`)) + ".c"} {
		_, ok := tokenExpiry(bad)
		assert.False(t, ok, bad)
	}
}

func TestNewTokenReviewValidates(t *testing.T) {
	_, cs := newFakeAPI()
	c := cs.AuthenticationV1().TokenReviews()
	for _, cfg := range []TokenReviewConfig{
		{ServiceAccounts: []string{"a:b"}},
		{Audience: "x"},
		{Audience: "x", ServiceAccounts: []string{"nocolon"}},
		{Audience: "x", ServiceAccounts: []string{"a:b:c"}},
		{Audience: "x", ServiceAccounts: []string{":b"}},
	} {
		_, err := NewTokenReview(c, cfg)
		assert.Error(t, err, "%+v", cfg)
	}
}

func TestSharedToken(t *testing.T) {
	st, err := NewSharedToken("static", "s3cret", "next-s3cret")
	require.NoError(t, err)
	for tok, ok := range map[string]bool{"s3cret": true, "next-s3cret": true, "s3cre": false, "s3cretx": false, "": false} {
		id, err := st.Authenticate(context.Background(), tok)
		if ok {
			require.NoError(t, err, tok)
			assert.Equal(t, "static", id.Username)
		} else {
			require.ErrorIs(t, err, ErrUnauthenticated, tok)
		}
	}
	_, err = NewSharedToken("x", " ")
	require.Error(t, err)
	_, err = NewSharedToken("x")
	require.Error(t, err)
}

func TestBearerToken(t *testing.T) {
	for h, want := range map[string]string{"Bearer abc": "abc", "bearer  abc ": "abc", "Basic abc": "", "Bearer": "", "Bearer ": "", "": ""} {
		r, _ := http.NewRequest(http.MethodPost, "/", nil)
		if h != "" {
			r.Header.Set("Authorization", h)
		}
		got, err := BearerToken(r)
		if want == "" {
			require.ErrorIs(t, err, ErrNoToken, h)
			continue
		}
		require.NoError(t, err)
		assert.Equal(t, want, got)
	}
}

// Refused tokens live in a cache of their own: any number of distinct bogus
// tokens cannot evict an admitted one, which keeps being answered without
// a review.
func TestBogusTokensCannotEvictAdmittedOnes(t *testing.T) {
	api, cs := newFakeAPI()
	tr := newReview(t, cs, &fakeClock{t: time.Unix(1e9, 0)})
	ctx := context.Background()
	_, err := tr.Authenticate(ctx, tok("agent-token"))
	require.NoError(t, err)
	for i := range 2000 {
		_, err := tr.Authenticate(ctx, tok(fmt.Sprint("forged-", i)))
		require.ErrorIs(t, err, ErrUnauthenticated)
	}
	calls := api.calls.Load()
	_, err = tr.Authenticate(ctx, tok("agent-token"))
	require.NoError(t, err)
	assert.Equal(t, calls, api.calls.Load(), "the admitted token was evicted by bogus ones")
	assert.True(t, tr.Known(tok("agent-token")))
	assert.False(t, tr.Known(tok("forged-1")))
}

// What cannot be a projected token for the audience is refused without a
// review: the API server never sees a flood of it.
func TestImplausibleTokensAreRefusedWithoutAReview(t *testing.T) {
	api, cs := newFakeAPI()
	clk := &fakeClock{t: time.Unix(1e9, 0)}
	tr := newReview(t, cs, clk)
	claims := func(c string) string {
		return "eyJhbGciOiJSUzI1NiJ9." + base64.RawURLEncoding.EncodeToString([]byte(c)) + ".c2ln"
	}
	for name, tc := range map[string]struct{ token, why string }{
		"not a JWT":         {"garbage", "not a JWT"},
		"payload not JSON":  {"a." + base64.RawURLEncoding.EncodeToString([]byte("x")) + ".c", "not a JSON object"},
		"too long":          {tok(strings.Repeat("x", 9000)), "over the 8192-byte limit"},
		"other audience":    {tok("agent-token", "https://kubernetes.default.svc"), `audience "xosprobe-aggregator" is not among`},
		"no audience":       {claims(`{"sub":"x","exp":2000000000}`), "is not among its audiences []"},
		"audience a string": {claims(`{"aud":"api","exp":2000000000}`), "[api]"},
		"expired":           {claims(`{"aud":["xosprobe-aggregator"],"exp":999990000}`), "expired at 2001-09-08"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := tr.Authenticate(context.Background(), tc.token)
			require.ErrorIs(t, err, ErrUnauthenticated)
			assert.Contains(t, err.Error(), tc.why)
			assert.Contains(t, err.Error(), "refused without a review")
		})
	}
	assert.Zero(t, api.calls.Load(), "an implausible token reached the API server")
	assert.EqualValues(t, 7, tr.Refused())

	// Claims never admit: a plausible token still needs the review's yes.
	_, err := tr.Authenticate(context.Background(), claims(`{"aud":"xosprobe-aggregator","exp":2000000000}`))
	require.ErrorIs(t, err, ErrUnauthenticated)
	assert.EqualValues(t, 1, api.calls.Load())
	// A token just past its exp is still reviewed: the API server's clock decides.
	_, _ = tr.Authenticate(context.Background(), claims(`{"aud":["xosprobe-aggregator"],"exp":999999990}`))
	assert.EqualValues(t, 2, api.calls.Load())
}
