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
// Runs toward one peer never overlap, and the next starts at least PeerGap
// after the last ended: a run that comes due sooner goes back in the queue
// and starts with the first wake-up after the gap. Coalescing would otherwise
// start a peer's checks together or back to back, and each would time the
// peer still busy with the one before (a Windows responder under Wine: a
// quarter of a millisecond more on http first_byte), a cost that vanishes
// when the path is slower and spreads the runs out, so it bends the cross-OS
// delta.
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
	// same non-empty Peer never overlap and are PeerGap apart.
	Peer string
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
	// PeerGap is the least time from the end of a run toward a peer to the
	// start of the next run toward it.
	PeerGap time.Duration
}

// DefaultCoalesce is the coalescing window the agent uses unless told
// otherwise: at most four wake-ups per second, whatever the number of peers.
const DefaultCoalesce = 250 * time.Millisecond

// DefaultPeerGap is the gap between runs toward one peer unless told
// otherwise. Measured by bench/peergap (a Windows responder under Wine behind
// a held path, 500 samples per hold): the change of http first_byte fell
// short of a 2 or 5 ms hold by 0.25-0.29 ms when the http run followed a tcp
// run at once, by 0.20-0.23 ms 1 ms after it, and by 0.13 ms 5 ms after it,
// as for an http run with no tcp run before it (0.12-0.15 ms).
const DefaultPeerGap = 5 * time.Millisecond

// Scheduler runs jobs. Create with New, then call Run once and Update any time.
type Scheduler struct {
	cfg    Config
	run    func(context.Context, Job) // executes one run; must honor ctx
	skip   func(Job)                  // told about runs skipped for lack of a slot
	onSize func(int)
	// kick wakes the dispatcher when the earliest start moved earlier.
	kick chan struct{}
	// ready hands a run to an idle worker.
	ready chan *entry
	// onWake, when set (tests), is told how many runs each wake-up started.
	onWake func(int)

	mu      sync.Mutex
	ctx     context.Context // set by Run; runs derive from it
	stopped bool            // Run returned: Update records, never starts
	jobs    map[string]*entry
	peers   map[string]*peer
	queue   queue    // entries waiting to be handed out
	backlog []*entry // handed-out runs waiting for a worker, oldest first
	workers int64    // workers started
	idle    int      // workers waiting on ready
	wg      sync.WaitGroup
}

// entry is one job's schedule. due anchors the job's rate; start orders the
// queue: due, or later when the job's peer was busy. From the time its run
// is handed out until it ends the entry is out of the queue (index -1), ctx
// is the run's and cancel aborts it.
type entry struct {
	job     Job
	peer    *peer // nil for a job without Peer
	due     time.Time
	start   time.Time
	index   int
	ctx     context.Context
	cancel  context.CancelFunc
	removed bool
}

// peer is the turn-taking state of the jobs toward one Peer.
type peer struct {
	jobs    int      // in the set; the state is dropped with the last
	busy    bool     // a run toward it is handed out
	waiting []*entry // came due while busy
	ended   time.Time
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
	cfg.PeerGap = max(cfg.PeerGap, 0)
	return &Scheduler{cfg: cfg, run: run, skip: skip, onSize: onSize, kick: make(chan struct{}, 1),
		ready: make(chan *entry), jobs: map[string]*entry{}, peers: map[string]*peer{}}
}

// Run dispatches runs until ctx ends, then cancels the runs in flight and
// waits for them.
func (s *Scheduler) Run(ctx context.Context) {
	s.mu.Lock()
	s.ctx = ctx
	now := time.Now()
	for _, e := range s.jobs { // added before Run: stagger from now
		e.due = now.Add(stagger(e.job.Key, s.cfg.Interval))
		e.start = e.due
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

// dispatch hands out every run that may start within the coalescing window
// and returns how long until the next one may (-1: none queued).
func (s *Scheduler) dispatch() time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	horizon := now.Add(s.cfg.Coalesce)
	started := 0
	for len(s.queue) > 0 {
		e := s.queue[0]
		if e.start.After(horizon) {
			break
		}
		heap.Pop(&s.queue)
		if now.Sub(e.due) >= s.cfg.Interval {
			s.skipRun(e) // waited a whole interval for its peer or the dispatcher
			continue
		}
		if p := e.peer; p != nil {
			if p.busy {
				p.waiting = append(p.waiting, e)
				continue
			}
			if free := p.ended.Add(s.cfg.PeerGap); now.Before(free) {
				s.deferTo(e, free)
				continue
			}
			p.busy = true
		}
		s.handOut(e)
		started++
	}
	if started > 0 && s.onWake != nil {
		s.onWake(started)
	}
	if len(s.queue) == 0 {
		return -1
	}
	return max(s.queue[0].start.Sub(now), 0)
}

// deferTo queues e to start with the first wake-up at or after t: its start
// is t plus the coalescing window, so a wake-up for other runs after t takes
// it along and none is added for it unless nothing else is due. s.mu is held.
func (s *Scheduler) deferTo(e *entry, t time.Time) {
	e.start = t.Add(s.cfg.Coalesce)
	s.push(e)
}

// handOut gives e's run to an idle worker, a new worker, or the backlog;
// s.mu is held and e is out of the queue.
func (s *Scheduler) handOut(e *entry) {
	// One context per run carries both its deadline and its cancellation.
	e.ctx, e.cancel = context.WithTimeout(s.ctx, s.cfg.Timeout)
	switch {
	case s.idle > 0:
		// The idle worker counted itself under s.mu and is on its way to
		// receive, needing no lock: this send completes promptly.
		s.idle--
		select {
		case s.ready <- e:
		case <-s.ctx.Done():
			e.cancel()
		}
	case s.workers < s.cfg.MaxInFlight:
		s.workers++
		s.wg.Add(1)
		go s.work(e)
	default:
		s.backlog = append(s.backlog, e)
	}
}

// work runs e, then whatever the backlog or the dispatcher hands it next.
func (s *Scheduler) work(e *entry) {
	defer s.wg.Done()
	for {
		s.run(e.ctx, e.job)
		if e = s.finish(e); e != nil {
			continue
		}
		select {
		case e = <-s.ready:
		case <-s.ctx.Done():
			return
		}
	}
}

// finish requeues e's job after its run, frees its peer, and returns the
// oldest backlog run for this worker, or nil after counting the worker idle.
func (s *Scheduler) finish(e *entry) *entry {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	s.requeue(e)
	s.free(e.peer, now)
	for len(s.backlog) > 0 && !s.stopped {
		next := s.backlog[0]
		s.backlog[0] = nil
		s.backlog = s.backlog[1:]
		if next.removed {
			s.free(next.peer, time.Time{})
			continue
		}
		if now.Sub(next.due) < s.cfg.Interval {
			// The deadline counts from the start of the run, not the wait.
			next.cancel()
			next.ctx, next.cancel = context.WithTimeout(s.ctx, s.cfg.Timeout)
			return next
		}
		s.skipRun(next)
		s.free(next.peer, time.Time{})
	}
	s.idle++
	return nil
}

// free marks p idle after a run toward it that ended at ended (zero: it
// never ran) and queues the runs that came due meanwhile for after the gap.
// s.mu is held.
func (s *Scheduler) free(p *peer, ended time.Time) {
	if p == nil {
		return
	}
	p.busy = false
	if !ended.IsZero() {
		p.ended = ended
	}
	for _, w := range p.waiting {
		if !w.removed && !s.stopped {
			s.deferTo(w, p.ended.Add(s.cfg.PeerGap))
		}
	}
	clear(p.waiting)
	p.waiting = p.waiting[:0]
}

// skipRun counts e's run as skipped and queues the next one. s.mu is held.
func (s *Scheduler) skipRun(e *entry) {
	if s.skip != nil {
		s.skip(e.job)
	}
	s.requeue(e)
}

// requeue schedules e's next run one jittered interval after the last one
// was due, so runs started early by coalescing or late by a busy dispatcher
// or peer keep the rate; a run that overran its next due time restarts the
// count from now instead of running back to back. s.mu is held.
func (s *Scheduler) requeue(e *entry) {
	if e.cancel != nil {
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
	e.start = e.due
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
	s.jobs, s.peers = map[string]*entry{}, map[string]*peer{}
	s.queue, s.backlog = nil, nil
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
		e.start = e.due
		if j.Peer != "" {
			if e.peer = s.peers[j.Peer]; e.peer == nil {
				e.peer = &peer{}
				s.peers[j.Peer] = e.peer
			}
			e.peer.jobs++
		}
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
	if p := e.peer; p != nil {
		if p.jobs--; p.jobs == 0 {
			delete(s.peers, e.job.Peer) // runs still out finish on the old state
		}
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

// queue is a min-heap of idle entries by start time.
type queue []*entry

func (q queue) Len() int           { return len(q) }
func (q queue) Less(i, j int) bool { return q[i].start.Before(q[j].start) }
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
