package aggregator

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestDedupTTL(t *testing.T) {
	d := newDedup(16*time.Minute, 1000) // 1-minute generations
	now := t0
	for i := range 20 {
		require.True(t, d.claim(hashID(fmt.Sprint("b", i)), now.Add(time.Duration(i)*time.Minute)))
	}
	now = now.Add(19 * time.Minute)
	d.compact()
	for i := range 20 {
		// Within the TTL (15-16 generations back) IDs are remembered.
		seen := !d.claim(hashID(fmt.Sprint("b", i)), now)
		assert.Equal(t, i >= 4, seen, "b%d claimed at -%d min", i, 19-i)
	}
	assert.InDelta(t, (16 * time.Minute).Seconds(), d.horizon(now).Seconds(), 60)
}

func TestDedupBounded(t *testing.T) {
	d := newDedup(16*time.Minute, 100)
	for i := range 1000 {
		d.claim(hashID(fmt.Sprint("b", i)), t0.Add(time.Duration(i)*time.Second))
	}
	now := t0.Add(1000 * time.Second)
	assert.LessOrEqual(t, d.size(), 100+60, "at most maxIDs plus the current generation")
	assert.Less(t, d.horizon(now), 5*time.Minute, "evictions shorten the horizon")
	assert.False(t, d.claim(hashID("b999"), now), "the newest IDs survive")
}

func TestDedupSnapshotMerge(t *testing.T) {
	src := newDedup(time.Hour, 1<<20)
	for i := range 500 {
		src.claim(hashID(fmt.Sprint("b", i)), t0.Add(time.Duration(i)*5*time.Second))
	}
	src.compact() // some generations as slices, the newest as a map
	now := t0.Add(2500 * time.Second)
	dst := newDedup(time.Hour, 1<<20)
	dst.claim(hashID("own"), now)
	dst.compact()
	dst.merge(src.snapshot(), now)
	assert.Equal(t, 501, dst.size())
	for i := range 500 {
		assert.False(t, dst.claim(hashID(fmt.Sprint("b", i)), now), "b%d", i)
	}
	assert.False(t, dst.claim(hashID("own"), now))
	dst.compact()
	assert.False(t, dst.claim(hashID("b0"), now))
	// Merged IDs expire when they would have on the source.
	later := t0.Add(time.Hour + 10*time.Minute)
	assert.True(t, dst.claim(hashID("b0"), later))
	assert.False(t, dst.claim(hashID("b499"), later))
}

// BenchmarkDedupClaim is the per-batch cost with a full hour of IDs.
func BenchmarkDedupClaim(b *testing.B) {
	d := newDedup(time.Hour, 1<<24)
	const rate = 2500 // batches/s of 5,000 agents flushing every 2 s
	for i := range rate * 3600 / 10 {
		d.claim(uint64(i)*0x9E3779B97F4A7C15, t0.Add(time.Duration(i)*10*time.Second/rate))
	}
	d.compact()
	now := t0.Add(time.Hour)
	b.ResetTimer()
	for i := range b.N {
		d.claim(uint64(i+1<<40)*0x9E3779B97F4A7C15, now)
	}
}
