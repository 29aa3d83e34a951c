package stats

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// binomialCDF is a slow reference: P(B <= k) for B ~ Binomial(n, q).
func binomialCDF(n, k int64, q float64) float64 {
	if k < 0 {
		return 0
	}
	lg := func(x float64) float64 { v, _ := math.Lgamma(x); return v }
	sum := 0.0
	for i := int64(0); i <= min(k, n); i++ {
		fi, fn := float64(i), float64(n)
		sum += math.Exp(lg(fn+1) - lg(fi+1) - lg(fn-fi+1) + fi*math.Log(q) + (fn-fi)*math.Log1p(-q))
	}
	return sum
}

func TestOrderStatRanks(t *testing.T) {
	for _, tc := range []struct {
		name         string
		n            int64
		q, conf      float64
		wantL, wantU int64
	}{
		{"n=5 cannot bound the median at 99%", 5, 0.5, 0.99, 0, 6},
		{"n=5 median at 90% is min..max", 5, 0.5, 0.90, 1, 5},
		{"textbook n=100 median at 95%", 100, 0.5, 0.95, 40, 61},
		{"n=527 cannot bound p99 from above at 99%", 527, 0.99, 0.99, 515, 528},
		{"n=528 can", 528, 0.99, 0.99, 516, 528},
		{"empty", 0, 0.5, 0.99, 0, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l, u := orderStatRanks(tc.n, tc.q, tc.conf)
			assert.Equal(t, tc.wantL, l, "lower rank")
			assert.Equal(t, tc.wantU, u, "upper rank")
		})
	}

	t.Run("matches the exact definition", func(t *testing.T) {
		for _, n := range []int64{1, 2, 7, 20, 64, 300, 1000, 1700, 5000} {
			for _, q := range []float64{0.5, 0.9, 0.99} {
				for _, conf := range []float64{0.9, 0.95, 0.99} {
					a := (1 - conf) / 2
					l, u := orderStatRanks(n, q, conf)
					// Allow one rank of slack where the normal approximation is used.
					slack := int64(0)
					if math.Sqrt(float64(n)*q*(1-q)) >= 20 {
						slack = 1
					}
					assert.LessOrEqual(t, binomialCDF(n, l-1-slack, q), a+1e-12, "n=%d q=%v conf=%v: lower tail", n, q, conf)
					if l+slack <= n {
						assert.Greater(t, binomialCDF(n, l+slack, q), a, "n=%d q=%v conf=%v: l is the largest", n, q, conf)
					}
					assert.LessOrEqual(t, 1-binomialCDF(n, u-1+slack, q), a+1e-9, "n=%d q=%v conf=%v: upper tail", n, q, conf)
					if u-slack >= 1 {
						assert.Greater(t, 1-binomialCDF(n, u-2-slack, q), a, "n=%d q=%v conf=%v: u is the smallest", n, q, conf)
					}
				}
			}
		}
	})

	t.Run("normal approximation joins the exact sum", func(t *testing.T) {
		// sd = sqrt(n q (1-q)) crosses 20 at n = 1600 for the median.
		for _, n := range []int64{1599, 1600, 1601} {
			l, u := orderStatRanks(n, 0.5, 0.99)
			assert.InDelta(t, float64(n)/2-2.576*math.Sqrt(float64(n))/2, float64(l), 2)
			assert.InDelta(t, float64(n)/2+2.576*math.Sqrt(float64(n))/2, float64(u), 2)
		}
	})
}

// TestQuantileCICoverage checks that the sketch-read interval covers the true
// quantile of a known distribution at least as often as promised.
func TestQuantileCICoverage(t *testing.T) {
	s := newStore(t, Config{})
	const median, sigma, trials, n = 0.0005, 0.5, 400, 600
	for _, q := range []float64{0.5, 0.9, 0.99} {
		t.Run("q="+ftoa(q), func(t *testing.T) {
			z := math.Sqrt2 * math.Erfinv(2*q-1)
			truth := median * math.Exp(sigma*z)
			covered := 0
			for seed := range uint64(trials) {
				r := rand.New(rand.NewPCG(seed, 11))
				sk, _ := s.newSketch()
				for range n {
					require.NoError(t, sk.Add(lognormal(r, median, sigma)))
				}
				e := estimate(sk, q, 0.95, s.acc)
				require.LessOrEqual(t, e.Low, e.Value)
				require.GreaterOrEqual(t, e.High, e.Value)
				if e.Low <= truth && truth <= e.High {
					covered++
				}
			}
			rate := float64(covered) / trials
			t.Logf("95%% interval covered the true p%v in %.1f%% of %d trials (n=%d)", q*100, rate*100, trials, n)
			assert.GreaterOrEqual(t, rate, 0.93)
		})
	}
}
