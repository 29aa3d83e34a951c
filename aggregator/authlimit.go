package aggregator

import (
	"container/list"
	"net"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// authFailures limits failed authentications per source address. A pod
// flooding bogus tokens gets 429 once it has spent its budget, before any
// TokenReview: it can neither reach the API server faster than the budget
// nor take the review slots agents with new tokens need. A source over its
// budget is still served with a token the cache already admits, so an agent
// behind the same address (a node's SNAT) keeps sending.
type authFailures struct {
	every time.Duration // one failure back per
	burst int
	max   int // sources remembered

	mu      sync.Mutex
	sources map[string]*list.Element
	order   *list.List // of *sourceBudget, most recent first
}

type sourceBudget struct {
	addr string
	lim  *rate.Limiter
}

func newAuthFailures(every time.Duration, burst, maxSources int) *authFailures {
	return &authFailures{every: every, burst: burst, max: maxSources, sources: map[string]*list.Element{}, order: list.New()}
}

// sourceAddr is the IP a request came from (its port changes per connection).
func sourceAddr(remote string) string {
	if host, _, err := net.SplitHostPort(remote); err == nil {
		return host
	}
	return remote
}

// spent reports whether addr has no failure left in its budget at now.
func (a *authFailures) spent(addr string, now time.Time) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	el, ok := a.sources[addr]
	if !ok {
		return false
	}
	return el.Value.(*sourceBudget).lim.TokensAt(now) < 1
}

// failed takes one failure from addr's budget.
func (a *authFailures) failed(addr string, now time.Time) {
	a.mu.Lock()
	defer a.mu.Unlock()
	el, ok := a.sources[addr]
	if !ok {
		// The least recent source is forgotten first: with its budget
		// refilled it would be allowed the same again anyway.
		for a.order.Len() >= a.max {
			old := a.order.Back()
			a.order.Remove(old)
			delete(a.sources, old.Value.(*sourceBudget).addr)
		}
		b := &sourceBudget{addr: addr, lim: rate.NewLimiter(rate.Every(a.every), a.burst)}
		el = a.order.PushFront(b)
		a.sources[addr] = el
	}
	a.order.MoveToFront(el)
	el.Value.(*sourceBudget).lim.AllowN(now, 1)
}
