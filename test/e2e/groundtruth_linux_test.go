//go:build linux

package e2e

import (
	"context"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/xosprobe/xosprobe/test/e2e/cluster"

	"github.com/xosprobe/xosprobe/test/nfqueue"
)

// The delayers' NFQUEUE numbers in the Windows pods: SYNs (what the connect
// phases wait for) and the other packets of the http exchange (the request,
// what first_byte waits for) are held in separate queues, so each phase is
// compared with the holds of its own packets.
const (
	queueSYN  = 7
	queueData = 8
)

// holdClass names a delayer queue.
type holdClass int

const (
	holdSYN holdClass = iota
	holdData
)

// groundTruthPhases are the checks and phases whose linux->windows delta a
// hold on packets entering the Windows pods must move by exactly the hold:
// the SYN (connect) and the request (first byte) wait D in the pod.
//
// Only the connect phases are held to the tolerance (asserted): the SYN's
// hold is all the kernel adds there. http first_byte is measured against the
// hold of the request's queue and reported, not asserted: it also contains
// the Wine responder's own time between accept and response (1-4 ms), and
// the aggregator's own 99% CI of that delta p50 is ~1 ms wide at this
// window, so 0.3 ms is below what it can resolve. Measured (D=2/5/20 ms, with
// every probe port held): +0.11/-0.50/-0.55 ms. Holding only the measured
// ports had made it worse (-0.41/-0.92/-0.57 ms): the burst of runs an agent
// starts toward a peer got spread out, and the responder served it faster.
var groundTruthPhases = []struct {
	check, phase string
	class        holdClass
	asserted     bool
}{{"tcp", "connect", holdSYN, true}, {"http", "connect", holdSYN, true}, {"http", "first_byte", holdData, false}}

// delayers holds TCP packets from the Linux agents to the http and tcp probe
// ports of each Windows agent pod in NFQUEUE delayers in the pod's namespace
// (iptables mangle INPUT): SYNs to either port in one queue, the rest of the
// http exchange in the other. They start with hold 0, so the baseline pays
// the same user-space round trip as the delayed phases.
type delayers struct {
	ds    map[holdClass][]*nfqueue.Delayer
	rules [][]string // iptables argv of each rule, to delete
}

func startDelayers(t *testing.T, ctx context.Context, winPods []*cluster.Pod, linuxIPs []string) *delayers {
	t.Helper()
	g := &delayers{ds: map[holdClass][]*nfqueue.Delayer{}}
	t.Cleanup(func() { g.stop(t) })
	for _, p := range winPods {
		for class, q := range map[holdClass]int{holdSYN: queueSYN, holdData: queueData} {
			d, err := nfqueue.Start(p.NetNS, uint16(q), 0)
			if err != nil {
				t.Fatalf("delayer in %s: %v", p, err)
			}
			g.ds[class] = append(g.ds[class], d)
		}
		// Every probe port, not only those of the measured checks: an
		// agent starts its runs toward a peer together, and holding only
		// some of them spreads out the burst the Wine responder serves at
		// once, which made http first_byte move less than the hold.
		match := []string{"ip", "netns", "exec", p.NetNS, "iptables", "-w", "-t", "mangle", "%s", "INPUT", "-p", "tcp",
			"-s", strings.Join(linuxIPs, ","), "-m", "multiport", "--dports", fmt.Sprintf("%d:%d", portHTTP, portDeny)}
		queue := func(q int) []string {
			return []string{"-j", "NFQUEUE", "--queue-num", strconv.Itoa(q), "--queue-bypass"}
		}
		for _, r := range [][]string{
			slices.Concat(match, []string{"--syn"}, queue(queueSYN)),
			slices.Concat(match, []string{"!", "--syn"}, queue(queueData)),
		} {
			if out, err := iptablesOp(ctx, r, "-A"); err != nil {
				t.Fatalf("iptables in %s: %v: %s", p, err, out)
			}
			g.rules = append(g.rules, r)
		}
	}
	return g
}

// iptablesOp runs an iptables rule argv with its %s (the operation) filled in.
func iptablesOp(ctx context.Context, rule []string, op string) (string, error) {
	argv := make([]string, len(rule))
	for i, a := range rule {
		if a == "%s" {
			a = op
		}
		argv[i] = a
	}
	return runCmd(ctx, argv...)
}

func (g *delayers) setHold(h time.Duration) {
	for _, ds := range g.ds {
		for _, d := range ds {
			d.SetHold(h)
		}
	}
}

// takeHolds returns the holds of each class since the last call.
func (g *delayers) takeHolds() map[holdClass][]time.Duration {
	all := map[holdClass][]time.Duration{}
	for class, ds := range g.ds {
		for _, d := range ds {
			all[class] = append(all[class], d.TakeHolds()...)
		}
	}
	return all
}

// medianHolds is the median hold of each class.
func medianHolds(h map[holdClass][]time.Duration) map[holdClass]time.Duration {
	out := map[holdClass]time.Duration{}
	for class, hs := range h {
		out[class] = nfqueue.Median(hs)
	}
	return out
}

// stop removes the rules first (packets then bypass), then the delayers.
func (g *delayers) stop(t *testing.T) {
	for _, r := range g.rules {
		if out, err := iptablesOp(context.Background(), r, "-D"); err != nil {
			// The pod's namespace may be gone already; that removed the rule.
			t.Logf("removing delayer rule: %v: %s", err, out)
		}
	}
	g.rules = nil
	for _, ds := range g.ds {
		for _, d := range ds {
			if err := d.Close(); err != nil {
				t.Errorf("delayer: %v", err)
			}
		}
	}
	g.ds = nil
}

// gtStage is one delay the ground truth holds: D, and whether the delta
// change is held to groundTruthTolerance (a D above the alert threshold is
// not: the sketches' 1% relative accuracy alone allows 0.2 ms at 20 ms).
type gtStage struct {
	D        time.Duration
	Asserted bool
}

// runGroundTruth holds packets for each stage's D in turn and compares the
// change of the aggregator's linux->windows delta p50 (from D=0) with the
// change of the median hold the delayers applied. settle is how long after a
// change of D the aggregator's window holds only results of the new D. watch,
// if not nil, runs after each change of D (and once at the baseline) and
// returns by end.
func runGroundTruth(t *testing.T, ctx context.Context, g *delayers, stages []gtStage, settle time.Duration, sinceStart time.Duration,
	aggMetrics func() ([]sample, error), atBaseline func(), watch func(d time.Duration, end time.Time)) []groundTruth {
	t.Helper()
	// read returns the delta p50 of each phase and the width of its
	// confidence interval (the aggregator's own precision at that moment),
	// and, to log, the p50 of both pairs the delta compares.
	read := func() (delta, ci map[string]float64, pairs string) {
		ss, err := aggMetrics()
		if err != nil {
			t.Fatal(err)
		}
		delta, ci = map[string]float64{}, map[string]float64{}
		var pb strings.Builder
		for _, gp := range groundTruthPhases {
			k := gp.check + "/" + gp.phase
			fmt.Fprintf(&pb, " %s", k)
			for _, pair := range []string{"linux->windows", "linux->linux"} {
				v, _ := sumMetric(ss, "xosprobe_pair_quantile_seconds", map[string]string{"check": gp.check, "phase": gp.phase, "pair": pair, "quantile": "0.5"})
				fmt.Fprintf(&pb, " %s %.0fus", pair, v*1e6)
			}
			l := map[string]string{"check": gp.check, "phase": gp.phase, "pair": "linux->windows", "quantile": "0.5"}
			v, n := sumMetric(ss, "xosprobe_cross_os_delta_seconds", l)
			if n != 1 {
				t.Fatalf("xosprobe_cross_os_delta_seconds%v: %d series", l, n)
			}
			delta[k] = v
			lo, nl := sumMetric(ss, "xosprobe_cross_os_delta_ci_low_seconds", l)
			hi, nh := sumMetric(ss, "xosprobe_cross_os_delta_ci_high_seconds", l)
			ci[k] = math.Inf(1)
			if nl == 1 && nh == 1 {
				ci[k] = hi - lo
			}
		}
		return delta, ci, pb.String()
	}
	sleepUntil := func(end time.Time) {
		select {
		case <-ctx.Done():
			t.Fatalf("ground truth: %v", ctx.Err())
		case <-time.After(time.Until(end)):
		}
	}
	// Baseline: the delayers have held with 0 since the agents started.
	if sinceStart < settle {
		sleepUntil(time.Now().Add(settle - sinceStart))
	}
	base, baseCI, pairs := read()
	atBaseline()
	baseHold := medianHolds(g.takeHolds())
	t.Logf("ground truth D=0: delta p50 %v (CI widths %v), median hold SYN %s, data %s; pair p50:%s", base, baseCI, baseHold[holdSYN], baseHold[holdData], pairs)
	if watch != nil {
		watch(0, time.Now())
	}
	var gt []groundTruth
	for _, st := range stages {
		g.setHold(st.D)
		g.takeHolds()
		end := time.Now().Add(settle)
		if watch != nil {
			watch(st.D, end)
		}
		sleepUntil(end)
		now, ci, pairs := read()
		holds := g.takeHolds()
		hold := medianHolds(holds)
		t.Logf("ground truth D=%s: delta p50 %v (CI widths %v), median hold SYN %s over %d packets, data %s over %d; pair p50:%s",
			st.D, now, ci, hold[holdSYN], len(holds[holdSYN]), hold[holdData], len(holds[holdData]), pairs)
		for _, gp := range groundTruthPhases {
			k := gp.check + "/" + gp.phase
			gt = append(gt, groundTruth{D: st.D, Check: gp.check, Phase: gp.phase, Hold: hold[gp.class] - baseHold[gp.class], Asserted: gp.asserted && st.Asserted,
				Observed: time.Duration((now[k] - base[k]) * 1e9), CIWidth: ciWidth(max(ci[k], baseCI[k]))})
		}
	}
	g.setHold(0)
	return gt
}

// ciWidth is a CI width in seconds as a Duration, 0 when unbounded.
func ciWidth(s float64) time.Duration {
	if math.IsInf(s, 0) || math.IsNaN(s) {
		return 0
	}
	return time.Duration(s * 1e9)
}

func runCmd(ctx context.Context, argv ...string) (string, error) {
	out, err := execCommand(ctx, argv...)
	if err != nil {
		return out, fmt.Errorf("%s: %w", strings.Join(argv, " "), err)
	}
	return out, nil
}
