package aggregator

import (
	"maps"
	"math"
	"slices"
	"sync"
	"time"

	"github.com/cespare/xxhash/v2"
)

// dedup remembers the batch IDs seen within a TTL, in bounded memory.
//
// At 5,000 agents flushing every 2 s that is 9 million IDs an hour, so it
// keeps 64-bit hashes, not strings (a false "duplicate" needs a collision,
// ~1e-6 per hour at that rate), in generations of TTL/genCount: the current
// one a map, older ones sealed into sorted slices (8 bytes an ID) by compact,
// outside the ingest path. A generation is dropped whole once it is older
// than the TTL, or early, oldest first, when the total passes maxIDs; then
// the horizon shrinks below the TTL, and horizon() says by how much.
//
// The hash is xxhash, not maphash: replicas exchange these hashes in
// snapshots, so every process must compute the same ones.
type dedup struct {
	mu       sync.Mutex
	genWidth int64 // ns
	genCount int64 // generations within the TTL
	maxIDs   int
	cur      map[uint64]struct{}
	curGen   int64
	old      []generation // oldest first
	n        int          // IDs in old
	seq      uint64
	// evicted is the newest generation dropped early for maxIDs; IDs from
	// before its end are forgotten although still within the TTL.
	evicted int64
}

type generation struct {
	gen int64
	// Exactly one is set: m right after sealing, ids once compacted. Both are
	// immutable then, so compact can read m without the lock.
	m   map[uint64]struct{}
	ids []uint64 // sorted
	// seq changes whenever m is replaced, so compact can tell that the map
	// it sorted is still the one in place.
	seq uint64
}

func (g *generation) len() int {
	if g.m != nil {
		return len(g.m)
	}
	return len(g.ids)
}

func (g *generation) has(h uint64) bool {
	if g.m != nil {
		_, ok := g.m[h]
		return ok
	}
	_, ok := slices.BinarySearch(g.ids, h)
	return ok
}

const dedupGenerations = 16

func newDedup(ttl time.Duration, maxIDs int) *dedup {
	w := max(int64(ttl)/dedupGenerations, int64(time.Second))
	return &dedup{genWidth: w, genCount: max(int64(ttl)/w, 1), maxIDs: max(maxIDs, 1), cur: map[uint64]struct{}{},
		evicted: math.MinInt64 / 2}
}

func hashID(id string) uint64 { return xxhash.Sum64String(id) }

// claim records h and reports whether it was new.
func (d *dedup) claim(h uint64, now time.Time) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.rotateLocked(now)
	if _, ok := d.cur[h]; ok {
		return false
	}
	for i := len(d.old) - 1; i >= 0; i-- { // newest first: retries come soon after
		if d.old[i].has(h) {
			return false
		}
	}
	d.cur[h] = struct{}{}
	d.evictLocked()
	return true
}

// rotateLocked seals the current generation once time has moved past it and
// drops generations older than the TTL.
func (d *dedup) rotateLocked(now time.Time) {
	g := floorDiv(now.UnixNano(), d.genWidth)
	if g > d.curGen {
		if len(d.cur) > 0 {
			d.seq++
			d.old = append(d.old, generation{gen: d.curGen, m: d.cur, seq: d.seq})
			d.n += len(d.cur)
			d.cur = map[uint64]struct{}{}
		}
		d.curGen = g
	}
	drop := 0
	for drop < len(d.old) && d.old[drop].gen <= d.curGen-d.genCount {
		d.n -= d.old[drop].len()
		drop++
	}
	d.old = slices.Delete(d.old, 0, drop)
}

// evictLocked drops the oldest generations while over maxIDs. The current
// generation is never dropped: it holds the IDs most likely to be retried.
func (d *dedup) evictLocked() {
	for d.n+len(d.cur) > d.maxIDs && len(d.old) > 0 {
		d.evicted = max(d.evicted, d.old[0].gen)
		d.n -= d.old[0].len()
		d.old = slices.Delete(d.old, 0, 1)
	}
}

// compact turns sealed maps into sorted slices, sorting without the lock.
func (d *dedup) compact() {
	for {
		d.mu.Lock()
		i := slices.IndexFunc(d.old, func(g generation) bool { return g.m != nil })
		if i < 0 {
			d.mu.Unlock()
			return
		}
		g := d.old[i]
		d.mu.Unlock()
		ids := slices.Sorted(maps.Keys(g.m))
		d.mu.Lock()
		// The generation may have been dropped or merged into meanwhile.
		for j := range d.old {
			if d.old[j].seq == g.seq && d.old[j].m != nil {
				d.old[j] = generation{gen: g.gen, ids: ids}
				break
			}
		}
		d.mu.Unlock()
	}
}

// size is the number of IDs held.
func (d *dedup) size() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.n + len(d.cur)
}

// horizon is how far back IDs are remembered: the TTL, or less after
// evictions.
func (d *dedup) horizon(now time.Time) time.Duration {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.rotateLocked(now)
	oldest := max(d.curGen-d.genCount+1, d.evicted+1)
	return time.Duration(now.UnixNano() - oldest*d.genWidth)
}

// dedupSnapshot is the set's content for a replica to merge.
type dedupSnapshot struct {
	GenWidth    int64
	Generations []generationSnapshot
}

type generationSnapshot struct {
	Gen int64
	IDs []uint64
}

// snapshot copies the IDs; the caller holds whatever keeps it consistent
// with the rest of the state.
func (d *dedup) snapshot() dedupSnapshot {
	d.mu.Lock()
	defer d.mu.Unlock()
	sn := dedupSnapshot{GenWidth: d.genWidth}
	for _, g := range d.old {
		ids := g.ids
		if g.m != nil {
			ids = slices.Collect(maps.Keys(g.m))
		}
		sn.Generations = append(sn.Generations, generationSnapshot{Gen: g.gen, IDs: ids}) // sorted slices are immutable: shared
	}
	if len(d.cur) > 0 {
		sn.Generations = append(sn.Generations, generationSnapshot{Gen: d.curGen, IDs: slices.Collect(maps.Keys(d.cur))})
	}
	return sn
}

// merge adds a snapshot's IDs, each into the generation of its time here,
// so they expire when they would have on the replica that saw them.
func (d *dedup) merge(sn dedupSnapshot, now time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.rotateLocked(now)
	for _, g := range sn.Generations {
		gen := floorDiv(g.Gen*sn.GenWidth, d.genWidth)
		if gen <= d.curGen-d.genCount || len(g.IDs) == 0 {
			continue
		}
		if gen >= d.curGen {
			for _, h := range g.IDs {
				d.cur[h] = struct{}{}
			}
			continue
		}
		i, found := slices.BinarySearchFunc(d.old, gen, func(a generation, gen int64) int { return cmpInt64(a.gen, gen) })
		if !found {
			d.old = slices.Insert(d.old, i, generation{gen: gen, m: map[uint64]struct{}{}})
		}
		d.seq++
		m := d.old[i].m
		if m == nil { // compacted: reopen as a map; compact will seal it again
			m = make(map[uint64]struct{}, len(d.old[i].ids)+len(g.IDs))
			for _, h := range d.old[i].ids {
				m[h] = struct{}{}
			}
		} else {
			// Sealed maps are read by compact without the lock: copy, don't mutate.
			m = maps.Clone(m)
		}
		d.n -= d.old[i].len()
		for _, h := range g.IDs {
			m[h] = struct{}{}
		}
		d.old[i] = generation{gen: gen, m: m, seq: d.seq}
		d.n += len(m)
	}
	d.evictLocked()
}

func cmpInt64(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && a < 0 {
		q--
	}
	return q
}
