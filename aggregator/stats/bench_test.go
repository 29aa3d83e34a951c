package stats

import (
	"fmt"
	"math/rand/v2"
	"runtime"
	"sync/atomic"
	"testing"
	"time"
)

// realisticKeys is 6 checks x 4 phases x 4 OS pairs = 96 series.
func realisticKeys() []Key {
	checks := []string{"dns", "tcp", "http", "service", "netpol-allow", "netpol-deny"}
	phases := []string{"resolve_system", "connect", "first_byte", "total"}
	oses := []string{"linux", "windows"}
	var keys []Key
	for _, c := range checks {
		for _, p := range phases {
			for _, src := range oses {
				for _, dst := range oses {
					keys = append(keys, Key{Check: c, Phase: p, SrcOS: src, DstOS: dst})
				}
			}
		}
	}
	return keys
}

// BenchmarkAdd is one goroutine adding to 96 series with time advancing
// 1 µs per value (~1M results/s), so bucket rotation is included.
func BenchmarkAdd(b *testing.B) {
	s := newStore(b, Config{})
	keys := realisticKeys()
	vals := benchValues()
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		_ = s.Add(keys[i%len(keys)], vals[i%len(vals)], t0.Add(time.Duration(i)*time.Microsecond))
	}
}

// BenchmarkAddParallel is GOMAXPROCS goroutines adding, each with its own
// clock as separate ingest connections would: to random series shared by all
// goroutines, and to disjoint series (each goroutine owns a slice of keys),
// which isolates lock cost from cache-line contention on shared series.
func BenchmarkAddParallel(b *testing.B) {
	for _, disjoint := range []bool{false, true} {
		name := "shared-keys"
		if disjoint {
			name = "disjoint-keys"
		}
		b.Run(name, func(b *testing.B) {
			s := newStore(b, Config{})
			keys := realisticKeys()
			vals := benchValues()
			var worker atomic.Uint64
			procs := runtime.GOMAXPROCS(0)
			per := len(keys) / procs
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				w := worker.Add(1)
				r := rand.New(rand.NewPCG(w, 2))
				for i := 0; pb.Next(); i++ {
					k := r.IntN(len(keys))
					if disjoint {
						k = int(w-1)%procs*per + k%per
					}
					_ = s.Add(keys[k], vals[i%len(vals)], t0.Add(time.Duration(i)*time.Microsecond))
				}
			})
		})
	}
}

// BenchmarkAddBatch adds batches of 64 observations of one key at a time;
// ns/op is per observation.
func BenchmarkAddBatch(b *testing.B) {
	s := newStore(b, Config{})
	keys := realisticKeys()
	vals := benchValues()
	const batch = 64
	obs := make([]Observation, batch)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i += batch {
		k := keys[(i/batch)%len(keys)]
		for j := range obs {
			obs[j] = Observation{Key: k, Value: vals[(i+j)%len(vals)], At: t0.Add(time.Duration(i+j) * time.Microsecond)}
		}
		_, _ = s.AddBatch(obs)
	}
}

func benchValues() []float64 {
	r := rand.New(rand.NewPCG(1, 1))
	vals := make([]float64, 4096)
	for i := range vals {
		vals[i] = lognormal(r, 0.001, 0.5)
	}
	return vals
}

// fillRealistic feeds every series for the full coarse retention (65 min)
// at perSec values per second, with Windows paths ~8 ms slower.
func fillRealistic(tb testing.TB, s *Store, keys []Key, perSec int) time.Time {
	r := rand.New(rand.NewPCG(7, 7))
	const span = 65 * time.Minute
	step := time.Second / time.Duration(perSec)
	for at := t0; at.Before(t0.Add(span)); at = at.Add(step) {
		for _, k := range keys {
			v := lognormal(r, 0.0005, 0.5)
			if k.SrcOS == "windows" || k.DstOS == "windows" {
				v += 0.008
			}
			if err := s.Add(k, v, at); err != nil {
				tb.Fatal(err)
			}
		}
	}
	return t0.Add(span)
}

// BenchmarkComputeDeltas: 96 series at 10 values/s each (960 results/s into
// the aggregator), every bucket of both tiers full.
func BenchmarkComputeDeltas(b *testing.B) {
	s := newStore(b, Config{})
	now := fillRealistic(b, s, realisticKeys(), 10)
	for _, w := range []time.Duration{time.Minute, 5 * time.Minute, time.Hour} {
		b.Run(fmt.Sprint("window=", w), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				ds, err := s.ComputeDeltas(now, Window{Length: w}, DeltaOptions{})
				if err != nil || len(ds) != 6*4*3*3 {
					b.Fatal(err, len(ds))
				}
			}
		})
	}
	b.Run("regressions", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := s.Regressions(now, RegressionOptions{}); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkMemoryPerSeries reports the heap held per series once every
// bucket of both tiers is populated, at two ingest rates.
func BenchmarkMemoryPerSeries(b *testing.B) {
	for _, perSec := range []int{1, 10} {
		b.Run(fmt.Sprint("values/s=", perSec), func(b *testing.B) {
			keys := realisticKeys()
			var bytes float64
			for b.Loop() {
				runtime.GC()
				var before, after runtime.MemStats
				runtime.ReadMemStats(&before)
				s := newStore(b, Config{})
				fillRealistic(b, s, keys, perSec)
				runtime.GC()
				runtime.ReadMemStats(&after)
				bytes = float64(after.HeapAlloc) - float64(before.HeapAlloc)
				runtime.KeepAlive(s)
			}
			b.ReportMetric(bytes/float64(len(keys)), "B/series")
			b.ReportMetric(0, "ns/op")
		})
	}
}
