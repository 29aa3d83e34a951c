package scheduler

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/xosprobe/xosprobe/probe"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// recorder counts runs per key and tracks the in-flight high-water mark.
type recorder struct {
	mu       sync.Mutex
	runs     map[string]int
	canceled map[string]int // runs ended by cancellation (removal, stop)
	expired  map[string]int // runs ended by their deadline
	inFlight atomic.Int64
	peak     atomic.Int64
	hold     time.Duration // how long each run blocks (until ctx ends, if longer)
}

func newRecorder(hold time.Duration) *recorder {
	return &recorder{runs: map[string]int{}, canceled: map[string]int{}, expired: map[string]int{}, hold: hold}
}

func (r *recorder) run(ctx context.Context, j Job) {
	n := r.inFlight.Add(1)
	defer r.inFlight.Add(-1)
	for {
		p := r.peak.Load()
		if n <= p || r.peak.CompareAndSwap(p, n) {
			break
		}
	}
	select {
	case <-ctx.Done():
		r.mu.Lock()
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			r.expired[j.Key]++
		} else {
			r.canceled[j.Key]++
		}
		r.mu.Unlock()
	case <-time.After(r.hold):
	}
	r.mu.Lock()
	r.runs[j.Key]++
	r.mu.Unlock()
}

func (r *recorder) count(key string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.runs[key]
}

func job(key string) Job {
	return Job{Key: key, Check: probe.CheckTCP, Target: probe.Target{Addr: key + ":80"}}
}

func start(t *testing.T, s *Scheduler) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { s.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
}

func TestJobsRunRepeatedly(t *testing.T) {
	rec := newRecorder(0)
	s := New(Config{Interval: 20 * time.Millisecond, Jitter: 0.2}, rec.run, nil, nil)
	s.Update([]Job{job("a"), job("b")}) // before Run: started when Run begins
	start(t, s)
	require.Eventually(t, func() bool { return rec.count("a") >= 3 && rec.count("b") >= 3 }, 5*time.Second, 5*time.Millisecond)
}

func TestRemovedJobIsCanceledMidRun(t *testing.T) {
	rec := newRecorder(time.Hour) // runs block until canceled or expired
	// A deadline (at most the interval) long enough that no run expires
	// while the test looks, even on a loaded machine.
	s := New(Config{Interval: 2 * time.Second}, rec.run, nil, nil)
	start(t, s)
	s.Update([]Job{job("a"), job("b")})
	require.Eventually(t, func() bool { return rec.inFlight.Load() == 2 }, 5*time.Second, time.Millisecond)
	s.Update([]Job{job("b")})
	require.Eventually(t, func() bool { return rec.count("a") == 1 }, 5*time.Second, time.Millisecond)
	rec.mu.Lock()
	assert.Equal(t, 1, rec.canceled["a"], "the in-flight run of a removed job is canceled")
	assert.Zero(t, rec.canceled["b"], "a kept job is not disturbed")
	rec.mu.Unlock()
}

func TestPerRunTimeout(t *testing.T) {
	rec := newRecorder(time.Hour)
	s := New(Config{Interval: 50 * time.Millisecond, Timeout: 5 * time.Millisecond}, rec.run, nil, nil)
	start(t, s)
	s.Update([]Job{job("a")})
	require.Eventually(t, func() bool { return rec.count("a") >= 2 }, 5*time.Second, time.Millisecond)
	rec.mu.Lock()
	assert.Equal(t, rec.runs["a"], rec.expired["a"], "every run ended by its deadline")
	rec.mu.Unlock()
}

// A job's own Timeout shortens its runs' deadline, never lengthens it.
func TestJobTimeoutShortensTheRunDeadline(t *testing.T) {
	var mu sync.Mutex
	left := map[string]time.Duration{} // deadline left when each job's first run began
	run := func(ctx context.Context, j Job) {
		d, ok := ctx.Deadline()
		assert.True(t, ok, "every run has a deadline")
		mu.Lock()
		if _, seen := left[j.Key]; !seen {
			left[j.Key] = time.Until(d)
		}
		mu.Unlock()
	}
	s := New(Config{Interval: time.Second, Timeout: 500 * time.Millisecond}, run, nil, nil)
	short, long := job("short"), job("long")
	short.Timeout, long.Timeout = 20*time.Millisecond, 2*time.Second
	s.Update([]Job{short, long, job("default")})
	start(t, s)
	require.Eventually(t, func() bool { mu.Lock(); defer mu.Unlock(); return len(left) == 3 }, 5*time.Second, time.Millisecond)
	mu.Lock()
	defer mu.Unlock()
	assert.LessOrEqual(t, left["short"], 20*time.Millisecond)
	for _, key := range []string{"long", "default"} {
		assert.Greater(t, left[key], 20*time.Millisecond, key)
		assert.LessOrEqual(t, left[key], 500*time.Millisecond, "%s: Config.Timeout caps the run", key)
	}
}

func TestChangedTargetRestartsTheLoop(t *testing.T) {
	var mu sync.Mutex
	var seen []string
	s := New(Config{Interval: 10 * time.Millisecond}, func(_ context.Context, j Job) {
		mu.Lock()
		seen = append(seen, j.Target.Addr)
		mu.Unlock()
	}, nil, nil)
	start(t, s)
	s.Update([]Job{{Key: "a", Check: probe.CheckTCP, Target: probe.Target{Addr: "10.0.0.1:80"}}})
	require.Eventually(t, func() bool { mu.Lock(); defer mu.Unlock(); return len(seen) > 0 }, 5*time.Second, time.Millisecond)
	s.Update([]Job{{Key: "a", Check: probe.CheckTCP, Target: probe.Target{Addr: "10.0.0.2:80"}}})
	require.Eventually(t, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return seen[len(seen)-1] == "10.0.0.2:80"
	}, 5*time.Second, time.Millisecond)
}

func TestConcurrencyIsBoundedAndOverloadSkips(t *testing.T) {
	rec := newRecorder(30 * time.Millisecond)
	var skipped atomic.Int64
	var size atomic.Int64
	s := New(Config{Interval: 20 * time.Millisecond, MaxInFlight: 3}, rec.run,
		func(Job) { skipped.Add(1) }, func(n int) { size.Store(int64(n)) })
	start(t, s)
	var jobs []Job
	for i := range 12 {
		jobs = append(jobs, job(fmt.Sprint(i)))
	}
	s.Update(jobs)
	assert.EqualValues(t, 12, size.Load())
	require.Eventually(t, func() bool { return skipped.Load() > 0 }, 5*time.Second, time.Millisecond,
		"12 jobs of 30 ms every 20 ms cannot fit in 3 slots")
	assert.LessOrEqual(t, rec.peak.Load(), int64(3))
}

func TestStaggerIsStableAndSpread(t *testing.T) {
	interval := time.Second
	first := stagger("node-1/tcp", interval)
	assert.Equal(t, first, stagger("node-1/tcp", interval), "the same key always gets the same offset")
	buckets := make([]int, 10)
	for i := range 1000 {
		buckets[stagger(fmt.Sprintf("node-%d/tcp", i), interval)*10/interval]++
	}
	for i, n := range buckets {
		assert.InDelta(t, 100, n, 40, "tenth %d of the interval", i)
	}
}

func TestRunReturnsPromptlyWithRunsInFlight(t *testing.T) {
	rec := newRecorder(time.Hour)
	s := New(Config{Interval: time.Millisecond, Timeout: time.Hour}, rec.run, nil, nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { s.Run(ctx); close(done) }()
	s.Update([]Job{job("a"), job("b"), job("c")})
	require.Eventually(t, func() bool { return rec.inFlight.Load() == 3 }, 5*time.Second, time.Millisecond)
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
	assert.Zero(t, rec.inFlight.Load())
	s.Update([]Job{job("d")}) // after Run: accepted, never started
	assert.Zero(t, rec.count("d"))
}

// wakeups starts s with a hook counting its wake-ups and the runs they start.
func countWakeups(s *Scheduler) (wakes, runs *atomic.Int64) {
	wakes, runs = new(atomic.Int64), new(atomic.Int64)
	s.onWake = func(n int) { wakes.Add(1); runs.Add(int64(n)) }
	return wakes, runs
}

func TestCoalescedRunsShareWakeups(t *testing.T) {
	var jobs []Job
	for i := range 40 {
		jobs = append(jobs, job(fmt.Sprint("node-", i)))
	}
	firstRound := func(coalesce time.Duration) int64 {
		s := New(Config{Interval: time.Second, Coalesce: coalesce}, func(context.Context, Job) {}, nil, nil)
		wakes, runs := countWakeups(s)
		s.Update(jobs)
		start(t, s)
		// The first runs are staggered over one interval; re-runs come no
		// sooner than 0.9 s after a run, so count until every job ran once.
		require.Eventually(t, func() bool { return runs.Load() >= int64(len(jobs)) }, 10*time.Second, time.Millisecond)
		return wakes.Load()
	}
	// Every wake-up starts what is due within the window, so wake-ups are
	// more than a window apart: a 1 s spread takes at most four of 250 ms.
	assert.LessOrEqual(t, firstRound(250*time.Millisecond), int64(4))
	assert.Greater(t, firstRound(0), int64(4), "without coalescing each run wakes the dispatcher")
}

func TestCoalesceIsCappedAtAQuarterInterval(t *testing.T) {
	s := New(Config{Interval: 100 * time.Millisecond, Coalesce: time.Second}, nil, nil, nil)
	assert.Equal(t, 25*time.Millisecond, s.cfg.Coalesce)
	s = New(Config{Interval: time.Second, Coalesce: -time.Second}, nil, nil, nil)
	assert.Zero(t, s.cfg.Coalesce)
}

func TestRemovedQueuedJobNeverRunsAgain(t *testing.T) {
	rec := newRecorder(0)
	s := New(Config{Interval: 50 * time.Millisecond}, rec.run, nil, nil)
	start(t, s)
	s.Update([]Job{job("a"), job("b")})
	require.Eventually(t, func() bool { return rec.count("a") >= 1 && rec.count("b") >= 2 }, 5*time.Second, time.Millisecond)
	s.Update([]Job{job("b")})
	after := rec.count("a")
	n := rec.count("b")
	require.Eventually(t, func() bool { return rec.count("b") >= n+3 }, 5*time.Second, time.Millisecond)
	assert.LessOrEqual(t, rec.count("a"), after+1, "at most the run already in flight when it was removed")
}

func TestNextRunCountsFromTheLastDueTime(t *testing.T) {
	s := New(Config{Interval: time.Second, Coalesce: 250 * time.Millisecond}, nil, nil, nil)
	s.ctx = context.Background()
	due := time.Now().Add(200 * time.Millisecond) // started 200 ms early by coalescing
	e := &entry{job: job("a"), due: due, index: -1, cancel: func() {}}
	s.requeue(e)
	assert.Equal(t, due.Add(time.Second), e.due, "early starts do not speed the job up")

	overran := time.Now().Add(-3 * time.Second)
	e = &entry{job: job("b"), due: overran, index: -1, cancel: func() {}}
	before := time.Now()
	s.requeue(e)
	assert.False(t, e.due.Before(before.Add(time.Second)), "a run that overran its next due time waits a whole interval")
}

func peerJob(peer, check string) Job {
	return Job{Key: peer + "/" + check, Check: probe.Check(check), Target: probe.Target{Addr: peer + ":80"}, Peer: peer}
}

func TestRunsTowardOnePeerTakeTurns(t *testing.T) {
	rec := newRecorder(4 * time.Millisecond) // 4 checks x 4 ms in a 40 ms interval: they collide unless kept apart
	var mu sync.Mutex
	inFlight, runs := map[string]int{}, map[string]int{}
	var overlaps []string
	s := New(Config{Interval: 40 * time.Millisecond, Coalesce: 10 * time.Millisecond}, func(ctx context.Context, j Job) {
		mu.Lock()
		if inFlight[j.Peer]++; inFlight[j.Peer] > 1 {
			overlaps = append(overlaps, j.Key)
		}
		runs[j.Peer]++
		mu.Unlock()
		rec.run(ctx, j)
		mu.Lock()
		inFlight[j.Peer]--
		mu.Unlock()
	}, nil, nil)
	var jobs []Job
	for _, peer := range []string{"a", "b", "c"} {
		for _, check := range []string{"tcp", "http", "netpol_allow", "netpol_deny"} {
			jobs = append(jobs, peerJob(peer, check))
		}
	}
	s.Update(jobs)
	start(t, s)
	require.Eventually(t, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return runs["a"] >= 40 && runs["b"] >= 40 && runs["c"] >= 40
	}, 10*time.Second, time.Millisecond)
	mu.Lock()
	defer mu.Unlock()
	assert.Empty(t, overlaps, "runs toward one peer overlapped")
	assert.Greater(t, rec.peak.Load(), int64(1), "runs toward different peers still run side by side")
}

// blockingRuns counts runs by key; a run of blocker holds until release is
// closed, deadline or not, as a run stuck in a system call would.
type blockingRuns struct {
	blocker string
	release chan struct{}
	mu      sync.Mutex
	runs    map[string]int
	started map[string]int
}

func newBlockingRuns(blocker string) *blockingRuns {
	return &blockingRuns{blocker: blocker, release: make(chan struct{}), runs: map[string]int{}, started: map[string]int{}}
}

func (b *blockingRuns) run(_ context.Context, j Job) {
	b.mu.Lock()
	b.started[j.Key]++
	b.mu.Unlock()
	if j.Key == b.blocker {
		<-b.release
	}
	b.mu.Lock()
	b.runs[j.Key]++
	b.mu.Unlock()
}

func (b *blockingRuns) count(m map[string]int, key string) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return m[key]
}

func TestRunWaitingForItsPeerStartsWhenThePeerIsFree(t *testing.T) {
	b := newBlockingRuns("a/tcp")
	var mu sync.Mutex
	skipped := map[string]int{}
	s := New(Config{Interval: 20 * time.Millisecond}, b.run, func(j Job) { mu.Lock(); skipped[j.Key]++; mu.Unlock() }, nil)
	start(t, s)
	s.Update([]Job{peerJob("a", "tcp"), peerJob("a", "http"), peerJob("b", "http")})
	require.Eventually(t, func() bool { return b.count(b.started, "a/tcp") == 1 && b.count(b.runs, "b/http") >= 5 },
		5*time.Second, time.Millisecond, "another peer's runs go on")
	assert.Zero(t, b.count(b.started, "a/http"), "a/http started while a/tcp was in flight")
	close(b.release)
	require.Eventually(t, func() bool { return b.count(b.runs, "a/http") >= 2 }, 5*time.Second, time.Millisecond,
		"a/http runs once its peer is free")
	mu.Lock()
	defer mu.Unlock()
	assert.Positive(t, skipped["a/http"], "the run that waited whole intervals for its peer is skipped and counted")
	assert.Zero(t, skipped["b/http"])
}

func TestRemovedRunWaitingForItsPeerNeverStarts(t *testing.T) {
	b := newBlockingRuns("a/tcp")
	s := New(Config{Interval: 20 * time.Millisecond}, b.run, nil, nil)
	start(t, s)
	s.Update([]Job{peerJob("a", "tcp"), peerJob("a", "http")})
	require.Eventually(t, func() bool { return b.count(b.started, "a/tcp") == 1 }, 5*time.Second, time.Millisecond)
	waiting := func() bool { s.mu.Lock(); defer s.mu.Unlock(); return len(s.busy["a"]) == 1 }
	require.Eventually(t, waiting, 5*time.Second, time.Millisecond, "a/http comes due and waits behind a/tcp")
	startedBefore := b.count(b.started, "a/http") // it may have run before a/tcp took the peer
	s.Update([]Job{peerJob("a", "tcp")})
	close(b.release)
	require.Eventually(t, func() bool { return b.count(b.runs, "a/tcp") >= 3 }, 5*time.Second, time.Millisecond)
	assert.Equal(t, startedBefore, b.count(b.started, "a/http"), "a/http started after its removal")
}

// With the coalescing window at its cap, a wake-up can bring all four of a
// peer's checks due together; those that wait for the peer must still run
// within their interval, not wait for later wake-ups one at a time (a cut
// that deferred them to the next wake-up skipped 3.5% of the runs).
func TestPeersKeepTheirRateWhenTheirChecksComeDueTogether(t *testing.T) {
	var runs, skips atomic.Int64
	s := New(Config{Interval: 200 * time.Millisecond, Jitter: 0.2, Coalesce: 50 * time.Millisecond},
		func(context.Context, Job) { runs.Add(1); time.Sleep(300 * time.Microsecond) },
		func(Job) { skips.Add(1) }, nil)
	var jobs []Job
	for p := range 30 {
		for _, c := range []string{"tcp", "http", "netpol_allow", "netpol_deny"} {
			jobs = append(jobs, peerJob(fmt.Sprint("peer-", p), c))
		}
	}
	s.Update(jobs)
	start(t, s)
	require.Eventually(t, func() bool { return runs.Load() >= int64(10*len(jobs)) }, 20*time.Second, 10*time.Millisecond)
	assert.Zero(t, skips.Load(), "runs skipped after waiting a whole interval for their peer")
}

// A run removed while it waited for a worker must still free its peer, or
// the peer's other jobs would wait behind it for good.
func TestRemovedBacklogRunFreesItsPeer(t *testing.T) {
	b := newBlockingRuns("x/tcp")
	s := New(Config{Interval: 20 * time.Millisecond, MaxInFlight: 1}, b.run, nil, nil)
	start(t, s)
	s.Update([]Job{peerJob("x", "tcp"), peerJob("a", "tcp")})
	backlogged := func() bool { s.mu.Lock(); defer s.mu.Unlock(); return len(s.backlog) == 1 }
	require.Eventually(t, backlogged, 5*time.Second, time.Millisecond, "a/tcp waits for the one worker")
	s.Update([]Job{peerJob("x", "tcp"), peerJob("a", "http")})
	startedBefore := b.count(b.started, "a/tcp") // it may have run before x/tcp took the worker
	waiting := func() bool { s.mu.Lock(); defer s.mu.Unlock(); return len(s.busy["a"]) == 1 }
	require.Eventually(t, waiting, 5*time.Second, time.Millisecond, "a/http waits behind the removed a/tcp")
	close(b.release)
	require.Eventually(t, func() bool { return b.count(b.runs, "a/http") >= 1 }, 5*time.Second, time.Millisecond)
	assert.Equal(t, startedBefore, b.count(b.started, "a/tcp"), "a/tcp started after its removal")
}
