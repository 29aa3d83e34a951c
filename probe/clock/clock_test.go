package clock

import (
	"runtime"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestDefaultClockIsFineGrained(t *testing.T) {
	c := Default()
	want := map[string]string{"windows": "qpc"}[runtime.GOOS]
	if want == "" {
		want = "monotonic"
	}
	assert.Equal(t, want, c.Name())

	res := MeasureResolution(c, 200*time.Millisecond)
	wall := MeasureResolution(WallClock(), 200*time.Millisecond)
	t.Logf("%s step %v (%d steps); time.Now step %v (%d steps)", res.Clock, res.Step, res.Steps, wall.Step, wall.Steps)
	require.Positive(t, res.Steps, "probe clock never advanced")
	// Pod RTTs are tens of microseconds; the probe clock must resolve them.
	assert.Less(t, res.Step, 10*time.Microsecond)
}

func TestInstantsAdvanceWithRealTime(t *testing.T) {
	c := Default()
	start := c.Now()
	wallStart := time.Now()
	time.Sleep(20 * time.Millisecond)
	got, wall := Since(c, start), time.Since(wallStart)
	// Both clocks run at real speed: they agree far better than 25%, even on a coarse time.Now.
	assert.InDelta(t, wall.Seconds(), got.Seconds(), wall.Seconds()/4, "clock %s vs time.Since", c.Name())
}

// stepClock advances by a fixed step every tick reads, like an interrupt-tick clock.
type stepClock struct {
	reads, perStep int
	step           time.Duration
}

func (s *stepClock) Now() Instant {
	s.reads++
	return Instant(time.Duration(s.reads/s.perStep) * s.step)
}
func (*stepClock) Name() string { return "step" }

func TestMeasureResolutionFindsTheStep(t *testing.T) {
	c := &stepClock{perStep: 1000, step: 15625 * time.Microsecond}
	res := MeasureResolution(c, time.Second)
	assert.Equal(t, 15625*time.Microsecond, res.Step)
	assert.Equal(t, 64, res.Steps)
}

func TestMeasureResolutionOfAFrozenClock(t *testing.T) {
	res := MeasureResolution(&stepClock{perStep: 1 << 60, step: time.Second}, 5*time.Millisecond)
	assert.Zero(t, res.Steps)
	assert.Equal(t, 5*time.Millisecond, res.Step, "a clock that never moved is reported as at least the budget")
}
