package aggregator

import (
	"math"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/xosprobe/xosprobe/aggregator/stats"
)

// computed is one computation of everything the scrape and /matrix serve.
type computed struct {
	at      time.Time
	took    time.Duration
	metrics []prometheus.Metric
	// For /matrix: each series' quantiles and each delta, by key.
	quantiles map[stats.Key]seriesQuantiles
	deltas    map[deltaKey]stats.Delta
	series    int
	buckets   int
}

type seriesQuantiles struct {
	samples int64
	values  map[float64]float64
}

type deltaKey struct {
	key stats.Key // the pair's series
	q   float64
}

// Compute recomputes quantiles, deltas and regressions now and swaps them in
// for scrapes and /matrix. The compute loop calls it every ComputeInterval.
func (s *Server) Compute() error {
	start := time.Now()
	now := s.now()
	c := &computed{at: now, quantiles: map[stats.Key]seriesQuantiles{}, deltas: map[deltaKey]stats.Delta{}}
	m := s.metrics
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		c.metrics = append(c.metrics, prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...))
	}
	flag := func(b bool) float64 {
		if b {
			return 1
		}
		return 0
	}

	view, err := s.store.View(now, stats.Window{Length: s.cfg.DeltaWindow})
	if err != nil {
		return err
	}
	qs, err := view.Quantiles(s.delta.Quantiles)
	if err != nil {
		return err
	}
	for _, q := range qs {
		k := q.Key
		sq, ok := c.quantiles[k]
		if !ok {
			sq = seriesQuantiles{samples: q.Samples, values: map[float64]float64{}}
			c.quantiles[k] = sq
			gauge(m.pairSamples, float64(q.Samples), k.Check, k.Phase, k.Pair().String())
			if k.Pair() == stats.BaselinePair {
				gauge(m.baseSamples, float64(q.Samples), k.Check, k.Phase)
			}
		}
		sq.values[q.Quantile] = q.Value
		gauge(m.pairQuantile, q.Value, k.Check, k.Phase, k.Pair().String(), quantileLabel(q.Quantile))
	}

	deltas, err := view.Deltas(s.delta)
	if err != nil {
		return err
	}
	for i, d := range deltas {
		pair, ql := d.Pair.String(), quantileLabel(d.Quantile)
		if i == 0 || deltas[i-1].Check != d.Check || deltas[i-1].Phase != d.Phase || deltas[i-1].Pair != d.Pair {
			gauge(m.deltaSamples, float64(d.Samples), d.Check, d.Phase, pair)
		}
		gauge(m.delta, d.Delta, d.Check, d.Phase, pair, ql)
		gauge(m.significant, flag(d.Significant), d.Check, d.Phase, pair, ql)
		gauge(m.insufficient, flag(d.Insufficient), d.Check, d.Phase, pair, ql)
		if !math.IsInf(d.CILow, 0) && !math.IsNaN(d.CILow) {
			gauge(m.ciLow, d.CILow, d.Check, d.Phase, pair, ql)
		}
		if !math.IsInf(d.CIHigh, 0) && !math.IsNaN(d.CIHigh) {
			gauge(m.ciHigh, d.CIHigh, d.Check, d.Phase, pair, ql)
		}
		k := stats.Key{Check: d.Check, Phase: d.Phase, SrcOS: d.Pair.Src, DstOS: d.Pair.Dst}
		c.deltas[deltaKey{k, d.Quantile}] = d
	}

	regs, err := s.store.Regressions(now, stats.RegressionOptions{Current: s.cfg.DeltaWindow,
		Baseline: s.cfg.BaselineWindow, MinIncrease: s.cfg.MinRegression, Delta: s.delta})
	if err != nil {
		return err
	}
	for _, r := range regs {
		pair, ql := r.Pair.String(), quantileLabel(r.Quantile)
		gauge(m.regression, r.Increase, r.Check, r.Phase, pair, ql)
		gauge(m.regressionBase, r.Baseline.Delta, r.Check, r.Phase, pair, ql)
		gauge(m.regressed, flag(r.Regressed), r.Check, r.Phase, pair, ql)
		gauge(m.regressionInsufficient, flag(r.Insufficient), r.Check, r.Phase, pair, ql)
	}

	st := s.store.Stats()
	c.series, c.buckets = st.Series, st.Buckets
	c.took = time.Since(start)
	s.computed.Store(c)
	return nil
}
