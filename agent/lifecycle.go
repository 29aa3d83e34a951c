package agent

import (
	"sync"
	"time"

	"github.com/xosprobe/xosprobe/agent/metrics"
	"github.com/xosprobe/xosprobe/probe"
)

// lifecycle tells "not yet" from "broken": which failed runs are held back
// from the verdict metrics, and how long the network takes to realize a
// NetworkPolicy change.
//
// Warm-up: a destination (a peer's node, or a probe Service job) is held from
// when it first appears in the job set (at the agent's start, every one)
// until the first run toward it that completes a connection, or Warmup,
// whichever comes first. Pods run before their routes, HNS endpoints and
// policies are programmed; an agent that just started is in the same place.
// A refused or blocked deny check completes nothing, so it ends no warm-up.
//
// Grace: a netpol job whose expected verdict is new, or differs from the one
// the last recomputation gave, does not count a mismatch for PolicyGrace:
// the policy object (or label, or peer) is in the API before the network
// enforces it, and Windows HNS takes a minute or more to program the ACLs. The
// first run that observes the new verdict ends the grace early, so a later
// flip back is counted.
//
// Realization: the time from such a change to the first run observing the new
// verdict, observed once per change and job, also when it comes after the
// grace (then the mismatches in between were counted: that is a real
// finding). A change superseded by another before it is realized is never
// observed; the new one starts its own clock. The jobs of the agent's first
// job set are not measured: when their expectation began is unknown.
type lifecycle struct {
	grace, warmup time.Duration
	started       time.Time

	mu           sync.Mutex
	initialized  bool // the first job set has been seen
	dests        map[string]*destState
	expects      map[string]*expectState // by netpol job key
	firstSuccess map[string]bool         // destination OSes reached at least once
}

type destState struct {
	since   time.Time
	reached bool
}

type expectState struct {
	verdict    probe.Verdict
	since      time.Time // when verdict became the expectation
	graceUntil time.Time
	realizing  bool // no run has observed verdict since it changed
}

// jobExpect is a netpol job's expected verdict in one job set.
type jobExpect struct {
	key     string
	verdict probe.Verdict
}

// judgement is what lifecycle makes of one run.
type judgement struct {
	hold string // metrics.HoldWarmup, metrics.HoldGrace, or "" to count the run
	// realized is the policy realization latency when this run realized a change.
	realized   time.Duration
	isRealized bool
	// firstSuccess is the time from the agent's start when this run is its
	// first success toward its destination's OS.
	firstSuccess   time.Duration
	isFirstSuccess bool
}

func newLifecycle(grace, warmup time.Duration, started time.Time) *lifecycle {
	return &lifecycle{grace: grace, warmup: warmup, started: started,
		dests: map[string]*destState{}, expects: map[string]*expectState{}, firstSuccess: map[string]bool{}}
}

// update takes the destinations and netpol expectations of a new job set;
// what is gone is forgotten, so a peer that comes back warms up again.
func (l *lifecycle) update(now time.Time, dests []string, expects []jobExpect) {
	l.mu.Lock()
	defer l.mu.Unlock()
	seen := make(map[string]bool, len(dests))
	for _, d := range dests {
		seen[d] = true
		if l.dests[d] == nil {
			l.dests[d] = &destState{since: now}
		}
	}
	for d := range l.dests {
		if !seen[d] {
			delete(l.dests, d)
		}
	}
	current := make(map[string]bool, len(expects))
	for _, e := range expects {
		current[e.key] = true
		st := l.expects[e.key]
		if st != nil && st.verdict == e.verdict {
			continue
		}
		measurable := e.verdict == probe.VerdictAllow || e.verdict == probe.VerdictDeny
		l.expects[e.key] = &expectState{verdict: e.verdict, since: now, graceUntil: now.Add(l.grace),
			realizing: measurable && l.initialized}
	}
	for k := range l.expects {
		if !current[k] {
			delete(l.expects, k)
		}
	}
	l.initialized = true
}

// judge decides whether the failed run r of job key toward dest is held,
// and records what r shows: a first connection, a realized expectation.
func (l *lifecycle) judge(now time.Time, dest, key string, r *probe.Result) judgement {
	var j judgement
	reached := r.Observed == probe.VerdictAllow || (r.Expected == "" && r.Succeeded())
	l.mu.Lock()
	defer l.mu.Unlock()
	if reached && !l.firstSuccess[r.Dst.OS] {
		l.firstSuccess[r.Dst.OS] = true
		j.firstSuccess, j.isFirstSuccess = now.Sub(l.started), true
	}
	d := l.dests[dest]
	if d != nil && reached {
		d.reached = true
	}
	st := l.expects[key]
	if st != nil && r.Expected != st.verdict {
		st = nil // a run planned before the expectation changed: judges nothing
	}
	if st != nil && r.Observed == st.verdict {
		if st.realizing {
			j.realized, j.isRealized = now.Sub(st.since), true
			st.realizing = false
		}
		st.graceUntil = time.Time{} // realized: from now on a mismatch is a flip
	}
	if r.Succeeded() {
		return j
	}
	switch {
	case d != nil && !d.reached && now.Before(d.since.Add(l.warmup)):
		j.hold = metrics.HoldWarmup
	case st != nil && r.Observed != "" && r.Observed != st.verdict && now.Before(st.graceUntil):
		j.hold = metrics.HoldGrace
	}
	return j
}
