package stats

import (
	"fmt"
	"time"

	"github.com/DataDog/sketches-go/ddsketch"
)

// Window selects the buckets of a rolling window: the ceil(Length/width)
// buckets ending with the one that contains now-Offset, taken from the finest
// tier that still retains all of them. With Offset 0 the newest bucket is
// still filling, so the window holds between Length-width and Length of data.
type Window struct {
	Length time.Duration
	Offset time.Duration // end the window this long before now; 0 for the current window
}

// View is the merged sketch of every series over one window. It is
// immutable: build a new one to see newer data. Each series is read under
// its own lock, so a View is consistent per series, not across series.
type View struct {
	acc    float64
	width  time.Duration
	from   time.Time
	to     time.Time
	keys   []Key // sorted, only series with data in the window
	sketch map[Key]*ddsketch.DDSketch
}

// View merges each series' buckets over w as of now.
func (s *Store) View(now time.Time, w Window) (*View, error) {
	if w.Length <= 0 || w.Offset < 0 {
		return nil, fmt.Errorf("stats: invalid window %+v", w)
	}
	ns := now.UnixNano()
	for i, t := range s.tiers {
		last := floorDiv(ns-int64(w.Offset), t.width)
		first := last - ceilDiv(int64(w.Length), t.width) + 1
		if t.retains(ns, first) {
			return s.view(i, first, last), nil
		}
	}
	return nil, fmt.Errorf("%w: %+v", ErrWindowTooLong, w)
}

// retains reports whether the ring, as of now, can still hold bucket first.
func (t tier) retains(now, first int64) bool {
	return first >= floorDiv(now, t.width)-t.n+1
}

// view merges, for every series, the buckets of tier ti with epochs in
// [first, last].
func (s *Store) view(ti int, first, last int64) *View {
	t := s.tiers[ti]
	v := &View{
		acc:    s.acc,
		width:  time.Duration(t.width),
		from:   time.Unix(0, first*t.width),
		to:     time.Unix(0, (last+1)*t.width),
		sketch: map[Key]*ddsketch.DDSketch{},
	}
	keys, m := s.snapshotSeries()
	for _, k := range keys {
		sr := m[k]
		var merged *ddsketch.DDSketch
		sr.mu.Lock()
		for _, b := range sr.rings[ti].buckets {
			if b.sk == nil || b.epoch < first || b.epoch > last || b.sk.IsEmpty() {
				continue
			}
			if merged == nil {
				merged, _ = s.newSketch()
			}
			_ = merged.MergeWith(b.sk) // same mapping by construction
		}
		sr.mu.Unlock()
		if merged != nil {
			v.keys = append(v.keys, k)
			v.sketch[k] = merged
		}
	}
	return v
}

// From is the start of the oldest bucket in the view.
func (v *View) From() time.Time { return v.from }

// To is the end of the newest bucket in the view (after now for the current window).
func (v *View) To() time.Time { return v.to }

// BucketWidth is the width of the tier the view was built from.
func (v *View) BucketWidth() time.Duration { return v.width }

// Keys lists the series with data in the window, sorted.
func (v *View) Keys() []Key { return append([]Key(nil), v.keys...) }

// Count is the number of observations of k in the window.
func (v *View) Count(k Key) int64 {
	sk := v.sketch[k]
	if sk == nil {
		return 0
	}
	return count(sk)
}

// QuantileValue is one series' quantile over a window, for
// xosprobe_probe_quantile-style gauges.
type QuantileValue struct {
	Key      Key
	Quantile float64
	Value    float64 // seconds, within the store's relative accuracy of the sample quantile
	Samples  int64
}

// Quantiles returns every series' value at each of qs (in (0, 1)), ordered by
// key then by qs order.
func (v *View) Quantiles(qs []float64) ([]QuantileValue, error) {
	if err := checkQuantiles(qs); err != nil {
		return nil, err
	}
	out := make([]QuantileValue, 0, len(v.keys)*len(qs))
	for _, k := range v.keys {
		sk := v.sketch[k]
		n := count(sk)
		for _, q := range qs {
			val, _ := sk.GetValueAtQuantile(q) // sketch is non-empty, q valid
			out = append(out, QuantileValue{Key: k, Quantile: q, Value: val, Samples: n})
		}
	}
	return out, nil
}

// Estimate returns k's q-quantile with its confidence interval (see the
// package doc), or false when k has no data in the window.
func (v *View) Estimate(k Key, q, confidence float64) (Estimate, bool) {
	sk := v.sketch[k]
	if sk == nil || !(q > 0 && q < 1) || !(confidence > 0 && confidence < 1) {
		return Estimate{}, false
	}
	return estimate(sk, q, confidence, v.acc), true
}

func count(sk *ddsketch.DDSketch) int64 { return int64(sk.GetCount() + 0.5) }

func checkQuantiles(qs []float64) error {
	for _, q := range qs {
		if !(q > 0 && q < 1) {
			return fmt.Errorf("stats: quantile %v not in (0, 1)", q)
		}
	}
	return nil
}
