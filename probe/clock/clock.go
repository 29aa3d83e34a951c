// Package clock is the time source every probe phase is measured with.
//
// On Linux it is Go's monotonic clock (clock_gettime, nanoseconds). On Windows
// Go's time.Now advances with the interrupt tick (0.5-15.6 ms), which hides the
// sub-millisecond RTTs between pods, so Windows builds read
// QueryPerformanceCounter instead. MeasureResolution reports the step each
// clock really takes on this machine, so a coarse clock is visible, not silent.
package clock

import (
	"slices"
	"time"
)

// Clock reads a monotonic instant. Instants from one Clock can be subtracted;
// they mean nothing across clocks or processes.
type Clock interface {
	// Now returns the current instant.
	Now() Instant
	// Name identifies the clock in results and metrics: "monotonic" or "qpc".
	Name() string
}

// Instant is a reading of a Clock, in nanoseconds from an arbitrary origin.
type Instant int64

// Sub returns the time elapsed from earlier to i.
func (i Instant) Sub(earlier Instant) time.Duration { return time.Duration(i - earlier) }

// Since returns the time elapsed on c since start.
func Since(c Clock, start Instant) time.Duration { return c.Now().Sub(start) }

// Default returns the clock probes on this OS should use.
func Default() Clock { return defaultClock() }

// Monotonic is Go's runtime monotonic clock (what time.Since uses).
type Monotonic struct{}

var origin = time.Now()

func (Monotonic) Now() Instant { return Instant(time.Since(origin)) }
func (Monotonic) Name() string { return "monotonic" }

// Resolution is the measured behaviour of a clock.
type Resolution struct {
	Clock string `json:"clock"`
	// Step is the median nonzero difference between consecutive readings: the
	// smallest interval the clock can tell apart in practice (for a fine clock
	// this is the cost of one read).
	Step time.Duration `json:"stepNs"`
	// Steps is how many distinct steps were observed; few steps over the
	// budget means Step is only a lower bound.
	Steps int `json:"steps"`
}

// wallClock reads time.Now, the clock Go code uses by default, so its
// resolution can be shown beside the probe clock.
type wallClock struct{}

func (wallClock) Now() Instant { return Instant(time.Now().UnixNano()) }
func (wallClock) Name() string { return "time.Now" }

// WallClock is time.Now as a Clock, for comparison only; probes must not time with it.
func WallClock() Clock { return wallClock{} }

// MeasureResolution spins on c for up to budget (or until 64 steps are seen)
// and reports the median step. It busy-waits: call it once at startup.
func MeasureResolution(c Clock, budget time.Duration) Resolution {
	const wantSteps = 64
	steps := make([]time.Duration, 0, wantSteps)
	deadline := time.Now().Add(budget)
	prev := c.Now()
	for n := 0; len(steps) < wantSteps; n++ {
		now := c.Now()
		if now != prev {
			steps = append(steps, now.Sub(prev))
			prev = now
		}
		// time.Now is only consulted every 256 reads so the loop measures c, not the deadline check.
		if n&0xff == 0 && time.Now().After(deadline) {
			break
		}
	}
	r := Resolution{Clock: c.Name(), Steps: len(steps)}
	if len(steps) == 0 {
		r.Step = budget // never moved: at best this coarse
		return r
	}
	slices.Sort(steps)
	r.Step = steps[len(steps)/2]
	return r
}
