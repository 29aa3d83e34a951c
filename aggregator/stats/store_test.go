package stats

import (
	"math"
	"math/rand/v2"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// t0 is minute-aligned so tests can reason about bucket boundaries.
var t0 = time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)

var (
	keyLL = Key{Check: "tcp", Phase: "connect", SrcOS: "linux", DstOS: "linux"}
	keyWL = Key{Check: "tcp", Phase: "connect", SrcOS: "windows", DstOS: "linux"}
	keyLW = Key{Check: "tcp", Phase: "connect", SrcOS: "linux", DstOS: "windows"}
	keyWW = Key{Check: "tcp", Phase: "connect", SrcOS: "windows", DstOS: "windows"}
)

func newStore(t testing.TB, cfg Config) *Store {
	t.Helper()
	s, err := NewStore(cfg)
	require.NoError(t, err)
	return s
}

// lognormal draws around median with log-space spread sigma.
func lognormal(r *rand.Rand, median, sigma float64) float64 {
	return median * math.Exp(sigma*r.NormFloat64())
}

func count5m(t testing.TB, s *Store, now time.Time, k Key) int64 {
	t.Helper()
	v, err := s.View(now, Window{Length: 5 * time.Minute})
	require.NoError(t, err)
	return v.Count(k)
}

func TestNewStoreConfig(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
		ok   bool
	}{
		{"defaults", Config{}, true},
		{"half percent", Config{RelativeAccuracy: 0.005, MaxBins: 2048}, true},
		{"accuracy too high", Config{RelativeAccuracy: 1}, false},
		{"negative accuracy", Config{RelativeAccuracy: -0.01}, false},
		{"too few bins", Config{MaxBins: 4}, false},
		{"empty tiers", Config{Tiers: []Tier{}}, false},
		{"zero width", Config{Tiers: []Tier{{Width: 0, Buckets: 3}}}, false},
		{"duplicate width", Config{Tiers: []Tier{{time.Second, 3}, {time.Second, 5}}}, false},
		{"unsorted tiers", Config{Tiers: []Tier{{time.Minute, 3}, {time.Second, 5}}}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := NewStore(tc.cfg)
			if !tc.ok {
				require.Error(t, err)
				return
			}
			require.NoError(t, err)
			tiers := s.Tiers()
			for i := 1; i < len(tiers); i++ {
				assert.Less(t, tiers[i-1].Width, tiers[i].Width, "finest first")
			}
		})
	}
}

func TestAddValues(t *testing.T) {
	s := newStore(t, Config{})
	for _, tc := range []struct {
		name string
		v    float64
		at   time.Time
		err  error
	}{
		{"typical", 0.0005, t0, nil},
		{"zero from a coarse clock", 0, t0, nil},
		{"timeout", 30, t0, nil},
		{"negative", -0.001, t0, ErrInvalidValue},
		{"NaN", math.NaN(), t0, ErrInvalidValue},
		{"+Inf", math.Inf(1), t0, ErrInvalidValue},
		{"no timestamp", 0.001, time.Time{}, ErrInvalidTime},
	} {
		t.Run(tc.name, func(t *testing.T) {
			assert.ErrorIs(t, s.Add(keyLL, tc.v, tc.at), tc.err)
			_, err := s.AddBatch([]Observation{{Key: keyWL, Value: tc.v, At: tc.at}})
			assert.ErrorIs(t, err, tc.err, "AddBatch")
		})
	}
	assert.Equal(t, int64(3), count5m(t, s, t0, keyLL))

	v, err := s.View(t0, Window{Length: time.Minute})
	require.NoError(t, err)
	qs, err := v.Quantiles([]float64{0.01, 0.5, 0.99})
	require.NoError(t, err)
	require.Len(t, qs, 6, "both keys")
	assert.Equal(t, qs[:3], func() []QuantileValue {
		out := slices.Clone(qs[3:])
		for i := range out {
			out[i].Key = keyLL
		}
		return out
	}(), "AddBatch stored the same as Add")
	assert.Equal(t, 0.0, qs[0].Value, "zero is kept as zero")
	assert.InDelta(t, 0.0005, qs[1].Value, 0.0005*s.RelativeAccuracy())
	// DDSketch reads the lower nearest rank, floor(q*(n-1)): with three
	// samples p99 is still the middle one.
	assert.InDelta(t, 0.0005, qs[2].Value, 0.0005*s.RelativeAccuracy())
	e, ok := v.Estimate(keyLL, 0.99, 0.9)
	require.True(t, ok)
	assert.True(t, math.IsInf(e.High, 1), "three samples cannot bound p99 from above")
}

func TestMaxSeries(t *testing.T) {
	s := newStore(t, Config{MaxSeries: 2})
	require.NoError(t, s.Add(keyLL, 0.001, t0))
	require.NoError(t, s.Add(keyWL, 0.001, t0))
	assert.ErrorIs(t, s.Add(keyWW, 0.001, t0), ErrTooManySeries)
	assert.NoError(t, s.Add(keyLL, 0.001, t0), "existing keys still accept data")
}

func TestAddBatchMatchesAdd(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	one, batch := newStore(t, Config{}), newStore(t, Config{})
	keys := []Key{keyLL, keyWL, keyLW, keyWW}
	var obs []Observation
	for i := range 4000 {
		// Runs of equal keys exercise the shared-lock path.
		o := Observation{Key: keys[(i/7)%4], Value: lognormal(r, 0.001, 0.5), At: t0.Add(time.Duration(i) * 50 * time.Millisecond)}
		obs = append(obs, o)
		require.NoError(t, one.Add(o.Key, o.Value, o.At))
	}
	obs = append(obs, Observation{Key: keyLL, Value: -1, At: t0})
	added, err := batch.AddBatch(obs)
	assert.ErrorIs(t, err, ErrInvalidValue)
	assert.Equal(t, 4000, added)

	now := t0.Add(200 * time.Second)
	for _, w := range []time.Duration{time.Minute, 5 * time.Minute, time.Hour} {
		a, err := one.View(now, Window{Length: w})
		require.NoError(t, err)
		b, err := batch.View(now, Window{Length: w})
		require.NoError(t, err)
		qa, _ := a.Quantiles(DefaultQuantiles)
		qb, _ := b.Quantiles(DefaultQuantiles)
		assert.Equal(t, qa, qb, "window %v", w)
	}
}

func TestWindowSelection(t *testing.T) {
	s := newStore(t, Config{})
	now := t0.Add(25 * time.Second) // inside the third 10 s bucket
	for _, tc := range []struct {
		name      string
		w         Window
		width     time.Duration
		from, to  time.Time
		wantError error
	}{
		{"1m from the fine tier", Window{Length: time.Minute}, 10 * time.Second, t0.Add(-30 * time.Second), t0.Add(30 * time.Second), nil},
		{"5m is the longest the fine tier serves", Window{Length: 5 * time.Minute}, 10 * time.Second, t0.Add(-270 * time.Second), t0.Add(30 * time.Second), nil},
		{"6m falls to the coarse tier", Window{Length: 6 * time.Minute}, time.Minute, t0.Add(-5 * time.Minute), t0.Add(time.Minute), nil},
		{"1h behind the current 5m", Window{Length: time.Hour, Offset: 5 * time.Minute}, time.Minute, t0.Add(-64 * time.Minute), t0.Add(-4 * time.Minute), nil},
		{"too long", Window{Length: 2 * time.Hour}, 0, time.Time{}, time.Time{}, ErrWindowTooLong},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v, err := s.View(now, tc.w)
			if tc.wantError != nil {
				require.ErrorIs(t, err, tc.wantError)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tc.width, v.BucketWidth())
			assert.True(t, tc.from.Equal(v.From()), "from %v", v.From())
			assert.True(t, tc.to.Equal(v.To()), "to %v", v.To())
		})
	}
	_, err := s.View(now, Window{})
	assert.Error(t, err)
}

func TestWindowExpiry(t *testing.T) {
	s := newStore(t, Config{})
	for i := range 100 {
		require.NoError(t, s.Add(keyLL, 0.001*float64(i+1), t0.Add(time.Duration(i)*time.Millisecond)))
	}
	for _, tc := range []struct {
		name string
		now  time.Duration // after t0
		w    Window
		want int64
	}{
		{"fresh in 1m", time.Second, Window{Length: time.Minute}, 100},
		{"still in 5m", 4*time.Minute + 59*time.Second, Window{Length: 5 * time.Minute}, 100},
		{"gone from 5m", 5 * time.Minute, Window{Length: 5 * time.Minute}, 0},
		{"gone from 1m", 70 * time.Second, Window{Length: time.Minute}, 0},
		{"still in 1h", 59 * time.Minute, Window{Length: time.Hour}, 100},
		{"gone from 1h", 60 * time.Minute, Window{Length: time.Hour}, 0},
		{"in the trailing baseline", 30 * time.Minute, Window{Length: time.Hour, Offset: 5 * time.Minute}, 100},
		{"not in the current window behind the baseline", 30 * time.Minute, Window{Length: 5 * time.Minute}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v, err := s.View(t0.Add(tc.now), tc.w)
			require.NoError(t, err)
			assert.Equal(t, tc.want, v.Count(keyLL))
		})
	}

	t.Run("a newer bucket recycles the slot", func(t *testing.T) {
		// t0+5m maps to the same fine slot as t0 and replaces it.
		require.NoError(t, s.Add(keyLL, 0.002, t0.Add(5*time.Minute)))
		assert.ErrorIs(t, s.Add(keyLL, 0.002, t0.Add(-2*time.Hour)), ErrTooOld)
		assert.Equal(t, int64(1), count5m(t, s, t0.Add(5*time.Minute), keyLL))
		v, err := s.View(t0.Add(5*time.Minute), Window{Length: time.Hour})
		require.NoError(t, err)
		assert.Equal(t, int64(101), v.Count(keyLL), "the coarse tier still holds t0")
	})

	t.Run("late data goes to the tiers that still retain it", func(t *testing.T) {
		require.NoError(t, s.Add(keyLL, 0.003, t0.Add(time.Minute)))
		assert.Equal(t, int64(2), count5m(t, s, t0.Add(5*time.Minute), keyLL))
		// t0+9s is out of the fine ring's span (newest is t0+5m) but the
		// coarse tier takes it.
		require.NoError(t, s.Add(keyLL, 0.003, t0.Add(9*time.Second)))
		assert.Equal(t, int64(2), count5m(t, s, t0.Add(5*time.Minute), keyLL))
		v, err := s.View(t0.Add(5*time.Minute), Window{Length: time.Hour})
		require.NoError(t, err)
		assert.Equal(t, int64(103), v.Count(keyLL))
	})

	t.Run("after Expire old data is refused even for a free slot", func(t *testing.T) {
		s := newStore(t, Config{})
		require.NoError(t, s.Add(keyLL, 0.001, t0))
		s.Expire(t0.Add(30 * time.Minute))
		require.NoError(t, s.Add(keyLL, 0.001, t0.Add(-20*time.Minute)), "still in the coarse span")
		assert.ErrorIs(t, s.Add(keyLL, 0.001, t0.Add(-40*time.Minute)), ErrTooOld)
		s.Expire(t0.Add(3 * time.Hour))
		require.NoError(t, s.Add(keyLL, 0.001, t0.Add(-20*time.Minute)), "a new series accepts anything once")
	})
}

func TestExpireFreesMemory(t *testing.T) {
	s := newStore(t, Config{})
	r := rand.New(rand.NewPCG(3, 4))
	const nSeries = 200
	keys := make([]Key, nSeries)
	for i := range keys {
		keys[i] = Key{Check: "http", Phase: "total", SrcOS: "linux", DstOS: string(rune('a'+i%26)) + string(rune('a'+i/26))}
	}
	heap := func() uint64 {
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return ms.HeapAlloc
	}
	before := heap()
	// Five minutes of data: 30 fine and 5 coarse buckets per series.
	for sec := range 300 {
		for _, k := range keys {
			require.NoError(t, s.Add(k, lognormal(r, 0.002, 1), t0.Add(time.Duration(sec)*time.Second)))
		}
	}
	st := s.Stats()
	assert.Equal(t, StoreStats{Series: nSeries, Buckets: nSeries * 35}, st)
	full := heap()

	freed := s.Expire(t0.Add(10 * time.Minute)) // past the fine tier only
	assert.Equal(t, nSeries*30, freed)
	assert.Equal(t, StoreStats{Series: nSeries, Buckets: nSeries * 5}, s.Stats())
	fineGone := heap()

	assert.Equal(t, nSeries*5, s.Expire(t0.Add(2*time.Hour)))
	assert.Equal(t, StoreStats{}, s.Stats())
	empty := heap()

	used := float64(full) - float64(before)
	t.Logf("heap: %.0f KB for %d series (%.1f KB/series), %.0f KB after fine expiry, %.0f KB after full expiry",
		used/1024, nSeries, used/nSeries/1024, (float64(fineGone)-float64(before))/1024, (float64(empty)-float64(before))/1024)
	assert.Less(t, float64(fineGone)-float64(before), 0.5*used, "freeing 30 of 35 buckets returns most memory")
	assert.Less(t, float64(empty)-float64(before), 0.1*used)

	// A series removed by Expire comes back on the next Add.
	require.NoError(t, s.Add(keys[0], 0.001, t0.Add(2*time.Hour)))
	assert.Equal(t, int64(1), count5m(t, s, t0.Add(2*time.Hour), keys[0]))
}

func TestConcurrentUse(t *testing.T) {
	s := newStore(t, Config{})
	keys := []Key{keyLL, keyWL, keyLW, keyWW}
	const writers, perWriter = 8, 3000
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(w), 9))
			for i := range perWriter {
				at := t0.Add(time.Duration(i) * 50 * time.Millisecond) // 150 s in all
				if i%2 == 0 {
					assert.NoError(t, s.Add(keys[i%4], lognormal(r, 0.001, 0.4), at))
				} else {
					_, err := s.AddBatch([]Observation{{Key: keys[i%4], Value: lognormal(r, 0.001, 0.4), At: at}})
					assert.NoError(t, err)
				}
			}
		}()
	}
	// Readers and housekeeping run alongside.
	stop := make(chan struct{})
	var rg sync.WaitGroup
	rg.Add(1)
	other := newStore(t, Config{})
	go func() {
		defer rg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			_, err := s.ComputeDeltas(t0.Add(time.Minute), Window{Length: 5 * time.Minute}, DeltaOptions{})
			assert.NoError(t, err)
			_, err = s.Regressions(t0.Add(time.Minute), RegressionOptions{})
			assert.NoError(t, err)
			s.Expire(t0.Add(time.Minute))
			assert.NoError(t, other.Merge(s))
			_ = s.Snapshot()
		}
	}()
	wg.Wait()
	close(stop)
	rg.Wait()

	var total int64
	for _, k := range keys {
		total += count5m(t, s, t0.Add(150*time.Second), k)
	}
	assert.Equal(t, int64(writers*perWriter), total)
}

func TestExpireRacesAdd(t *testing.T) {
	// Expire removing a series while writers hold it must not lose their data.
	s := newStore(t, Config{Tiers: []Tier{{Width: time.Second, Buckets: 2}}})
	var wg sync.WaitGroup
	var added [4]int64
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 2000 {
				if assert.NoError(t, s.Add(keyLL, 0.001, t0)) {
					added[w]++
				}
			}
		}()
	}
	for range 200 {
		s.Expire(t0) // never frees t0's bucket, but walks and locks every series
		s.Expire(t0.Add(-time.Hour))
	}
	wg.Wait()
	v, err := s.View(t0, Window{Length: time.Second})
	require.NoError(t, err)
	assert.Equal(t, added[0]+added[1]+added[2]+added[3], v.Count(keyLL))

	// Now alternate: expire everything while writers keep adding at t0+1h.
	later := t0.Add(time.Hour)
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 2000 {
				assert.NoError(t, s.Add(keyWL, 0.001, later))
			}
		}()
	}
	for range 200 {
		s.Expire(later.Add(time.Hour)) // frees keyWL repeatedly while it is written
	}
	wg.Wait()
	s.Expire(later.Add(time.Hour))
	assert.Equal(t, StoreStats{}, s.Stats())
}
