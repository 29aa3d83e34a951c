package aggregator

import (
	"math"
	"sync"
	"time"
)

// state is what the aggregator keeps besides the sketches: the latest result
// per (source node, destination node, check) for /matrix, and per (check,
// pair) outcome counts over the delta window for its success rates. Both
// are bounded: cells by maxCells and an idle TTL, counts by a fixed ring.
type state struct {
	mu       sync.Mutex
	cells    map[cellKey]cellVal
	maxCells int
	cellTTL  int64 // ns
	// names interns node names so 300k cells share one copy of each; rebuilt
	// from live cells by sweep, so node churn does not grow it forever.
	names map[string]string

	width   int64 // outcome bucket width, ns
	buckets [nChecks][nPairs][]outcomeBucket
}

type cellKey struct {
	src, dst string
	check    uint8
}

// cellVal is one latest result, 40 bytes stored inline in the map (300,000
// of them for 5,000 nodes at k=10). Phases are indexed like phases, in
// microseconds, which is all /matrix shows; a zero mask bit means the
// result did not time that phase.
type cellVal struct {
	at      int64 // unix ns
	us      [nPhases]uint32
	mask    uint8
	outcome uint8
	srcOS   uint8
	dstOS   uint8
}

// micros converts a phase duration for a cell; wire caps phases at an hour,
// so uint32 microseconds cannot overflow.
func micros(d time.Duration) uint32 { return uint32(min(max(d/time.Microsecond, 0), math.MaxUint32)) }

type outcomeBucket struct {
	epoch   int64
	total   int64
	success int64
}

// outcomeWidth is the bucket width of the success-rate windows; it matches
// the sketches' finest tier so both summarise the same span.
const outcomeWidth = 10 * time.Second

func newState(window time.Duration, maxCells int, cellTTL time.Duration) *state {
	st := &state{cells: map[cellKey]cellVal{}, maxCells: maxCells, cellTTL: int64(cellTTL),
		names: map[string]string{}, width: int64(outcomeWidth)}
	n := int((window+outcomeWidth-1)/outcomeWidth) + 1
	for c := range nChecks {
		for p := range nPairs {
			st.buckets[c][p] = make([]outcomeBucket, n)
		}
	}
	return st
}

// cellUpdate is one result's contribution to the matrix.
type cellUpdate struct {
	dst     string
	check   uint8
	dstOS   uint8
	outcome uint8
	at      int64
	us      [nPhases]uint32
	mask    uint8
}

// apply records a batch's cells and counts. It returns the cells it could
// not keep because the table is full.
func (st *state) apply(src string, srcOS uint8, updates []cellUpdate, counts *outcomeCounter) (dropped int) {
	st.mu.Lock()
	defer st.mu.Unlock()
	counts.flush(st)
	if src == "" {
		return 0
	}
	src = st.internLocked(src)
	for i := range updates {
		u := &updates[i]
		k := cellKey{src: src, dst: u.dst, check: u.check}
		if c, ok := st.cells[k]; !ok {
			if len(st.cells) >= st.maxCells {
				dropped++
				continue
			}
			k.dst = st.internLocked(u.dst)
		} else if c.at > u.at {
			continue // an older result (a late retry) never hides a newer one
		}
		st.cells[k] = cellVal{at: u.at, us: u.us, mask: u.mask, outcome: u.outcome, srcOS: srcOS, dstOS: u.dstOS}
	}
	return dropped
}

func (st *state) internLocked(s string) string {
	if v, ok := st.names[s]; ok {
		return v
	}
	st.names[s] = s
	return s
}

// outcomeCounter accumulates one batch's outcome counts by bucket epoch.
// Results of a batch span seconds, so they fall in one or two buckets; a
// few slots cover that and overflow flushes early.
type outcomeCounter struct {
	n     int
	slots [4]struct {
		epoch   int64
		total   [nChecks][nPairs]int64
		success [nChecks][nPairs]int64
	}
}

func (oc *outcomeCounter) add(st *state, check, pair int, at int64, success bool) {
	e := floorDiv(at, st.width)
	i := 0
	for ; i < oc.n; i++ {
		if oc.slots[i].epoch == e {
			break
		}
	}
	if i == oc.n {
		if oc.n == len(oc.slots) {
			st.mu.Lock()
			oc.flush(st)
			st.mu.Unlock()
			i = 0
		}
		oc.slots[i].epoch = e
		oc.n = i + 1
	}
	oc.slots[i].total[check][pair]++
	if success {
		oc.slots[i].success[check][pair]++
	}
}

// flush adds the counts to st (whose lock the caller holds) and resets.
func (oc *outcomeCounter) flush(st *state) {
	for i := range oc.n {
		sl := &oc.slots[i]
		for c := range nChecks {
			for p := range nPairs {
				if sl.total[c][p] > 0 {
					st.addCountLocked(c, p, sl.epoch, sl.total[c][p], sl.success[c][p])
				}
			}
		}
		sl.total = [nChecks][nPairs]int64{}
		sl.success = [nChecks][nPairs]int64{}
	}
	oc.n = 0
}

func (st *state) addCountLocked(check, pair int, epoch, total, success int64) {
	ring := st.buckets[check][pair]
	b := &ring[mod(epoch, int64(len(ring)))]
	switch {
	case b.epoch == epoch:
	case b.epoch < epoch || b.total == 0:
		*b = outcomeBucket{epoch: epoch}
	default:
		return // older than the ring holds
	}
	b.total += total
	b.success += success
}

// outcomeSums are the window's counts per (check, pair).
type outcomeSums [nChecks][nPairs]struct{ total, success int64 }

// sums adds up the buckets of the window ending at now, selected like the
// sketches' windows: ceil(window/width) buckets ending with now's.
func (st *state) sums(now time.Time, window time.Duration) *outcomeSums {
	last := floorDiv(now.UnixNano(), st.width)
	first := last - (int64(window)+st.width-1)/st.width + 1
	var out outcomeSums
	st.mu.Lock()
	defer st.mu.Unlock()
	for c := range nChecks {
		for p := range nPairs {
			for _, b := range st.buckets[c][p] {
				if b.total > 0 && b.epoch >= first && b.epoch <= last {
					out[c][p].total += b.total
					out[c][p].success += b.success
				}
			}
		}
	}
	return &out
}

// sweep forgets cells not updated since before now-cellTTL and rebuilds the
// name table from the survivors. It returns the number of cells left.
func (st *state) sweep(now time.Time) int {
	cutoff := now.UnixNano() - st.cellTTL
	st.mu.Lock()
	defer st.mu.Unlock()
	names := make(map[string]string, len(st.names))
	for k, c := range st.cells {
		if c.at < cutoff {
			delete(st.cells, k)
			continue
		}
		names[k.src] = k.src
		names[k.dst] = k.dst
	}
	st.names = names
	return len(st.cells)
}

func (st *state) cellCount() int {
	st.mu.Lock()
	defer st.mu.Unlock()
	return len(st.cells)
}

// cellSnapshot and outcomeSnapshot carry the state to a replica.
type cellSnapshot struct {
	Src, Dst, Check, SrcOS, DstOS, Outcome string
	At                                     int64
	Phases                                 []phaseSnapshot
}

type phaseSnapshot struct {
	Phase string
	NS    int64
}

type outcomeSnapshot struct {
	Check, Pair           string
	Epoch, Total, Success int64
}

func (st *state) snapshot() ([]cellSnapshot, []outcomeSnapshot) {
	st.mu.Lock()
	defer st.mu.Unlock()
	cells := make([]cellSnapshot, 0, len(st.cells))
	for k, c := range st.cells {
		cs := cellSnapshot{Src: k.src, Dst: k.dst, Check: checks[k.check], SrcOS: oses[c.srcOS], DstOS: oses[c.dstOS],
			Outcome: outcomes[c.outcome], At: c.at}
		for i := range nPhases {
			if c.mask&(1<<i) != 0 {
				cs.Phases = append(cs.Phases, phaseSnapshot{Phase: phases[i], NS: int64(c.us[i]) * 1000})
			}
		}
		cells = append(cells, cs)
	}
	var counts []outcomeSnapshot
	for c := range nChecks {
		for p := range nPairs {
			for _, b := range st.buckets[c][p] {
				if b.total > 0 {
					counts = append(counts, outcomeSnapshot{Check: checks[c], Pair: pairNames[p], Epoch: b.epoch, Total: b.total, Success: b.success})
				}
			}
		}
	}
	return cells, counts
}

// merge adds a replica's state: cells newest-wins, counts added bucket by
// bucket (the receiving replica is empty when it bootstraps, so nothing is
// counted twice). Unknown label values are skipped, as on ingest.
func (st *state) merge(cells []cellSnapshot, counts []outcomeSnapshot, width time.Duration) {
	st.mu.Lock()
	defer st.mu.Unlock()
	for _, cs := range cells {
		ci, so, do := checkIndex(cs.Check), osIndex(cs.SrcOS), osIndex(cs.DstOS)
		if ci < 0 || so < 0 || do < 0 || cs.Src == "" {
			continue
		}
		k := cellKey{src: st.internLocked(cs.Src), dst: st.internLocked(cs.Dst), check: uint8(ci)}
		if old, ok := st.cells[k]; ok && old.at >= cs.At || !ok && len(st.cells) >= st.maxCells {
			continue
		}
		c := cellVal{at: cs.At, outcome: uint8(outcomeIndex(cs.Outcome)), srcOS: uint8(so), dstOS: uint8(do)}
		for _, p := range cs.Phases {
			if i := phaseIndex(p.Phase); i >= 0 {
				c.us[i], c.mask = micros(time.Duration(p.NS)), c.mask|1<<i
			}
		}
		st.cells[k] = c
	}
	if int64(width) != st.width {
		return // a replica with other buckets: rates refill within one window
	}
	pairIdx := map[string]int{}
	for i, n := range pairNames {
		pairIdx[n] = i
	}
	for _, o := range counts {
		ci := checkIndex(o.Check)
		pi, ok := pairIdx[o.Pair]
		if ci < 0 || !ok || o.Total <= 0 || o.Success < 0 || o.Success > o.Total {
			continue
		}
		st.addCountLocked(ci, pi, o.Epoch, o.Total, o.Success)
	}
}

func mod(a, b int64) int64 {
	m := a % b
	if m < 0 {
		m += b
	}
	return m
}
