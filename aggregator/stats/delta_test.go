package stats

import (
	"math"
	"math/rand/v2"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func ftoa(f float64) string { return strconv.FormatFloat(f, 'g', -1, 64) }

// feed adds vals to k spread evenly over the 4 minutes after from.
func feed(t testing.TB, s *Store, k Key, vals []float64, from time.Time) {
	t.Helper()
	step := 4 * time.Minute / time.Duration(len(vals))
	for i, v := range vals {
		require.NoError(t, s.Add(k, v, from.Add(time.Duration(i)*step)))
	}
}

func draws(r *rand.Rand, n int, median, sigma, shift float64) []float64 {
	out := make([]float64, n)
	for i := range out {
		out[i] = lognormal(r, median, sigma) + shift
	}
	return out
}

// empirical is the lower-nearest-rank quantile, as DDSketch reads it.
func empirical(vals []float64, q float64) float64 {
	s := slices.Clone(vals)
	slices.Sort(s)
	return s[int(q*float64(len(s)-1))]
}

func deltasFor(t testing.TB, s *Store, now time.Time, opts DeltaOptions) map[string]Delta {
	t.Helper()
	ds, err := s.ComputeDeltas(now, Window{Length: 5 * time.Minute}, opts)
	require.NoError(t, err)
	m := map[string]Delta{}
	for _, d := range ds {
		m[d.Check+"/"+d.Phase+"/"+d.Pair.String()+"/"+ftoa(d.Quantile)] = d
	}
	return m
}

func wlDelta(m map[string]Delta, q float64) Delta { return m["tcp/connect/windows->linux/"+ftoa(q)] }

const shift8ms = 0.008

func TestDeltaKnownShift(t *testing.T) {
	now := t0.Add(4 * time.Minute)

	t.Run("same draws shifted: within sketch accuracy of the shift", func(t *testing.T) {
		s := newStore(t, Config{})
		r := rand.New(rand.NewPCG(1, 1))
		base := draws(r, 20000, 0.0005, 0.5, 0)
		pair := make([]float64, len(base))
		for i, v := range base {
			pair[i] = v + shift8ms
		}
		feed(t, s, keyLL, base, t0)
		feed(t, s, keyWL, pair, t0)
		m := deltasFor(t, s, now, DeltaOptions{})
		for _, q := range DefaultQuantiles {
			d := wlDelta(m, q)
			// The empirical shift is exactly 8 ms; each side may be off by
			// the relative accuracy of its own value.
			tol := s.RelativeAccuracy() * (empirical(pair, q) + empirical(base, q))
			assert.InDelta(t, shift8ms, d.Delta, tol, "p%v", q*100)
			assert.InEpsilon(t, empirical(pair, q), d.PairValue, s.RelativeAccuracy())
			assert.InEpsilon(t, empirical(base, q), d.BaselineValue, s.RelativeAccuracy())
			assert.Equal(t, int64(20000), d.Samples)
			assert.Equal(t, int64(20000), d.BaselineSamples)
			assert.True(t, d.Significant, "p%v", q*100)
			assert.False(t, d.Insufficient)
			t.Logf("p%v: delta %.3f ms (CI %.3f..%.3f), tolerance ±%.3f ms", q*100, d.Delta*1e3, d.CILow*1e3, d.CIHigh*1e3, tol*1e3)
		}
	})

	t.Run("independent draws: the true shift is inside the interval", func(t *testing.T) {
		s := newStore(t, Config{})
		r := rand.New(rand.NewPCG(2, 2))
		feed(t, s, keyLL, draws(r, 20000, 0.0005, 0.5, 0), t0)
		feed(t, s, keyWL, draws(r, 20000, 0.0005, 0.5, shift8ms), t0)
		m := deltasFor(t, s, now, DeltaOptions{})
		for _, q := range DefaultQuantiles {
			d := wlDelta(m, q)
			assert.LessOrEqual(t, d.CILow, shift8ms, "p%v", q*100)
			assert.GreaterOrEqual(t, d.CIHigh, shift8ms, "p%v", q*100)
			assert.InEpsilon(t, shift8ms, d.Delta, 0.03, "p%v", q*100)
			assert.True(t, d.Significant)
		}
	})
}

func TestDeltaSignificance(t *testing.T) {
	now := t0.Add(4 * time.Minute)
	for _, tc := range []struct {
		name             string
		n                int
		shift            float64 // pair minus baseline
		wantSignificant  map[float64]bool
		wantInsufficient map[float64]bool
	}{
		{
			name: "n=5, 8 ms shift: flagged, never significant", n: 5, shift: shift8ms,
			wantSignificant:  map[float64]bool{0.5: false, 0.9: false, 0.99: false},
			wantInsufficient: map[float64]bool{0.5: true, 0.9: true, 0.99: true},
		},
		{
			name: "n=30, 8 ms shift: the median suffices, the tails do not", n: 30, shift: shift8ms,
			wantSignificant:  map[float64]bool{0.5: true, 0.9: false, 0.99: false},
			wantInsufficient: map[float64]bool{0.5: false, 0.9: true, 0.99: true},
		},
		{
			name: "n=5000, 1 ms shift: significant everywhere", n: 5000, shift: 0.001,
			wantSignificant:  map[float64]bool{0.5: true, 0.9: true, 0.99: true},
			wantInsufficient: map[float64]bool{0.5: false, 0.9: false, 0.99: false},
		},
		{
			name: "n=5000, 1 ms faster: significant, negative", n: 5000, shift: -0.001,
			wantSignificant:  map[float64]bool{0.5: true, 0.9: true, 0.99: true},
			wantInsufficient: map[float64]bool{0.5: false, 0.9: false, 0.99: false},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newStore(t, Config{})
			r := rand.New(rand.NewPCG(3, 3))
			// Shift whichever side is slower so no draw goes negative.
			base, pair := draws(r, tc.n, 0.0015, 0.3, max(-tc.shift, 0)), draws(r, tc.n, 0.0015, 0.3, max(tc.shift, 0))
			feed(t, s, keyLL, base, t0)
			feed(t, s, keyWL, pair, t0)
			m := deltasFor(t, s, now, DeltaOptions{})
			for _, q := range DefaultQuantiles {
				d := wlDelta(m, q)
				require.Equal(t, int64(tc.n), d.Samples, "still reported")
				assert.Equal(t, tc.wantSignificant[q], d.Significant, "p%v: %+v", q*100, d)
				assert.Equal(t, tc.wantInsufficient[q], d.Insufficient, "p%v", q*100)
				if d.Significant {
					assert.Equal(t, math.Signbit(tc.shift), math.Signbit(d.Delta))
				}
			}
		})
	}
}

// TestDeltaFalsePositiveRate feeds both sides from one distribution.
func TestDeltaFalsePositiveRate(t *testing.T) {
	const seeds, n = 50, 5000
	for _, tc := range []struct {
		name    string
		opts    DeltaOptions
		maxRate float64
	}{
		{"MOVER at 99% (default)", DeltaOptions{}, 0.04},
		{"conservative at 99%", DeltaOptions{Conservative: true}, 0.02},
		{"MOVER at 95%", DeltaOptions{Confidence: 0.95}, 0.12},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fp := map[float64]int{}
			for seed := range uint64(seeds) {
				s := newStore(t, Config{})
				r := rand.New(rand.NewPCG(seed, 100))
				feed(t, s, keyLL, draws(r, n, 0.0005, 0.5, 0), t0)
				feed(t, s, keyWL, draws(r, n, 0.0005, 0.5, 0), t0)
				m := deltasFor(t, s, t0.Add(4*time.Minute), tc.opts)
				for _, q := range DefaultQuantiles {
					if wlDelta(m, q).Significant {
						fp[q]++
					}
				}
			}
			total := fp[0.5] + fp[0.9] + fp[0.99]
			rate := float64(total) / float64(seeds*len(DefaultQuantiles))
			t.Logf("false positives: p50 %d/%d, p90 %d/%d, p99 %d/%d; overall %.1f%%",
				fp[0.5], seeds, fp[0.9], seeds, fp[0.99], seeds, rate*100)
			assert.LessOrEqual(t, rate, tc.maxRate)
		})
	}
}

func TestDeltaPairsAndOrder(t *testing.T) {
	s := newStore(t, Config{})
	r := rand.New(rand.NewPCG(4, 4))
	for _, k := range []Key{keyWW, keyLL, keyLW, keyWL} {
		feed(t, s, k, draws(r, 100, 0.001, 0.3, 0), t0)
	}
	// A check with no Linux->Linux data has nothing to compare against.
	noBase := Key{Check: "dns", Phase: "resolve_system", SrcOS: "windows", DstOS: "linux"}
	feed(t, s, noBase, draws(r, 100, 0.001, 0.3, 0), t0)

	ds, err := s.ComputeDeltas(t0.Add(4*time.Minute), Window{Length: 5 * time.Minute}, DeltaOptions{Quantiles: []float64{0.9, 0.5}})
	require.NoError(t, err)
	var got []string
	for _, d := range ds {
		got = append(got, d.Check+" "+d.Pair.String()+" "+ftoa(d.Quantile))
	}
	assert.Equal(t, []string{
		"tcp linux->windows 0.9", "tcp linux->windows 0.5",
		"tcp windows->linux 0.9", "tcp windows->linux 0.5",
		"tcp windows->windows 0.9", "tcp windows->windows 0.5",
	}, got)

	t.Run("custom baseline", func(t *testing.T) {
		ds, err := s.ComputeDeltas(t0.Add(4*time.Minute), Window{Length: 5 * time.Minute},
			DeltaOptions{Quantiles: []float64{0.5}, Baseline: Pair{Src: "windows", Dst: "linux"}})
		require.NoError(t, err)
		var got []string
		for _, d := range ds {
			got = append(got, d.Check+" "+d.Pair.String())
		}
		// dns has only the baseline pair itself: nothing to compare.
		assert.Equal(t, []string{"tcp linux->linux", "tcp linux->windows", "tcp windows->windows"}, got)
	})

	t.Run("invalid options", func(t *testing.T) {
		for _, o := range []DeltaOptions{
			{Quantiles: []float64{1}},
			{Quantiles: []float64{math.NaN()}},
			{Confidence: 1.5},
		} {
			_, err := s.ComputeDeltas(t0.Add(4*time.Minute), Window{Length: 5 * time.Minute}, o)
			assert.Error(t, err, "%+v", o)
		}
	})
}

func TestConservativeContainsMOVER(t *testing.T) {
	s := newStore(t, Config{})
	r := rand.New(rand.NewPCG(5, 5))
	feed(t, s, keyLL, draws(r, 2000, 0.0005, 0.5, 0), t0)
	feed(t, s, keyWL, draws(r, 2000, 0.0005, 0.5, 0.0003), t0)
	mover := deltasFor(t, s, t0.Add(4*time.Minute), DeltaOptions{})
	cons := deltasFor(t, s, t0.Add(4*time.Minute), DeltaOptions{Conservative: true})
	for _, q := range DefaultQuantiles {
		m, c := wlDelta(mover, q), wlDelta(cons, q)
		assert.Equal(t, m.Delta, c.Delta)
		assert.LessOrEqual(t, c.CILow, m.CILow, "p%v", q*100)
		assert.GreaterOrEqual(t, c.CIHigh, m.CIHigh, "p%v", q*100)
		t.Logf("p%v: MOVER width %.1f µs, conservative %.1f µs", q*100, (m.CIHigh-m.CILow)*1e6, (c.CIHigh-c.CILow)*1e6)
	}
}
