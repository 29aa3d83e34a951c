// Package scheduler owns time for the agent: one loop per (peer, check) job,
// each with a staggered start, a jittered interval and a per-run timeout,
// canceled as soon as its job leaves the set. Probes never sleep or loop
// themselves. A weighted semaphore bounds how many runs are in flight; a run
// that cannot get a slot within its own interval is skipped and counted
// rather than queued, so an overloaded agent sheds load instead of drifting.
package scheduler

import (
	"context"
	"hash/fnv"
	"math/rand/v2"
	"sync"
	"time"

	"golang.org/x/sync/semaphore"

	"github.com/xosprobe/xosprobe/probe"
)

// Job is one (peer, check) pair to probe repeatedly.
type Job struct {
	// Key identifies the job across updates, e.g. "node-7/tcp". A job whose
	// key stays and whose Target is unchanged keeps running undisturbed.
	Key    string
	Check  probe.Check
	Target probe.Target
}

// Config tunes the loops.
type Config struct {
	Interval time.Duration // time between runs of one job
	Jitter   float64       // each wait is Interval × (1 ± Jitter/2)
	Timeout  time.Duration // per-run deadline; at most Interval
	// MaxInFlight bounds concurrent runs across all jobs.
	MaxInFlight int64
	// Quantum aligns every run to a multiple of it on the wall clock, so runs
	// due within one quantum share one wake-up of the process. On an idle VM
	// each wake-up costs far more CPU than the probe itself; 0 disables.
	Quantum time.Duration
}

// Scheduler runs jobs. Create with New, then call Run once and Update any time.
type Scheduler struct {
	cfg    Config
	run    func(context.Context, Job) // executes one run; must honor ctx
	skip   func(Job)                  // told about runs skipped for lack of a slot
	sem    *semaphore.Weighted
	mu     sync.Mutex
	ctx    context.Context // set by Run; loops derive from it
	loops  map[string]*loop
	wg     sync.WaitGroup
	onSize func(int)
}

type loop struct {
	job    Job
	cancel context.CancelFunc
}

// New returns a Scheduler that calls run for every run of every job, skip
// when a run is skipped, and onSize with the number of loops after each change.
func New(cfg Config, run func(context.Context, Job), skip func(Job), onSize func(int)) *Scheduler {
	if cfg.Timeout <= 0 || cfg.Timeout > cfg.Interval {
		cfg.Timeout = cfg.Interval
	}
	if cfg.MaxInFlight <= 0 {
		cfg.MaxInFlight = 64
	}
	return &Scheduler{cfg: cfg, run: run, skip: skip, onSize: onSize,
		sem: semaphore.NewWeighted(cfg.MaxInFlight), loops: map[string]*loop{}}
}

// Run blocks until ctx ends, then cancels every loop and waits for them.
func (s *Scheduler) Run(ctx context.Context) {
	s.mu.Lock()
	s.ctx = ctx
	for _, l := range s.loops {
		s.start(l)
	}
	s.mu.Unlock()

	<-ctx.Done()
	s.mu.Lock()
	for _, l := range s.loops {
		if l.cancel != nil {
			l.cancel()
		}
	}
	s.loops = map[string]*loop{}
	s.mu.Unlock()
	s.wg.Wait()
}

// Update makes jobs the running set: new keys start, missing keys are
// canceled (their in-flight run too), keys whose target changed restart.
func (s *Scheduler) Update(jobs []Job) {
	s.mu.Lock()
	defer s.mu.Unlock()
	want := make(map[string]Job, len(jobs))
	for _, j := range jobs {
		want[j.Key] = j
	}
	for key, l := range s.loops {
		if j, ok := want[key]; !ok || j.Target != l.job.Target || j.Check != l.job.Check {
			if l.cancel != nil {
				l.cancel()
			}
			delete(s.loops, key)
		}
	}
	for key, j := range want {
		if _, ok := s.loops[key]; ok {
			continue
		}
		l := &loop{job: j}
		s.loops[key] = l
		if s.ctx != nil {
			s.start(l)
		}
	}
	if s.onSize != nil {
		s.onSize(len(s.loops))
	}
}

// start launches l's goroutine; s.mu is held.
func (s *Scheduler) start(l *loop) {
	if s.ctx.Err() != nil {
		return
	}
	ctx, cancel := context.WithCancel(s.ctx)
	l.cancel = cancel
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer cancel()
		s.loop(ctx, l.job)
	}()
}

// loop runs job every interval. The first run waits a stagger derived from the
// key, so a restart does not fire every job at once and the spread is stable.
func (s *Scheduler) loop(ctx context.Context, job Job) {
	t := time.NewTimer(s.align(stagger(job.Key, s.cfg.Interval)))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		s.once(ctx, job)
		t.Reset(s.align(s.jittered()))
	}
}

// align stretches a wait so it ends on a quantum boundary.
func (s *Scheduler) align(wait time.Duration) time.Duration {
	q := s.cfg.Quantum
	if q <= 0 {
		return wait
	}
	at := time.Now().Add(wait).UnixNano()
	if r := at % int64(q); r != 0 {
		wait += q - time.Duration(r)
	}
	return wait
}

func (s *Scheduler) once(ctx context.Context, job Job) {
	// A free slot is the common case: take it without arming a timer.
	// Otherwise wait at most one interval: past that the next run is due anyway.
	if !s.sem.TryAcquire(1) {
		wctx, cancel := context.WithTimeout(ctx, s.cfg.Interval)
		err := s.sem.Acquire(wctx, 1)
		cancel()
		if err != nil {
			if ctx.Err() == nil && s.skip != nil {
				s.skip(job)
			}
			return
		}
	}
	defer s.sem.Release(1)
	rctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	s.run(rctx, job)
}

func (s *Scheduler) jittered() time.Duration {
	f := 1 + s.cfg.Jitter*(rand.Float64()-0.5)
	return time.Duration(float64(s.cfg.Interval) * f)
}

// stagger maps key to a stable offset in [0, interval).
func stagger(key string, interval time.Duration) time.Duration {
	if interval <= 0 {
		return 0
	}
	h := fnv.New64a()
	_, _ = h.Write([]byte(key))
	return time.Duration(h.Sum64() % uint64(interval))
}
