package aggregator

import "sync"

// ingestBudget bounds the bytes of request bodies being read at once, in
// all and per source address. A body's declared length is reserved when its
// reading starts (the whole limit when undeclared), so slow senders of large
// bodies cannot hold memory beyond the budget, and one source, even with a
// valid token, cannot take the budget from the others.
type ingestBudget struct {
	max, perSource int64

	mu       sync.Mutex
	total    int64
	bySource map[string]int64
}

func newIngestBudget(total, perSource int64) *ingestBudget {
	return &ingestBudget{max: total, perSource: perSource, bySource: map[string]int64{}}
}

// take reserves n bytes for src. It returns the release func, or which
// bound refused it: "source" or "total".
func (b *ingestBudget) take(src string, n int64) (release func(), refused string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	switch {
	case b.bySource[src]+n > b.perSource:
		return nil, "source"
	case b.total+n > b.max:
		return nil, "total"
	}
	b.total += n
	b.bySource[src] += n
	return func() {
		b.mu.Lock()
		defer b.mu.Unlock()
		b.total -= n
		if b.bySource[src] -= n; b.bySource[src] <= 0 {
			delete(b.bySource, src)
		}
	}, ""
}
