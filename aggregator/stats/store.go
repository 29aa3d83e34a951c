package stats

import (
	"cmp"
	"errors"
	"fmt"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/DataDog/sketches-go/ddsketch"
	"github.com/DataDog/sketches-go/ddsketch/mapping"
	"github.com/DataDog/sketches-go/ddsketch/store"
)

var (
	// ErrInvalidValue rejects NaN, infinite and negative durations.
	ErrInvalidValue = errors.New("stats: value is not a finite, non-negative number of seconds")
	// ErrInvalidTime rejects the zero time, which a result without a
	// timestamp would carry.
	ErrInvalidTime = errors.New("stats: observation has no time")
	// ErrTooOld reports an observation older than every tier still retains.
	ErrTooOld = errors.New("stats: observation is older than the retained buckets")
	// ErrTooManySeries reports that Config.MaxSeries distinct keys already exist.
	ErrTooManySeries = errors.New("stats: series limit reached")
	// ErrWindowTooLong reports a window that no tier retains in full.
	ErrWindowTooLong = errors.New("stats: window is longer than any tier retains")
)

// Key names a series. The fields are the metric label values.
type Key struct {
	Check string
	Phase string
	SrcOS string
	DstOS string
}

// Pair returns the key's source and destination OS.
func (k Key) Pair() Pair { return Pair{Src: k.SrcOS, Dst: k.DstOS} }

// Pair is a (source OS, destination OS) combination.
type Pair struct {
	Src string
	Dst string
}

// String renders the pair as the `pair` label value, e.g. "windows->linux".
func (p Pair) String() string { return p.Src + "->" + p.Dst }

// Tier is one ring of equal-width time buckets.
type Tier struct {
	Width   time.Duration // bucket width
	Buckets int           // ring length; the tier retains Width*Buckets, the newest bucket partial
}

// DefaultTiers serve windows up to 5 minutes at 10 s resolution and up to
// 65 minutes (a 1 h baseline behind the current 5 min) at 1 min resolution.
var DefaultTiers = []Tier{
	{Width: 10 * time.Second, Buckets: 30},
	{Width: time.Minute, Buckets: 65},
}

// Config sets up a Store. Zero fields take the defaults.
type Config struct {
	// RelativeAccuracy of every sketch; default 0.01 (see the package doc).
	RelativeAccuracy float64
	// MaxBins caps each bucket's sketch; beyond it the lowest bins collapse.
	// Default 1024, which at 1% keeps full accuracy over a max/min ratio of
	// about 8e8 (1 µs to 800 s), so in practice nothing collapses.
	MaxBins int
	// Tiers, any order; default DefaultTiers.
	Tiers []Tier
	// MaxSeries bounds the number of keys so a misbehaving sender cannot grow
	// memory without limit; default 10000.
	MaxSeries int
}

// Observation is one value for AddBatch.
type Observation struct {
	Key   Key
	Value float64 // seconds
	At    time.Time
}

// Store keeps, per series, a ring of DDSketch buckets per tier. It is safe
// for concurrent use.
type Store struct {
	acc       float64
	maxBins   int
	maxSeries int
	tiers     []tier // finest first
	mapping   *mapping.CubicallyInterpolatedMapping
	minValue  float64 // at or below this DDSketch counts a value as zero
	maxValue  float64

	// series is copy-on-write: readers (every Add) take no lock and hash the
	// key once; writers (a new key, Expire removing one) are rare.
	series atomic.Pointer[map[Key]*series]
	mu     sync.Mutex // serialises writers of series
}

type tier struct {
	width int64 // nanoseconds
	n     int64
}

type series struct {
	mu    sync.Mutex
	dead  atomic.Bool // set under mu by Expire once removed; writers look up again
	rings []ring      // one per tier
}

type ring struct {
	buckets []bucket
	// newest is the newest epoch written or expired against; anything at or
	// below newest-n is out of the ring's span, even if its slot is free.
	newest int64
	// hot is the bucket that took the last write. Nearly every write lands in
	// the current bucket, so this skips the 64-bit divisions per tier.
	hot              *bucket
	hotStart, hotEnd int64
}

type bucket struct {
	epoch int64              // bucket start / tier width
	sk    *ddsketch.DDSketch // nil when the slot is free
	pos   *store.CollapsingLowestDenseStore
}

// noEpoch is a ring's newest epoch before any write; far enough above
// MinInt64 that newest-n cannot overflow.
const noEpoch = math.MinInt64 / 2

// zeroIndex marks a value DDSketch counts as zero rather than in a bin.
const zeroIndex = math.MinInt

// NewStore returns an empty Store.
func NewStore(cfg Config) (*Store, error) {
	if cfg.RelativeAccuracy == 0 {
		cfg.RelativeAccuracy = 0.01
	}
	if cfg.MaxBins == 0 {
		cfg.MaxBins = 1024
	}
	if cfg.Tiers == nil {
		cfg.Tiers = DefaultTiers
	}
	if cfg.MaxSeries == 0 {
		cfg.MaxSeries = 10000
	}
	if cfg.MaxBins < 16 || cfg.MaxSeries < 1 || len(cfg.Tiers) == 0 {
		return nil, fmt.Errorf("stats: invalid config %+v", cfg)
	}
	m, err := mapping.NewCubicallyInterpolatedMapping(cfg.RelativeAccuracy)
	if err != nil {
		return nil, fmt.Errorf("stats: %w", err)
	}
	s := &Store{
		acc:       m.RelativeAccuracy(),
		maxBins:   cfg.MaxBins,
		maxSeries: cfg.MaxSeries,
		mapping:   m,
		minValue:  m.MinIndexableValue(),
		maxValue:  m.MaxIndexableValue(),
	}
	for _, t := range cfg.Tiers {
		if t.Width <= 0 || t.Buckets < 1 {
			return nil, fmt.Errorf("stats: invalid tier %+v", t)
		}
		s.tiers = append(s.tiers, tier{width: int64(t.Width), n: int64(t.Buckets)})
	}
	slices.SortFunc(s.tiers, func(a, b tier) int { return int(a.width - b.width) })
	for i := 1; i < len(s.tiers); i++ {
		if s.tiers[i].width == s.tiers[i-1].width {
			return nil, fmt.Errorf("stats: two tiers of width %v", time.Duration(s.tiers[i].width))
		}
	}
	empty := map[Key]*series{}
	s.series.Store(&empty)
	return s, nil
}

// RelativeAccuracy is the sketches' guaranteed relative error on any quantile.
func (s *Store) RelativeAccuracy() float64 { return s.acc }

// Tiers returns the tiers, finest first.
func (s *Store) Tiers() []Tier {
	out := make([]Tier, len(s.tiers))
	for i, t := range s.tiers {
		out[i] = Tier{Width: time.Duration(t.width), Buckets: int(t.n)}
	}
	return out
}

// MaxBytesPerSeries is the worst-case sketch memory of one series: every
// bucket of every tier full at MaxBins float64 bins, plus struct overhead.
// Typical use is far below it (see the package doc).
func (s *Store) MaxBytesPerSeries() int {
	const perBucket = 256 // slot, DDSketch and two store headers, rounded up
	n := 0
	for _, t := range s.tiers {
		n += int(t.n) * (s.maxBins*8 + perBucket)
	}
	return n + 128
}

// Add records one value, in seconds, observed at `at`. Pass the aggregator's
// receive time (or a result timestamp clamped to it): a timestamp far in the
// future would recycle ring slots that still hold live buckets.
func (s *Store) Add(k Key, v float64, at time.Time) error {
	if !(v >= 0 && v <= s.maxValue) {
		return ErrInvalidValue
	}
	if at.IsZero() {
		return ErrInvalidTime
	}
	idx := s.index(v)
	ns := at.UnixNano()
	for {
		sr, err := s.get(k)
		if err != nil {
			return err
		}
		sr.mu.Lock()
		if sr.dead.Load() {
			sr.mu.Unlock()
			continue
		}
		ok := s.addLocked(sr, ns, idx, 1)
		sr.mu.Unlock()
		if !ok {
			return ErrTooOld
		}
		return nil
	}
}

// AddBatch records many values. Consecutive observations with the same key
// share one lookup and one lock, so group by key when that is free. Every
// valid observation is recorded; the first error met is returned.
func (s *Store) AddBatch(obs []Observation) (added int, err error) {
	for i := 0; i < len(obs); {
		k := obs[i].Key
		j := i + 1
		for j < len(obs) && obs[j].Key == k {
			j++
		}
		n, e := s.addRun(k, obs[i:j])
		added += n
		if err == nil {
			err = e
		}
		i = j
	}
	return added, err
}

func (s *Store) addRun(k Key, run []Observation) (int, error) {
	for {
		sr, err := s.get(k)
		if err != nil {
			return 0, err
		}
		sr.mu.Lock()
		if sr.dead.Load() {
			sr.mu.Unlock()
			continue
		}
		added := 0
		for _, o := range run {
			if !(o.Value >= 0 && o.Value <= s.maxValue) || o.At.IsZero() {
				if err == nil {
					err = ErrInvalidValue
					if o.At.IsZero() {
						err = ErrInvalidTime
					}
				}
				continue
			}
			if !s.addLocked(sr, o.At.UnixNano(), s.index(o.Value), 1) {
				if err == nil {
					err = ErrTooOld
				}
				continue
			}
			added++
		}
		sr.mu.Unlock()
		return added, err
	}
}

func (s *Store) index(v float64) int {
	if v <= s.minValue {
		return zeroIndex
	}
	return s.mapping.Index(v)
}

// addLocked adds to every tier that still retains ns; false if none does.
func (s *Store) addLocked(sr *series, ns int64, idx int, count float64) bool {
	ok := false
	for i, t := range s.tiers {
		b := s.slot(&sr.rings[i], t, ns)
		if b == nil {
			continue
		}
		if idx == zeroIndex {
			_ = b.sk.AddWithCount(0, count) // cannot fail: 0 is valid and count > 0
		} else {
			b.pos.AddWithCount(idx, count)
		}
		ok = true
	}
	return ok
}

// slot returns the bucket for time ns, recycling the ring slot if it holds an
// older bucket, or nil if the slot already holds a newer one (ns is too old
// for this tier).
func (s *Store) slot(r *ring, t tier, ns int64) *bucket {
	if ns >= r.hotStart && ns < r.hotEnd {
		return r.hot
	}
	e := floorDiv(ns, t.width)
	if e <= r.newest-t.n {
		return nil
	}
	b := &r.buckets[mod(e, t.n)]
	switch {
	case b.sk == nil:
		b.sk, b.pos = s.newSketch()
		b.epoch = e
	case b.epoch < e:
		b.sk.Clear() // keeps the bins array: no allocation in steady state
		b.epoch = e
	case b.epoch > e:
		return nil
	}
	r.newest = max(r.newest, e)
	r.hot, r.hotStart, r.hotEnd = b, e*t.width, (e+1)*t.width
	return b
}

func (s *Store) newSketch() (*ddsketch.DDSketch, *store.CollapsingLowestDenseStore) {
	pos := store.NewCollapsingLowestDenseStore(s.maxBins)
	// Negative values are rejected on input, so the negative store stays empty
	// and allocates no bins.
	return ddsketch.NewDDSketch(s.mapping, pos, store.NewCollapsingLowestDenseStore(s.maxBins)), pos
}

// get returns the live series for k, creating it if needed.
func (s *Store) get(k Key) (*series, error) {
	if sr := (*s.series.Load())[k]; sr != nil && !sr.dead.Load() {
		return sr, nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	old := *s.series.Load()
	if sr := old[k]; sr != nil && !sr.dead.Load() {
		return sr, nil
	}
	if _, replacing := old[k]; !replacing && len(old) >= s.maxSeries {
		return nil, ErrTooManySeries
	}
	sr := &series{rings: make([]ring, len(s.tiers))}
	for i, t := range s.tiers {
		sr.rings[i] = ring{buckets: make([]bucket, t.n), newest: noEpoch}
	}
	m := make(map[Key]*series, len(old)+1)
	for kk, v := range old {
		m[kk] = v
	}
	m[k] = sr
	s.series.Store(&m)
	return sr, nil
}

// Expire frees every bucket that has fallen out of its tier's retention at
// now and drops series left with no bucket; afterwards Add refuses data that
// old. Call it periodically (e.g. every
// bucket width); Add recycles slots on its own but only for series that keep
// receiving data, so without Expire a series that went quiet keeps its memory.
// It returns the number of buckets freed.
func (s *Store) Expire(now time.Time) int {
	ns := now.UnixNano()
	freed := 0
	var dead []Key
	for k, sr := range *s.series.Load() {
		sr.mu.Lock()
		live := false
		for i, t := range s.tiers {
			r := &sr.rings[i]
			r.newest = max(r.newest, floorDiv(ns, t.width))
			oldest := r.newest - t.n + 1
			for j := range r.buckets {
				b := &r.buckets[j]
				if b.sk == nil {
					continue
				}
				if b.epoch < oldest {
					*b = bucket{}
					r.hot, r.hotStart, r.hotEnd = nil, 0, 0
					freed++
				} else {
					live = true
				}
			}
		}
		if !live {
			sr.dead.Store(true)
			dead = append(dead, k)
		}
		sr.mu.Unlock()
	}
	if len(dead) > 0 {
		s.mu.Lock()
		old := *s.series.Load()
		m := make(map[Key]*series, len(old))
		for k, v := range old {
			if !v.dead.Load() {
				m[k] = v
			}
		}
		s.series.Store(&m)
		s.mu.Unlock()
	}
	return freed
}

// StoreStats describes what a Store holds.
type StoreStats struct {
	Series  int // live keys
	Buckets int // allocated bucket sketches over all series and tiers
}

// Stats counts series and allocated buckets.
func (s *Store) Stats() StoreStats {
	var st StoreStats
	for _, sr := range *s.series.Load() {
		sr.mu.Lock()
		for i := range sr.rings {
			for j := range sr.rings[i].buckets {
				if sr.rings[i].buckets[j].sk != nil {
					st.Buckets++
				}
			}
		}
		sr.mu.Unlock()
		st.Series++
	}
	return st
}

// snapshotSeries returns the current series map and its keys in a stable order.
func (s *Store) snapshotSeries() ([]Key, map[Key]*series) {
	m := *s.series.Load()
	keys := make([]Key, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, compareKeys)
	return keys, m
}

func compareKeys(a, b Key) int {
	return cmp.Or(
		cmp.Compare(a.Check, b.Check),
		cmp.Compare(a.Phase, b.Phase),
		cmp.Compare(a.SrcOS, b.SrcOS),
		cmp.Compare(a.DstOS, b.DstOS),
	)
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && a < 0 {
		q--
	}
	return q
}

func ceilDiv(a, b int64) int64 { return -floorDiv(-a, b) }

func mod(a, b int64) int64 {
	m := a % b
	if m < 0 {
		m += b
	}
	return m
}
