package stats

import (
	"fmt"
	"math"
	"time"
)

// DefaultQuantiles are the quantiles the delta is exported for.
var DefaultQuantiles = []float64{0.5, 0.9, 0.99}

// BaselinePair is the reference every other OS pair is compared against.
var BaselinePair = Pair{Src: "linux", Dst: "linux"}

// DeltaOptions tune Deltas. Zero fields take the defaults.
type DeltaOptions struct {
	Quantiles []float64 // default DefaultQuantiles
	// Confidence of the delta's interval; default 0.99. Every scrape tests
	// checks x phases x pairs x quantiles (~200) deltas at once, so 95% would
	// flag about ten of them as significant by chance.
	Confidence float64
	// MinSamples per side below which a delta is flagged Insufficient;
	// default 20.
	MinSamples int
	// MinTailSamples raises MinSamples for tail quantiles: each side needs
	// MinTailSamples/min(q, 1-q) samples, so that the quantile is not just
	// the extreme value. Default 5: p50 needs 20, p90 50, p99 500.
	MinTailSamples int
	Baseline       Pair // default BaselinePair
	// Conservative uses the Bonferroni interval difference (each side at
	// 1-(1-Confidence)/2, CI = [lowP-highB, highP-lowB]) instead of MOVER.
	Conservative bool
}

func (o DeltaOptions) withDefaults() (DeltaOptions, error) {
	if o.Quantiles == nil {
		o.Quantiles = DefaultQuantiles
	}
	if o.Confidence == 0 {
		o.Confidence = 0.99
	}
	if o.MinSamples == 0 {
		o.MinSamples = 20
	}
	if o.MinTailSamples == 0 {
		o.MinTailSamples = 5
	}
	if o.Baseline == (Pair{}) {
		o.Baseline = BaselinePair
	}
	if err := checkQuantiles(o.Quantiles); err != nil {
		return o, err
	}
	if !(o.Confidence > 0 && o.Confidence < 1) {
		return o, fmt.Errorf("stats: confidence %v not in (0, 1)", o.Confidence)
	}
	return o, nil
}

// minSamples is the per-side sample count below which the q-quantile delta
// is flagged Insufficient.
func (o DeltaOptions) minSamples(q float64) int64 {
	tail := math.Ceil(float64(o.MinTailSamples) / min(q, 1-q))
	return max(int64(o.MinSamples), int64(tail))
}

// Delta is q(pair) - q(baseline) for one check, phase and quantile over a
// window. Values are seconds.
type Delta struct {
	Check    string
	Phase    string
	Pair     Pair
	Quantile float64

	// CILow and CIHigh are ±Inf when a side cannot be bounded at its sample
	// size; encoding/json rejects non-finite numbers, so map them before
	// marshalling.
	Delta  float64
	CILow  float64
	CIHigh float64

	PairValue       float64
	BaselineValue   float64
	Samples         int64 // of the pair
	BaselineSamples int64

	// Significant: the interval excludes 0 and the samples suffice.
	Significant bool
	// Insufficient: a side has fewer samples than the options require. The
	// delta is still reported, only flagged.
	Insufficient bool
}

// Deltas compares every OS pair with the baseline pair for each check and
// phase present in the view, at each quantile. A check and phase without
// baseline data in the window yields nothing: there is nothing to subtract.
// The result is ordered by check, phase, pair, then quantile as given.
func (v *View) Deltas(opts DeltaOptions) ([]Delta, error) {
	o, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	conf := o.Confidence
	if o.Conservative {
		conf = 1 - (1-o.Confidence)/2
	}
	type estKey struct {
		k Key
		q float64
	}
	cache := map[estKey]Estimate{}
	est := func(k Key, q float64) Estimate {
		ek := estKey{k, q}
		e, ok := cache[ek]
		if !ok {
			e = estimate(v.sketch[k], q, conf, v.acc)
			cache[ek] = e
		}
		return e
	}
	var out []Delta
	for _, k := range v.keys { // sorted, so pairs come in order within a check and phase
		if k.Pair() == o.Baseline {
			continue
		}
		base := Key{Check: k.Check, Phase: k.Phase, SrcOS: o.Baseline.Src, DstOS: o.Baseline.Dst}
		if v.sketch[base] == nil {
			continue
		}
		for _, q := range o.Quantiles {
			p, b := est(k, q), est(base, q)
			d := Delta{
				Check: k.Check, Phase: k.Phase, Pair: k.Pair(), Quantile: q,
				PairValue: p.Value, BaselineValue: b.Value,
				Samples: p.Samples, BaselineSamples: b.Samples,
			}
			d.Delta, d.CILow, d.CIHigh = differenceCI(p, b, o.Conservative)
			need := o.minSamples(q)
			d.Insufficient = p.Samples < need || b.Samples < need
			d.Significant = !d.Insufficient && (d.CILow > 0 || d.CIHigh < 0)
			out = append(out, d)
		}
	}
	return out, nil
}

// ComputeDeltas is View(now, w) followed by Deltas(opts).
func (s *Store) ComputeDeltas(now time.Time, w Window, opts DeltaOptions) ([]Delta, error) {
	v, err := s.View(now, w)
	if err != nil {
		return nil, err
	}
	return v.Deltas(opts)
}
