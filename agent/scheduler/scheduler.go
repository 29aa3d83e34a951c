// Package scheduler owns time for the agent: every (peer, check) job runs
// once per jittered interval, with a staggered first run and a per-run
// timeout, and is canceled as soon as it leaves the set. Probes never sleep or
// loop themselves.
//
// One dispatcher goroutine keeps the jobs in a queue ordered by due time and
// hands due runs to a pool of at most MaxInFlight workers. When it wakes it
// also hands over the runs due within the coalescing window, so an agent
// probing hundreds of peers wakes a few times per second instead of once per
// run: on an idle VM a wake-up costs more CPU than the probe it serves (the Go
// runtime's sysmon alone polls for about a millisecond after each one).
// Workers live on, so their stacks, grown once by the HTTP check, are not
// grown again on every run. A run that finds no free worker waits in a
// backlog; one that waited a whole interval is skipped and counted rather
// than run late, so an overloaded agent sheds load instead of drifting.
//
// Runs toward one peer never overlap: a run that comes due while another
// toward its peer is in flight waits and follows it on the same worker.
// Coalescing would otherwise start a peer's checks together, and each would
// time the peer answering the others, a cost that vanishes when the path is
// slower and spreads the burst, so it bends the cross-OS delta. A gap after
// the run before would help a little more (bench/peergap: with a Windows
// responder under Wine, http first_byte right after a tcp run saw 0.25-0.29
// ms less of a held path's delay, 0.13 ms when 5 ms apart, as a lone run)
// but costs a wake-up per gap: +0.6% of a core at 100 peers.
package scheduler

import (
	"container/heap"
	"context"
	"hash/fnv"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/xosprobe/xosprobe/probe"
)

// Job is one (peer, check) pair to probe repeatedly.
type Job struct {
	// Key identifies the job across updates, e.g. "node-7/tcp". A job whose
	// key stays and whose Target is unchanged keeps running undisturbed.
	Key    string
	Check  probe.Check
	Target probe.Target
	// Peer groups the jobs toward one destination: runs of jobs with the
	// same non-empty Peer never overlap.
	Peer string
	// Timeout, when shorter than Config.Timeout, is this job's per-run
	// deadline: a check bounded tighter than the run (a netpol connect) gets
	// its bound from the run's context instead of deriving another.
	Timeout time.Duration
}

// RunTimeout is the deadline of one run of j under a Config.Timeout of limit.
func (j Job) RunTimeout(limit time.Duration) time.Duration {
	if j.Timeout > 0 && j.Timeout < limit {
		return j.Timeout
	}
	return limit
}

// Config tunes the schedule.
type Config struct {
	Interval time.Duration // time between the due times of two runs of a job
	Jitter   float64       // each wait is Interval × (1 ± Jitter/2)
	Timeout  time.Duration // per-run deadline; at most Interval
	// MaxInFlight bounds concurrent runs across all jobs.
	MaxInFlight int64
	// Coalesce lets a run start up to this much before it is due, so runs
	// due close together share one wake-up. At most a quarter of Interval;
	// 0 starts every run exactly when due.
	Coalesce time.Duration
}

// DefaultCoalesce is the coalescing window the agent uses unless told
// otherwise: at most four wake-ups per second, whatever the number of peers.
const DefaultCoalesce = 250 * time.Millisecond

// Scheduler runs jobs. Create with New, then call Run once and Update any time.
type Scheduler struct {
	cfg    Config
	run    func(context.Context, Job) // executes one run; must honor ctx
	skip   func(Job)                  // told about runs skipped for lack of a slot
	onSize func(int)
	// kick wakes the dispatcher when the earliest due time moved earlier.
	kick chan struct{}
	// ready hands a run to an idle worker; it holds MaxInFlight, so a send
	// for a worker counted idle never waits. stop closes it, which ends the
	// idle workers: a plain receive, not a select with ctx.Done, on which
	// every idle worker would otherwise queue and dequeue at each hand-off.
	ready chan *entry
	// onWake, when set (tests), is told how many runs each wake-up started.
	onWake func(int)

	mu      sync.Mutex
	ctx     context.Context // set by Run; runs derive from it
	stopped bool            // Run returned: Update records, never starts
	jobs    map[string]*entry
	queue   queue    // entries waiting for their due time
	backlog []*entry // due runs waiting for a worker, oldest first
	// busy holds the peers with a run handed out, each with the runs that
	// came due meanwhile, in due order.
	busy    map[string][]*entry
	workers int64 // workers started
	idle    int   // workers waiting on ready
	wg      sync.WaitGroup
}

// entry is one job's schedule. From the time its run is handed out until it
// ends it is out of the queue (index -1); from the time it starts, ctx is
// the run's and cancel aborts it.
type entry struct {
	job     Job
	due     time.Time
	index   int
	ctx     context.Context
	cancel  context.CancelFunc
	handed  time.Time // when the run was handed out
	removed bool
}

// New returns a Scheduler that calls run for every run of every job, skip
// when a run is skipped, and onSize with the number of jobs after each change.
func New(cfg Config, run func(context.Context, Job), skip func(Job), onSize func(int)) *Scheduler {
	if cfg.Timeout <= 0 || cfg.Timeout > cfg.Interval {
		cfg.Timeout = cfg.Interval
	}
	if cfg.MaxInFlight <= 0 {
		cfg.MaxInFlight = 64
	}
	cfg.Coalesce = min(max(cfg.Coalesce, 0), cfg.Interval/4)
	return &Scheduler{cfg: cfg, run: run, skip: skip, onSize: onSize,
		kick: make(chan struct{}, 1), ready: make(chan *entry, cfg.MaxInFlight), jobs: map[string]*entry{}, busy: map[string][]*entry{}}
}

// Run dispatches runs until ctx ends, then cancels the runs in flight and
// waits for them.
func (s *Scheduler) Run(ctx context.Context) {
	s.mu.Lock()
	s.ctx = ctx
	now := time.Now()
	for _, e := range s.jobs { // added before Run: stagger from now
		e.due = now.Add(stagger(e.job.Key, s.cfg.Interval))
		heap.Fix(&s.queue, e.index)
	}
	s.mu.Unlock()

	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		wait := s.dispatch()
		if wait >= 0 {
			timer.Reset(wait)
		} else {
			timer.Stop()
		}
		select {
		case <-ctx.Done():
			s.stop()
			return
		case <-timer.C:
		case <-s.kick:
		}
	}
}

// dispatch hands out every run due within the coalescing window and returns
// how long until the next one is due (-1: none queued).
func (s *Scheduler) dispatch() time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	horizon := now.Add(s.cfg.Coalesce)
	started := 0
	for len(s.queue) > 0 {
		e := s.queue[0]
		if e.due.After(horizon) {
			break
		}
		heap.Pop(&s.queue)
		if s.follow(e, now) {
			continue
		}
		s.handOut(e, now)
		started++
	}
	if started > 0 && s.onWake != nil {
		s.onWake(started)
	}
	if len(s.queue) == 0 {
		return -1
	}
	return max(s.queue[0].due.Sub(now), 0)
}

// follow makes e wait behind the run toward its peer in flight, if there is
// one, and reports whether it did; otherwise it marks the peer busy. s.mu is held.
func (s *Scheduler) follow(e *entry, now time.Time) bool {
	if e.job.Peer == "" {
		return false
	}
	waiting, busy := s.busy[e.job.Peer]
	if busy {
		e.handed = now // a wait of a whole interval skips the run, as in the backlog
		s.busy[e.job.Peer] = append(waiting, e)
	} else {
		s.busy[e.job.Peer] = nil
	}
	return busy
}

// handOut gives e's run to an idle worker, a new worker, or the backlog;
// s.mu is held and e is out of the queue.
func (s *Scheduler) handOut(e *entry, now time.Time) {
	e.handed = now
	switch {
	case s.idle > 0:
		s.idle--
		s.begin(e)
		s.ready <- e
	case s.workers < s.cfg.MaxInFlight:
		s.workers++
		s.wg.Add(1)
		s.begin(e)
		go s.work(e)
	default:
		s.backlog = append(s.backlog, e) // its context comes when a worker takes it
	}
}

// begin gives e's run its context, which carries both its deadline, counted
// from now, and its cancellation; s.mu is held.
func (s *Scheduler) begin(e *entry) {
	e.ctx, e.cancel = context.WithTimeout(s.ctx, e.job.RunTimeout(s.cfg.Timeout))
}

// work runs e, then whatever the backlog or the dispatcher hands it next.
func (s *Scheduler) work(e *entry) {
	defer s.wg.Done()
	for {
		s.run(e.ctx, e.job)
		if e = s.finish(e); e != nil {
			continue
		}
		var ok bool
		if e, ok = <-s.ready; !ok {
			return
		}
	}
}

// finish requeues e's job after its run and returns what this worker runs
// next: a run that waited for e's peer, else the oldest backlog run, else
// nil after counting the worker idle.
func (s *Scheduler) finish(e *entry) *entry {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.requeue(e)
	if s.stopped {
		return nil
	}
	now := time.Now()
	if next := s.nextForPeer(e.job.Peer, now); next != nil {
		s.begin(next)
		return next
	}
	for len(s.backlog) > 0 {
		next := s.backlog[0]
		s.backlog[0] = nil
		s.backlog = s.backlog[1:]
		if !next.removed && s.fresh(next, now) {
			s.begin(next)
			return next
		}
		s.release(next.job.Peer, now)
	}
	s.idle++
	return nil
}

// nextForPeer returns the oldest run still worth starting among those
// waiting for peer, keeping the peer busy; with none it marks the peer free.
// s.mu is held.
func (s *Scheduler) nextForPeer(peer string, now time.Time) *entry {
	if peer == "" {
		return nil
	}
	waiting := s.busy[peer]
	for len(waiting) > 0 {
		next := waiting[0]
		waiting[0] = nil
		waiting = waiting[1:]
		if !next.removed && s.fresh(next, now) {
			s.busy[peer] = waiting
			next.handed = now
			return next
		}
	}
	delete(s.busy, peer)
	return nil
}

// release frees peer after its run was dropped unrun (removed or skipped),
// handing the peer's next waiting run to the backlog. s.mu is held.
func (s *Scheduler) release(peer string, now time.Time) {
	if next := s.nextForPeer(peer, now); next != nil {
		s.backlog = append(s.backlog, next)
	}
}

// fresh reports whether e, handed out but not yet started, may still run;
// one that waited a whole interval is skipped, counted and requeued, as its
// next run is due anyway. s.mu is held.
func (s *Scheduler) fresh(e *entry, now time.Time) bool {
	if now.Sub(e.handed) < s.cfg.Interval {
		return true
	}
	if s.skip != nil {
		s.skip(e.job)
	}
	s.requeue(e)
	return false
}

// requeue schedules e's next run one jittered interval after the last one
// was due, so runs started early by coalescing or late by a busy dispatcher
// keep the rate; a run that overran its next due time restarts the count
// from now instead of running back to back. s.mu is held.
func (s *Scheduler) requeue(e *entry) {
	if e.cancel != nil { // nil: it never started
		e.cancel()
	}
	e.ctx, e.cancel = nil, nil
	if e.removed || s.stopped {
		return
	}
	now := time.Now()
	if e.due = e.due.Add(s.jittered()); e.due.Before(now) {
		e.due = now.Add(s.jittered())
	}
	s.push(e)
}

// push queues e and wakes the dispatcher if e is now the earliest; s.mu is held.
func (s *Scheduler) push(e *entry) {
	heap.Push(&s.queue, e)
	if e.index == 0 {
		select {
		case s.kick <- struct{}{}:
		default:
		}
	}
}

// stop cancels every run in flight or in the backlog and waits for the workers.
func (s *Scheduler) stop() {
	s.mu.Lock()
	s.stopped = true
	for _, e := range s.jobs {
		if e.cancel != nil {
			e.cancel()
		}
	}
	s.jobs = map[string]*entry{}
	s.queue, s.backlog = nil, nil
	s.busy = map[string][]*entry{}
	close(s.ready) // only handOut sends, from Run's goroutine, which is here
	s.mu.Unlock()
	s.wg.Wait()
}

// Update makes jobs the running set: new keys start after their stagger,
// missing keys are canceled (their in-flight run too), keys whose job
// changed restart.
func (s *Scheduler) Update(jobs []Job) {
	s.mu.Lock()
	defer s.mu.Unlock()
	want := make(map[string]Job, len(jobs))
	for _, j := range jobs {
		want[j.Key] = j
	}
	for key, e := range s.jobs {
		if j, ok := want[key]; !ok || j != e.job {
			s.remove(e)
		}
	}
	now := time.Now()
	for key, j := range want {
		if _, ok := s.jobs[key]; ok {
			continue
		}
		e := &entry{job: j, due: now.Add(stagger(key, s.cfg.Interval)), index: -1}
		s.jobs[key] = e
		if !s.stopped {
			s.push(e)
		}
	}
	if s.onSize != nil {
		s.onSize(len(s.jobs))
	}
}

// remove drops e from the set, canceling its run in flight; s.mu is held.
func (s *Scheduler) remove(e *entry) {
	e.removed = true
	delete(s.jobs, e.job.Key)
	if e.index >= 0 {
		heap.Remove(&s.queue, e.index)
	}
	if e.cancel != nil {
		e.cancel()
	}
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

// queue is a min-heap of idle entries by due time.
type queue []*entry

func (q queue) Len() int           { return len(q) }
func (q queue) Less(i, j int) bool { return q[i].due.Before(q[j].due) }
func (q queue) Swap(i, j int) {
	q[i], q[j] = q[j], q[i]
	q[i].index, q[j].index = i, j
}
func (q *queue) Push(x any) {
	e := x.(*entry)
	e.index = len(*q)
	*q = append(*q, e)
}
func (q *queue) Pop() any {
	old := *q
	e := old[len(old)-1]
	old[len(old)-1] = nil
	e.index = -1
	*q = old[:len(old)-1]
	return e
}
