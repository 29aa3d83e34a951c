package stats

import (
	"cmp"
	"errors"
	"fmt"
	"math"
	"slices"

	"github.com/DataDog/sketches-go/ddsketch"
	"github.com/DataDog/sketches-go/ddsketch/store"
)

// Snapshot is a serialisable copy of a Store's buckets, for a replica to
// merge (encoding/json and encoding/gob handle it as is). Merging is exact:
// buckets are aligned to the Unix epoch and sketches with the same mapping
// merge bin by bin, so two replicas fed halves of the results and merged give
// the same sketches as one replica fed everything.
type Snapshot struct {
	RelativeAccuracy float64
	Tiers            []Tier // finest first, as Store.Tiers
	Series           []SeriesSnapshot
}

// SeriesSnapshot holds one series' live buckets.
type SeriesSnapshot struct {
	Key     Key
	Buckets []BucketSnapshot
}

// BucketSnapshot is one bucket of one tier.
type BucketSnapshot struct {
	Tier   int    // index into Snapshot.Tiers
	Epoch  int64  // bucket start since the Unix epoch, in tier widths
	Sketch []byte // DDSketch binary encoding, index mapping included
}

// Snapshot copies every live bucket.
func (s *Store) Snapshot() *Snapshot {
	sn := &Snapshot{RelativeAccuracy: s.acc, Tiers: s.Tiers()}
	keys, m := s.snapshotSeries()
	for _, k := range keys {
		sr := m[k]
		ss := SeriesSnapshot{Key: k}
		sr.mu.Lock()
		for ti := range sr.rings {
			for _, b := range sr.rings[ti].buckets {
				if b.sk == nil || b.sk.IsEmpty() {
					continue
				}
				var enc []byte
				b.sk.Encode(&enc, false)
				ss.Buckets = append(ss.Buckets, BucketSnapshot{Tier: ti, Epoch: b.epoch, Sketch: enc})
			}
		}
		sr.mu.Unlock()
		if len(ss.Buckets) > 0 {
			slices.SortFunc(ss.Buckets, func(a, b BucketSnapshot) int {
				return cmp.Or(cmp.Compare(a.Tier, b.Tier), cmp.Compare(a.Epoch, b.Epoch))
			})
			sn.Series = append(sn.Series, ss)
		}
	}
	return sn
}

// pendingBucket is a sketch to merge into one bucket.
type pendingBucket struct {
	tier  int
	epoch int64
	sk    *ddsketch.DDSketch
}

// MergeSnapshot adds a snapshot's buckets to s. The snapshot must come from a
// Store with the same relative accuracy and tiers. Buckets older than what s
// retains are dropped, as Add would drop them.
func (s *Store) MergeSnapshot(sn *Snapshot) error {
	if err := s.compatible(sn.RelativeAccuracy, sn.Tiers); err != nil {
		return err
	}
	provider := store.Provider(func() store.Store { return store.NewCollapsingLowestDenseStore(s.maxBins) })
	// Decode and check everything before merging anything: a snapshot that
	// fails halfway must not leave half of it merged (a retry would count
	// that half twice).
	decoded := make([][]pendingBucket, len(sn.Series))
	for i, ss := range sn.Series {
		pending := make([]pendingBucket, 0, len(ss.Buckets))
		for _, b := range ss.Buckets {
			if b.Tier < 0 || b.Tier >= len(s.tiers) {
				return fmt.Errorf("stats: snapshot of %v: tier %d out of range", ss.Key, b.Tier)
			}
			sk, err := ddsketch.DecodeDDSketch(b.Sketch, provider, nil)
			if err != nil {
				return fmt.Errorf("stats: snapshot of %v: %w", ss.Key, err)
			}
			if !sk.Equals(s.mapping) {
				return fmt.Errorf("stats: snapshot of %v: sketch mapping differs", ss.Key)
			}
			if !sk.GetNegativeValueStore().IsEmpty() {
				return fmt.Errorf("stats: snapshot of %v: negative durations", ss.Key)
			}
			pending = append(pending, pendingBucket{tier: b.Tier, epoch: b.Epoch, sk: sk})
		}
		decoded[i] = pending
	}
	for i, ss := range sn.Series {
		if err := s.mergeBuckets(ss.Key, decoded[i]); err != nil {
			return err
		}
	}
	return nil
}

// Merge adds every bucket of o to s. o must have the same relative accuracy
// and tiers; it is read series by series and may keep receiving data.
func (s *Store) Merge(o *Store) error {
	if o == s {
		return errors.New("stats: cannot merge a store into itself")
	}
	if err := s.compatible(o.acc, o.Tiers()); err != nil {
		return err
	}
	keys, m := o.snapshotSeries()
	for _, k := range keys {
		sr := m[k]
		var pending []pendingBucket
		// Copy under o's lock, merge under s's: never hold both, so
		// concurrent a.Merge(b) and b.Merge(a) cannot deadlock.
		sr.mu.Lock()
		for ti := range sr.rings {
			for _, b := range sr.rings[ti].buckets {
				if b.sk != nil && !b.sk.IsEmpty() {
					pending = append(pending, pendingBucket{tier: ti, epoch: b.epoch, sk: b.sk.Copy()})
				}
			}
		}
		sr.mu.Unlock()
		if err := s.mergeBuckets(k, pending); err != nil {
			return err
		}
	}
	return nil
}

func (s *Store) mergeBuckets(k Key, pending []pendingBucket) error {
	if len(pending) == 0 {
		return nil
	}
	for {
		sr, err := s.get(k)
		if err != nil {
			return err
		}
		sr.mu.Lock()
		if sr.dead.Load() {
			sr.mu.Unlock()
			continue
		}
		for _, p := range pending {
			t := s.tiers[p.tier]
			if b := s.slot(&sr.rings[p.tier], t, p.epoch*t.width); b != nil {
				_ = b.sk.MergeWith(p.sk) // mapping checked by the caller
			}
		}
		sr.mu.Unlock()
		return nil
	}
}

func (s *Store) compatible(acc float64, tiers []Tier) error {
	if math.Abs(acc-s.acc) > 1e-12 || !slices.Equal(tiers, s.Tiers()) {
		return fmt.Errorf("stats: incompatible store: accuracy %v tiers %v, want %v %v", acc, tiers, s.acc, s.Tiers())
	}
	return nil
}
