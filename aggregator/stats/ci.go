package stats

import (
	"math"

	"github.com/DataDog/sketches-go/ddsketch"
)

// Estimate is a quantile with a distribution-free confidence interval.
type Estimate struct {
	Value   float64 // the sketch's quantile (lower nearest rank), seconds
	Low     float64 // >= 0: durations are non-negative
	High    float64 // +Inf when the sample is too small to bound the quantile from above
	Samples int64
}

// estimate reads the q-quantile of sk and its CI. The CI is the pair of order
// statistics [X(l), X(u)] that covers the true quantile with probability >=
// confidence whatever the distribution (see orderStatRanks); each end is read
// from the sketch and widened by its relative accuracy acc, since the sketch
// returns a value within acc of the true order statistic.
func estimate(sk *ddsketch.DDSketch, q, confidence, acc float64) Estimate {
	n := count(sk)
	v, _ := sk.GetValueAtQuantile(q)
	e := Estimate{Value: v, Low: 0, High: math.Inf(1), Samples: n}
	l, u := orderStatRanks(n, q, confidence)
	if l >= 1 {
		e.Low = min(valueAtRank(sk, float64(l-1))/(1+acc), v)
	}
	if u <= n {
		e.High = max(valueAtRank(sk, float64(u-1))/(1-acc), v)
	}
	return e
}

// valueAtRank returns the sketch's value for the 0-based rank r. Stores only
// ever hold zeros and positive values (Add rejects negatives).
func valueAtRank(sk *ddsketch.DDSketch, r float64) float64 {
	z := sk.GetZeroCount()
	if r < z {
		return 0
	}
	return sk.Value(sk.GetPositiveValueStore().KeyAtRank(r - z))
}

// orderStatRanks returns 1-based ranks l <= u such that, for n independent
// draws from any continuous distribution, P(X(l) <= xi_q <= X(u)) >=
// confidence, with at most (1-confidence)/2 in each tail. The number B of
// draws at or below xi_q is Binomial(n, q); X(l) > xi_q iff B < l and
// X(u) < xi_q iff B >= u. l == 0 means no lower bound exists at that
// confidence and u == n+1 means no upper bound exists (e.g. any upper bound
// on p99 needs n >= 528 at 99%).
//
// The binomial tails are summed exactly while the standard deviation is
// small; beyond that the normal approximation with continuity correction is
// off by well under one rank.
func orderStatRanks(n int64, q, confidence float64) (l, u int64) {
	if n <= 0 {
		return 0, 1
	}
	a := (1 - confidence) / 2
	nf := float64(n)
	sd := math.Sqrt(nf * q * (1 - q))
	if sd >= 20 {
		z := math.Sqrt2 * math.Erfinv(1-2*a)
		l = int64(math.Floor(nf*q + 0.5 - z*sd))
		u = int64(math.Ceil(nf*q + 0.5 + z*sd))
		return max(l, 0), min(u, n+1)
	}
	pmf, lo := binomialPMF(n, q, sd)
	// l-1 is the largest k with P(B <= k) <= a (k = -1 always qualifies).
	l = lo
	for cum, i := 0.0, 0; i < len(pmf); i++ {
		cum += pmf[i]
		if cum > a {
			break
		}
		l = lo + int64(i) + 1
	}
	// u is the smallest k with P(B >= k) <= a (k = n+1 always qualifies).
	hi := lo + int64(len(pmf)) - 1
	u = hi + 1
	for tail, i := 0.0, len(pmf)-1; i >= 0; i-- {
		tail += pmf[i]
		if tail > a {
			break
		}
		u = lo + int64(i)
	}
	return l, u
}

// binomialPMF returns P(B = k) for k in [lo, lo+len-1], a range around the
// mode wide enough that the mass outside it is negligible (< 1e-30).
func binomialPMF(n int64, q, sd float64) ([]float64, int64) {
	nf := float64(n)
	mode := min(int64(math.Floor((nf+1)*q)), n)
	w := int64(12*sd) + 30
	lo, hi := max(mode-w, 0), min(mode+w, n)
	pmf := make([]float64, hi-lo+1)
	lg := func(x float64) float64 { v, _ := math.Lgamma(x); return v }
	mf := float64(mode)
	p := math.Exp(lg(nf+1) - lg(mf+1) - lg(nf-mf+1) + mf*math.Log(q) + (nf-mf)*math.Log1p(-q))
	pmf[mode-lo] = p
	// Walk away from the mode with the pmf ratio; terms only shrink, so
	// underflow in the far tails is harmless.
	up, down := q/(1-q), (1-q)/q
	for k, v := mode, p; k < hi; k++ {
		v *= float64(n-k) / float64(k+1) * up
		pmf[k+1-lo] = v
	}
	for k, v := mode, p; k > lo; k-- {
		v *= float64(k) / float64(n-k+1) * down
		pmf[k-1-lo] = v
	}
	return pmf, lo
}

// differenceCI returns a - b and a confidence interval for it from the two
// independent estimates' intervals. The default is MOVER (Zou & Donner
// 2008): each side's distance from its point estimate stands in for a
// standard error and the two combine in quadrature, which keeps the
// asymmetry of order-statistic intervals and has close to nominal coverage
// when each input interval is at the target confidence. The conservative
// form is the plain interval difference; it covers whenever both inputs do.
func differenceCI(a, b Estimate, conservative bool) (d, lo, hi float64) {
	d = a.Value - b.Value
	if conservative {
		return d, a.Low - b.High, a.High - b.Low
	}
	lo = d - math.Hypot(a.Value-a.Low, b.High-b.Value)
	hi = d + math.Hypot(a.High-a.Value, b.Value-b.Low)
	return d, lo, hi
}
