package stats

import (
	"math/rand/v2"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// regressionNow sees minutes 60-64 after t0 as the current 5 minutes and
// minutes 0-59 as the trailing hour.
var regressionNow = t0.Add(64*time.Minute + 59*time.Second)

// feedHour feeds minutes 0-64 after t0 at perMin values per minute;
// shift(minute) is added to each value.
func feedHour(t testing.TB, s *Store, r *rand.Rand, k Key, perMin int, shift func(minute int) float64) {
	t.Helper()
	step := time.Minute / time.Duration(perMin)
	for m := range 65 {
		for i := range perMin {
			at := t0.Add(time.Duration(m)*time.Minute + time.Duration(i)*step)
			require.NoError(t, s.Add(k, lognormal(r, 0.0005, 0.5)+shift(m), at))
		}
	}
}

func constant(v float64) func(int) float64 { return func(int) float64 { return v } }

func step(before, after float64) func(int) float64 {
	return func(m int) float64 {
		if m >= 60 {
			return after
		}
		return before
	}
}

func TestRegressions(t *testing.T) {
	for _, tc := range []struct {
		name         string
		perMin       int
		base, pair   func(int) float64
		opts         RegressionOptions
		wantRegress  bool
		wantInsuff   bool
		wantIncrease float64 // checked at p50 when non-zero
	}{
		{
			name: "step +5 ms in the current window", perMin: 200,
			base: constant(0), pair: step(0.008, 0.013),
			wantRegress: true, wantIncrease: 0.005,
		},
		{
			name: "stationary 8 ms delta", perMin: 200,
			base: constant(0), pair: constant(0.008),
		},
		{
			name: "step +1 ms: significant but below the 2 ms minimum", perMin: 200,
			base: constant(0), pair: step(0.008, 0.009),
			wantIncrease: 0.001,
		},
		{
			name: "step +1 ms with no minimum", perMin: 200,
			base: constant(0), pair: step(0.008, 0.009),
			opts:        RegressionOptions{MinIncrease: -1},
			wantRegress: true, wantIncrease: 0.001,
		},
		{
			name: "Windows path got faster", perMin: 200,
			base: constant(0), pair: step(0.008, 0.003),
			wantIncrease: -0.005,
		},
		{
			name: "cluster-wide slowdown leaves the delta alone", perMin: 200,
			base: step(0, 0.005), pair: step(0.008, 0.013),
		},
		{
			name: "too few samples to tell", perMin: 2,
			base: constant(0), pair: step(0.008, 0.030),
			wantInsuff: true,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newStore(t, Config{})
			r := rand.New(rand.NewPCG(8, 8))
			feedHour(t, s, r, keyLL, tc.perMin, tc.base)
			feedHour(t, s, r, keyWL, tc.perMin, tc.pair)
			regs, err := s.Regressions(regressionNow, tc.opts)
			require.NoError(t, err)
			require.Len(t, regs, len(DefaultQuantiles))
			for _, reg := range regs {
				assert.Equal(t, Pair{"windows", "linux"}, reg.Pair)
				assert.Equal(t, int64(5*tc.perMin), reg.Current.Samples, "current window is minutes 60-64")
				assert.Equal(t, int64(60*tc.perMin), reg.Baseline.Samples, "trailing hour is minutes 0-59")
				assert.Equal(t, tc.wantInsuff, reg.Insufficient, "p%v", reg.Quantile*100)
				// p99 over 5 minutes has ~10 samples above it per side: leave
				// its verdict to the sample-size rules checked elsewhere.
				if reg.Quantile < 0.99 || tc.wantRegress {
					assert.Equal(t, tc.wantRegress, reg.Regressed, "p%v: %+v", reg.Quantile*100, reg)
				}
				assert.LessOrEqual(t, reg.CILow, reg.Increase)
				assert.GreaterOrEqual(t, reg.CIHigh, reg.Increase)
				if tc.wantIncrease != 0 && reg.Quantile == 0.5 {
					assert.InDelta(t, tc.wantIncrease, reg.Increase, 0.0003)
					assert.Greater(t, reg.CILow*tc.wantIncrease, 0.0, "the interval excludes 0 on the right side")
				}
				t.Logf("p%v: current %.2f ms, baseline %.2f ms, increase %.2f ms [%.2f, %.2f] regressed=%v",
					reg.Quantile*100, reg.Current.Delta*1e3, reg.Baseline.Delta*1e3,
					reg.Increase*1e3, reg.CILow*1e3, reg.CIHigh*1e3, reg.Regressed)
			}
		})
	}
}

// TestRegressionStationaryFalsePositives counts significant increases (no
// minimum) on a stationary series across seeds.
func TestRegressionStationaryFalsePositives(t *testing.T) {
	const seeds = 20
	flagged := 0
	for seed := range uint64(seeds) {
		s := newStore(t, Config{})
		r := rand.New(rand.NewPCG(seed, 200))
		feedHour(t, s, r, keyLL, 120, constant(0))
		feedHour(t, s, r, keyWL, 120, constant(0.008))
		regs, err := s.Regressions(regressionNow, RegressionOptions{MinIncrease: -1})
		require.NoError(t, err)
		for _, reg := range regs {
			if reg.Regressed {
				flagged++
			}
		}
		regs, err = s.Regressions(regressionNow, RegressionOptions{})
		require.NoError(t, err)
		for _, reg := range regs {
			assert.False(t, reg.Regressed, "seed %d p%v with the 2 ms minimum", seed, reg.Quantile*100)
		}
	}
	rate := float64(flagged) / float64(seeds*len(DefaultQuantiles))
	t.Logf("stationary: %d of %d (%.1f%%) flagged with no minimum increase", flagged, seeds*len(DefaultQuantiles), rate*100)
	assert.LessOrEqual(t, rate, 0.05)
}

func TestRegressionOptions(t *testing.T) {
	s := newStore(t, Config{})
	_, err := s.Regressions(t0, RegressionOptions{Baseline: 3 * time.Hour})
	assert.ErrorIs(t, err, ErrWindowTooLong)
	_, err = s.Regressions(t0, RegressionOptions{Current: -time.Minute})
	assert.Error(t, err)
	_, err = s.Regressions(t0, RegressionOptions{Delta: DeltaOptions{Confidence: 2}})
	assert.Error(t, err)
	regs, err := s.Regressions(t0, RegressionOptions{})
	assert.NoError(t, err)
	assert.Empty(t, regs)
}
