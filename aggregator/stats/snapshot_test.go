package stats

import (
	"encoding/json"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// halves feeds one store everything and two others alternating halves,
// over 20 minutes and four OS pairs, including zeros.
func halves(t *testing.T) (all, a, b *Store) {
	all, a, b = newStore(t, Config{}), newStore(t, Config{}), newStore(t, Config{})
	r := rand.New(rand.NewPCG(6, 6))
	keys := []Key{keyLL, keyWL, keyLW, keyWW}
	for i := range 40000 {
		k := keys[r.IntN(len(keys))]
		v := lognormal(r, 0.001, 0.8)
		if i%97 == 0 {
			v = 0
		}
		at := t0.Add(time.Duration(i) * 30 * time.Millisecond)
		require.NoError(t, all.Add(k, v, at))
		half := a
		if r.IntN(2) == 1 {
			half = b
		}
		require.NoError(t, half.Add(k, v, at))
	}
	return all, a, b
}

func assertSameWindows(t *testing.T, want, got *Store, now time.Time) {
	t.Helper()
	for _, w := range []Window{{Length: time.Minute}, {Length: 5 * time.Minute}, {Length: time.Hour}, {Length: 10 * time.Minute, Offset: 5 * time.Minute}} {
		vw, err := want.View(now, w)
		require.NoError(t, err)
		vg, err := got.View(now, w)
		require.NoError(t, err)
		require.Equal(t, vw.Keys(), vg.Keys())
		qw, err := vw.Quantiles([]float64{0.01, 0.25, 0.5, 0.9, 0.99, 0.999})
		require.NoError(t, err)
		qg, err := vg.Quantiles([]float64{0.01, 0.25, 0.5, 0.9, 0.99, 0.999})
		require.NoError(t, err)
		// Same mapping and bucket boundaries: bins add exactly.
		assert.Equal(t, qw, qg, "window %+v", w)
		dw, err := vw.Deltas(DeltaOptions{})
		require.NoError(t, err)
		dg, err := vg.Deltas(DeltaOptions{})
		require.NoError(t, err)
		assert.Equal(t, dw, dg, "window %+v", w)
	}
}

func TestMergeEquivalence(t *testing.T) {
	all, a, b := halves(t)
	now := t0.Add(20 * time.Minute)

	t.Run("Merge", func(t *testing.T) {
		merged := newStore(t, Config{})
		require.NoError(t, merged.Merge(a))
		require.NoError(t, merged.Merge(b))
		assertSameWindows(t, all, merged, now)
	})

	t.Run("Merge into a replica that has data", func(t *testing.T) {
		_, a, b := halves(t)
		require.NoError(t, a.Merge(b))
		assertSameWindows(t, all, a, now)
	})

	t.Run("Snapshot through JSON", func(t *testing.T) {
		merged := newStore(t, Config{})
		for _, src := range []*Store{a, b} {
			raw, err := json.Marshal(src.Snapshot())
			require.NoError(t, err)
			var sn Snapshot
			require.NoError(t, json.Unmarshal(raw, &sn))
			require.NoError(t, merged.MergeSnapshot(&sn))
		}
		assertSameWindows(t, all, merged, now)
		assert.Equal(t, all.Stats(), merged.Stats())
	})
}

func TestMergeDropsWhatTheReceiverNoLongerRetains(t *testing.T) {
	old := newStore(t, Config{})
	require.NoError(t, old.Add(keyLL, 0.001, t0))
	recv := newStore(t, Config{})
	require.NoError(t, recv.Add(keyLL, 0.002, t0.Add(2*time.Hour)))
	require.NoError(t, recv.Merge(old))
	v, err := recv.View(t0.Add(2*time.Hour), Window{Length: time.Hour})
	require.NoError(t, err)
	assert.Equal(t, int64(1), v.Count(keyLL))
	assert.Equal(t, StoreStats{Series: 1, Buckets: 2}, recv.Stats(), "the old buckets were not stored")
}

func TestMergeRejects(t *testing.T) {
	s := newStore(t, Config{})
	require.NoError(t, s.Add(keyLL, 0.001, t0))
	good := s.Snapshot()
	require.Len(t, good.Series, 1)

	corrupt := func(f func(sn *Snapshot)) *Snapshot {
		raw, err := json.Marshal(good)
		require.NoError(t, err)
		var sn Snapshot
		require.NoError(t, json.Unmarshal(raw, &sn))
		f(&sn)
		return &sn
	}
	otherAcc := newStore(t, Config{RelativeAccuracy: 0.005})
	require.NoError(t, otherAcc.Add(keyLL, 0.001, t0))
	otherTiers := newStore(t, Config{Tiers: []Tier{{Width: time.Minute, Buckets: 10}}})

	for _, tc := range []struct {
		name string
		run  func(dst *Store) error
	}{
		{"itself", func(dst *Store) error { return dst.Merge(dst) }},
		{"other accuracy", func(dst *Store) error { return dst.Merge(otherAcc) }},
		{"other tiers", func(dst *Store) error { return dst.Merge(otherTiers) }},
		{"accuracy field lies", func(dst *Store) error {
			sn := otherAcc.Snapshot()
			sn.RelativeAccuracy = dst.RelativeAccuracy()
			return dst.MergeSnapshot(sn)
		}},
		{"tier out of range", func(dst *Store) error {
			return dst.MergeSnapshot(corrupt(func(sn *Snapshot) { sn.Series[0].Buckets[0].Tier = 7 }))
		}},
		{"negative durations", func(dst *Store) error {
			sk, _ := dst.newSketch()
			require.NoError(t, sk.Add(-0.001))
			var enc []byte
			sk.Encode(&enc, false)
			return dst.MergeSnapshot(corrupt(func(sn *Snapshot) { sn.Series[0].Buckets[0].Sketch = enc }))
		}},
		{"garbage sketch", func(dst *Store) error {
			return dst.MergeSnapshot(corrupt(func(sn *Snapshot) { sn.Series[0].Buckets[0].Sketch = []byte{0xff, 0x01} }))
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dst := newStore(t, Config{})
			assert.Error(t, tc.run(dst))
		})
	}
}

// A snapshot with one bad series merges nothing, so a retry cannot count the
// good part twice.
func TestMergeSnapshotIsAllOrNothing(t *testing.T) {
	src := newStore(t, Config{})
	require.NoError(t, src.Add(keyLL, 0.001, t0))
	require.NoError(t, src.Add(keyWW, 0.002, t0))
	sn := src.Snapshot()
	require.Len(t, sn.Series, 2)
	last := &sn.Series[len(sn.Series)-1]
	last.Buckets[0].Sketch = []byte{0xff, 0xff, 0xff} // undecodable

	dst := newStore(t, Config{})
	require.Error(t, dst.MergeSnapshot(sn))
	assert.Zero(t, count5m(t, dst, t0, keyLL))
	assert.Zero(t, count5m(t, dst, t0, keyWW))
}
