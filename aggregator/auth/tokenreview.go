package auth

import (
	"container/list"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/semaphore"
	"golang.org/x/sync/singleflight"
	authv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	authv1client "k8s.io/client-go/kubernetes/typed/authentication/v1"
)

// TokenReviewConfig configures a TokenReview authenticator. Zero durations
// and sizes take the defaults.
type TokenReviewConfig struct {
	// Audience the agents' projected tokens are minted for; required.
	Audience string
	// ServiceAccounts admitted, as "namespace:name"; at least one.
	ServiceAccounts []string
	// CacheTTL keeps a positive answer this long (default 1 min, and never
	// past the token's own expiry). It bounds how long a revoked token (its
	// pod deleted) keeps working, and turns one TokenReview per batch into one
	// per agent per TTL.
	CacheTTL time.Duration
	// NegativeTTL keeps a definite no (invalid token, wrong ServiceAccount)
	// this long (default 5 s): enough to absorb an agent's retry storm, short
	// enough that a fixed RBAC or a freshly rotated token is seen quickly.
	NegativeTTL time.Duration
	// MaxEntries bounds the cache of admitted tokens (default 16384: two
	// tokens per agent of an 8,000-node cluster during rotation).
	MaxEntries int
	// MaxNegativeEntries bounds the cache of refused tokens (default 4096).
	// It is a cache of its own: distinct bogus tokens, however many, evict
	// only each other, never an agent's admitted token.
	MaxNegativeEntries int
	// MaxTokenBytes refuses longer tokens without a review (default 8 KiB;
	// a projected ServiceAccount token is about 1 KiB).
	MaxTokenBytes int
	// Timeout of one TokenReview call (default 5 s).
	Timeout time.Duration
	// MaxConcurrent bounds TokenReview calls in flight (default 16), so a
	// flood of distinct bogus tokens cannot turn into a flood on the API
	// server; the excess waits, up to Timeout.
	MaxConcurrent int
	// Now is the clock; default time.Now.
	Now func() time.Time
}

// TokenReview authenticates projected ServiceAccount tokens through the
// Kubernetes TokenReview API and caches the answers.
type TokenReview struct {
	client   authv1client.TokenReviewInterface
	cfg      TokenReviewConfig
	allowed  []string // full usernames
	group    singleflight.Group
	inflight *semaphore.Weighted
	hits     atomic.Uint64
	misses   atomic.Uint64
	refused  atomic.Uint64 // refused before a review (implausible tokens)
	mu       sync.Mutex
	admitted lru    // admitted tokens
	denied   lru    // definite noes
	reviewer string // for error messages
}

// lru is a bounded cache of entries by token hash, most recently used first.
type lru struct {
	max     int
	entries map[[sha256.Size]byte]*list.Element
	order   *list.List // of *cacheEntry
}

func newLRU(size int) lru {
	return lru{max: size, entries: map[[sha256.Size]byte]*list.Element{}, order: list.New()}
}

// get returns the entry for key unless it expired at now (then it is dropped).
func (c *lru) get(key [sha256.Size]byte, now time.Time) (*cacheEntry, bool) {
	el, ok := c.entries[key]
	if !ok {
		return nil, false
	}
	e := el.Value.(*cacheEntry)
	if !now.Before(e.expires) {
		c.order.Remove(el)
		delete(c.entries, key)
		return nil, false
	}
	c.order.MoveToFront(el)
	return e, true
}

func (c *lru) put(e *cacheEntry) {
	if el, ok := c.entries[e.key]; ok {
		el.Value = e
		c.order.MoveToFront(el)
		return
	}
	for c.order.Len() >= c.max {
		old := c.order.Back()
		c.order.Remove(old)
		delete(c.entries, old.Value.(*cacheEntry).key)
	}
	c.entries[e.key] = c.order.PushFront(e)
}

func (c *lru) remove(key [sha256.Size]byte) {
	if el, ok := c.entries[key]; ok {
		c.order.Remove(el)
		delete(c.entries, key)
	}
}

type cacheEntry struct {
	key     [sha256.Size]byte
	id      Identity
	err     error // nil, or a definite ErrUnauthenticated / ErrForbidden
	expires time.Time
}

// serviceAccountPrefix is how the API server names ServiceAccount users.
const serviceAccountPrefix = "system:serviceaccount:"

// NewTokenReview returns an authenticator that admits tokens of the given
// ServiceAccounts valid for cfg.Audience.
func NewTokenReview(client authv1client.TokenReviewInterface, cfg TokenReviewConfig) (*TokenReview, error) {
	if client == nil {
		return nil, errors.New("auth: nil TokenReview client")
	}
	if cfg.Audience == "" {
		return nil, errors.New("auth: TokenReview needs an audience")
	}
	if len(cfg.ServiceAccounts) == 0 {
		return nil, errors.New("auth: TokenReview needs the agents' ServiceAccount")
	}
	tr := &TokenReview{client: client}
	for _, sa := range cfg.ServiceAccounts {
		ns, name, ok := strings.Cut(sa, ":")
		if !ok || ns == "" || name == "" || strings.Contains(name, ":") {
			return nil, fmt.Errorf("auth: ServiceAccount %q: want namespace:name", sa)
		}
		tr.allowed = append(tr.allowed, serviceAccountPrefix+ns+":"+name)
	}
	if cfg.CacheTTL <= 0 {
		cfg.CacheTTL = time.Minute
	}
	if cfg.NegativeTTL <= 0 {
		cfg.NegativeTTL = 5 * time.Second
	}
	if cfg.MaxEntries <= 0 {
		cfg.MaxEntries = 16384
	}
	if cfg.MaxNegativeEntries <= 0 {
		cfg.MaxNegativeEntries = 4096
	}
	if cfg.MaxTokenBytes <= 0 {
		cfg.MaxTokenBytes = 8 << 10
	}
	tr.admitted, tr.denied = newLRU(cfg.MaxEntries), newLRU(cfg.MaxNegativeEntries)
	if cfg.Timeout <= 0 {
		cfg.Timeout = 5 * time.Second
	}
	if cfg.MaxConcurrent <= 0 {
		cfg.MaxConcurrent = 16
	}
	tr.inflight = semaphore.NewWeighted(int64(cfg.MaxConcurrent))
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	tr.cfg = cfg
	tr.reviewer = strings.Join(tr.allowed, ", ")
	return tr, nil
}

// CacheStats returns how many Authenticate calls the cache answered and how
// many went to the API server (concurrent calls for one token share a call).
func (tr *TokenReview) CacheStats() (hits, misses uint64) {
	return tr.hits.Load(), tr.misses.Load()
}

// Refused returns how many tokens were refused without a review.
func (tr *TokenReview) Refused() uint64 { return tr.refused.Load() }

// Known reports whether token is admitted from the cache right now, without
// a review: a source over its failure budget is still let through with it.
func (tr *TokenReview) Known(token string) bool {
	key := sha256.Sum256([]byte(token))
	tr.mu.Lock()
	defer tr.mu.Unlock()
	_, ok := tr.admitted.get(key, tr.cfg.Now())
	return ok
}

// Authenticate answers from the cache or asks the API server. A token that
// cannot be a valid projected token for the audience is refused before any
// review: its unverified claims may refuse it, never admit it.
func (tr *TokenReview) Authenticate(ctx context.Context, token string) (Identity, error) {
	if token == "" {
		return Identity{}, ErrNoToken
	}
	key := sha256.Sum256([]byte(token)) // the cache never holds a usable token
	if e, ok := tr.lookup(key); ok {
		tr.hits.Add(1)
		return e.id, e.err
	}
	if err := tr.implausible(token); err != nil {
		tr.refused.Add(1)
		return Identity{}, fmt.Errorf("%w: refused without a review: %w", ErrUnauthenticated, err)
	}
	// Concurrent batches of one agent share one review. The call is detached
	// from the first caller's context so its cancellation does not fail the others.
	v, err, _ := tr.group.Do(string(key[:]), func() (any, error) {
		tr.misses.Add(1)
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), tr.cfg.Timeout)
		defer cancel()
		if err := tr.inflight.Acquire(rctx, 1); err != nil {
			return nil, fmt.Errorf("too many TokenReviews in flight: %w", err)
		}
		defer tr.inflight.Release(1)
		e, err := tr.review(rctx, token)
		if err != nil {
			return nil, err
		}
		e.key = key
		tr.store(e)
		return e, nil
	})
	if err != nil {
		return Identity{}, fmt.Errorf("auth: TokenReview: %w", err)
	}
	e := v.(*cacheEntry)
	return e.id, e.err
}

// review asks the API server. A definite answer is returned as an entry
// (with its error set for a no); a failure to ask is returned as an error.
func (tr *TokenReview) review(ctx context.Context, token string) (*cacheEntry, error) {
	res, err := tr.client.Create(ctx, &authv1.TokenReview{
		Spec: authv1.TokenReviewSpec{Token: token, Audiences: []string{tr.cfg.Audience}},
	}, metav1.CreateOptions{})
	if err != nil {
		return nil, err
	}
	now := tr.cfg.Now()
	neg := func(err error) *cacheEntry { return &cacheEntry{err: err, expires: now.Add(tr.cfg.NegativeTTL)} }
	st := res.Status
	if !st.Authenticated {
		msg := st.Error
		if msg == "" {
			msg = "rejected by TokenReview"
		}
		return neg(fmt.Errorf("%w: %s", ErrUnauthenticated, msg)), nil
	}
	// An API server that ignores audiences returns none; trusting it would
	// admit tokens minted for anything.
	if !slices.Contains(st.Audiences, tr.cfg.Audience) {
		return neg(fmt.Errorf("%w: not valid for audience %q (token audiences %v)", ErrUnauthenticated, tr.cfg.Audience, st.Audiences)), nil
	}
	if !slices.Contains(tr.allowed, st.User.Username) {
		return neg(fmt.Errorf("%w: %s is not the agent ServiceAccount (%s)", ErrForbidden, st.User.Username, tr.reviewer)), nil
	}
	expires := now.Add(tr.cfg.CacheTTL)
	if exp, ok := tokenExpiry(token); ok && exp.Before(expires) {
		expires = exp
	}
	return &cacheEntry{id: Identity{Username: st.User.Username, UID: st.User.UID}, expires: expires}, nil
}

func (tr *TokenReview) lookup(key [sha256.Size]byte) (*cacheEntry, bool) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	now := tr.cfg.Now()
	if e, ok := tr.admitted.get(key, now); ok {
		return e, true
	}
	return tr.denied.get(key, now)
}

func (tr *TokenReview) store(e *cacheEntry) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	if e.err == nil {
		tr.denied.remove(e.key)
		tr.admitted.put(e)
		return
	}
	tr.admitted.remove(e.key)
	tr.denied.put(e)
}

// expirySkew is how far past its exp claim a token is still sent for
// review: the API server's clock may be behind ours.
const expirySkew = time.Minute

// implausible says why token cannot be a projected ServiceAccount token
// valid for the audience now, from its size and its unverified JWT claims;
// nil when only a review can tell.
func (tr *TokenReview) implausible(token string) error {
	if len(token) > tr.cfg.MaxTokenBytes {
		return fmt.Errorf("token of %d bytes, over the %d-byte limit", len(token), tr.cfg.MaxTokenBytes)
	}
	c, err := readClaims(token)
	if err != nil {
		return err
	}
	if !slices.Contains(c.aud, tr.cfg.Audience) {
		return fmt.Errorf("audience %q is not among its audiences %v", tr.cfg.Audience, c.aud)
	}
	if !c.exp.IsZero() && c.exp.Add(expirySkew).Before(tr.cfg.Now()) {
		return fmt.Errorf("expired at %s", c.exp.UTC().Format(time.RFC3339))
	}
	return nil
}

// claims are the unverified JWT claims the authenticator reads: they may
// refuse a token or shorten its cache entry, never admit it.
type claims struct {
	aud []string
	exp time.Time // zero without a usable exp
}

// readClaims decodes a JWT's payload without verifying its signature.
func readClaims(token string) (claims, error) {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return claims{}, errors.New("not a JWT")
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return claims{}, errors.New("not a JWT: the payload is not base64url")
	}
	var raw struct {
		Aud json.RawMessage `json:"aud"`
		Exp json.RawMessage `json:"exp"`
	}
	if err := json.Unmarshal(payload, &raw); err != nil {
		return claims{}, errors.New("not a JWT: the payload is not a JSON object")
	}
	var c claims
	// aud is a string or a list of strings (RFC 7519 section 4.1.3).
	if len(raw.Aud) > 0 {
		var one string
		if json.Unmarshal(raw.Aud, &one) == nil {
			c.aud = []string{one}
		} else if json.Unmarshal(raw.Aud, &c.aud) != nil {
			return claims{}, errors.New("its aud claim is neither a string nor a list of strings")
		}
	}
	var exp float64
	if json.Unmarshal(raw.Exp, &exp) == nil && exp > 0 && exp <= 1e12 {
		c.exp = time.Unix(int64(exp), 0)
	}
	return c, nil
}

// tokenExpiry reads the exp claim of a JWT without verifying it. It only
// ever shortens a cache entry (TokenReview has already vouched for the
// token), so an unverified value cannot extend anything.
func tokenExpiry(token string) (time.Time, bool) {
	c, err := readClaims(token)
	return c.exp, err == nil && !c.exp.IsZero()
}
