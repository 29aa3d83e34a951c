package stats

import (
	"fmt"
	"time"
)

// RegressionOptions tune Regressions. Zero fields take the defaults.
type RegressionOptions struct {
	Current  time.Duration // default 5m
	Baseline time.Duration // trailing window right before Current; default 1h
	// MinIncrease is the smallest increase of the delta that counts as a
	// regression; default 2ms. Negative means any significant increase.
	MinIncrease time.Duration
	Delta       DeltaOptions // how each window's delta is computed
}

func (o RegressionOptions) withDefaults() (RegressionOptions, error) {
	if o.Current == 0 {
		o.Current = 5 * time.Minute
	}
	if o.Baseline == 0 {
		o.Baseline = time.Hour
	}
	if o.MinIncrease == 0 {
		o.MinIncrease = 2 * time.Millisecond
	}
	if o.Current < 0 || o.Baseline < 0 {
		return o, fmt.Errorf("stats: invalid regression windows %v, %v", o.Current, o.Baseline)
	}
	d, err := o.Delta.withDefaults()
	o.Delta = d
	return o, err
}

// Regression compares one delta now with the same delta over the trailing
// baseline window.
type Regression struct {
	Check    string
	Phase    string
	Pair     Pair
	Quantile float64

	Current  Delta // over the current window
	Baseline Delta // over the trailing window before it

	Increase float64 // Current.Delta - Baseline.Delta, seconds
	CILow    float64
	CIHigh   float64

	// Insufficient: either delta is flagged Insufficient; never Regressed then.
	Insufficient bool
	// Regressed: samples suffice, CILow > 0 and Increase >= MinIncrease.
	Regressed bool
}

// Regressions evaluates every delta present in both windows as of now. Both
// windows come from the same tier, the finest that retains them together, so
// they are disjoint and adjacent; with the default tiers that is the 1-minute
// tier, and the current window then holds 4 to 5 minutes of data.
func (s *Store) Regressions(now time.Time, opts RegressionOptions) ([]Regression, error) {
	o, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	ns := now.UnixNano()
	ti := -1
	var kc, kb, last int64
	for i, t := range s.tiers {
		kc = ceilDiv(int64(o.Current), t.width)
		kb = ceilDiv(int64(o.Baseline), t.width)
		last = floorDiv(ns, t.width)
		if t.retains(ns, last-kc-kb+1) {
			ti = i
			break
		}
	}
	if ti < 0 {
		return nil, fmt.Errorf("%w: %v + %v", ErrWindowTooLong, o.Current, o.Baseline)
	}
	cur, err := s.view(ti, last-kc+1, last).Deltas(o.Delta)
	if err != nil {
		return nil, err
	}
	base, err := s.view(ti, last-kc-kb+1, last-kc).Deltas(o.Delta)
	if err != nil {
		return nil, err
	}
	type dk struct {
		check, phase string
		pair         Pair
		q            float64
	}
	before := make(map[dk]Delta, len(base))
	for _, d := range base {
		before[dk{d.Check, d.Phase, d.Pair, d.Quantile}] = d
	}
	minInc := o.MinIncrease.Seconds()
	var out []Regression
	for _, c := range cur {
		b, ok := before[dk{c.Check, c.Phase, c.Pair, c.Quantile}]
		if !ok {
			continue
		}
		r := Regression{
			Check: c.Check, Phase: c.Phase, Pair: c.Pair, Quantile: c.Quantile,
			Current: c, Baseline: b,
			Insufficient: c.Insufficient || b.Insufficient,
		}
		r.Increase, r.CILow, r.CIHigh = increaseCI(c, b, o.Delta.Conservative)
		r.Regressed = !r.Insufficient && r.CILow > 0 && r.Increase >= minInc
		out = append(out, r)
	}
	return out, nil
}

// increaseCI combines two independent deltas' intervals the way
// differenceCI combines two quantiles'.
func increaseCI(cur, base Delta, conservative bool) (d, lo, hi float64) {
	asEstimate := func(d Delta) Estimate { return Estimate{Value: d.Delta, Low: d.CILow, High: d.CIHigh} }
	return differenceCI(asEstimate(cur), asEstimate(base), conservative)
}
