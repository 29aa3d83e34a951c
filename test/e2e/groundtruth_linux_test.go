//go:build linux

package e2e

import (
	"context"
	"fmt"
	"math"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/xosprobe/xosprobe/test/e2e/cluster"

	"github.com/xosprobe/xosprobe/test/nfqueue"
)

// delayQueue is the NFQUEUE number the delayers bind in the Windows pods.
const delayQueue = 7

// groundTruthPhases are the checks and phases whose linux->windows delta a
// hold on packets entering the Windows pods must move by exactly the hold:
// the SYN (connect) and the request (first byte) wait D in the pod.
//
// Only the connect phases are held to the tolerance (asserted). http
// first_byte is measured and reported but not asserted: under Wine the
// responder's own latency between accept and the response is 1-4 ms and
// bimodal (vCPU wake-up), and a hold partly overlaps it, so the change of its
// p50 is the hold only some of the time (measured: -0.1 ms and -2.1 ms errors
// for D=2ms in two runs).
var groundTruthPhases = []struct {
	check, phase string
	asserted     bool
}{{"tcp", "connect", true}, {"http", "connect", true}, {"http", "first_byte", false}}

// delayers holds every TCP packet from the Linux agents to the http and tcp
// probe ports of each Windows agent pod in an NFQUEUE delayer in the pod's
// namespace (iptables mangle INPUT). They start with hold 0, so the baseline
// pays the same user-space round trip as the delayed phases.
type delayers struct {
	ds    []*nfqueue.Delayer
	rules [][]string // iptables argv of each rule, to delete
}

func startDelayers(t *testing.T, ctx context.Context, winPods []*cluster.Pod, linuxIPs []string) *delayers {
	t.Helper()
	g := &delayers{}
	t.Cleanup(func() { g.stop(t) })
	for _, p := range winPods {
		d, err := nfqueue.Start(p.NetNS, delayQueue, 0)
		if err != nil {
			t.Fatalf("delayer in %s: %v", p, err)
		}
		g.ds = append(g.ds, d)
		for _, port := range []int{portHTTP, portTCP} {
			rule := []string{"ip", "netns", "exec", p.NetNS, "iptables", "-w", "-t", "mangle", "%s", "INPUT", "-p", "tcp",
				"-s", strings.Join(linuxIPs, ","), "--dport", strconv.Itoa(port),
				"-j", "NFQUEUE", "--queue-num", strconv.Itoa(delayQueue), "--queue-bypass"}
			if out, err := iptablesOp(ctx, rule, "-A"); err != nil {
				t.Fatalf("iptables in %s: %v: %s", p, err, out)
			}
			g.rules = append(g.rules, rule)
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
	for _, d := range g.ds {
		d.SetHold(h)
	}
}

func (g *delayers) takeHolds() []time.Duration {
	var all []time.Duration
	for _, d := range g.ds {
		all = append(all, d.TakeHolds()...)
	}
	return all
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
	for _, d := range g.ds {
		if err := d.Close(); err != nil {
			t.Errorf("delayer: %v", err)
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
	// confidence interval (the aggregator's own precision at that moment).
	read := func() (delta, ci map[string]float64) {
		ss, err := aggMetrics()
		if err != nil {
			t.Fatal(err)
		}
		delta, ci = map[string]float64{}, map[string]float64{}
		for _, gp := range groundTruthPhases {
			l := map[string]string{"check": gp.check, "phase": gp.phase, "pair": "linux->windows", "quantile": "0.5"}
			v, n := sumMetric(ss, "xosprobe_cross_os_delta_seconds", l)
			if n != 1 {
				t.Fatalf("xosprobe_cross_os_delta_seconds%v: %d series", l, n)
			}
			k := gp.check + "/" + gp.phase
			delta[k] = v
			lo, nl := sumMetric(ss, "xosprobe_cross_os_delta_ci_low_seconds", l)
			hi, nh := sumMetric(ss, "xosprobe_cross_os_delta_ci_high_seconds", l)
			ci[k] = math.Inf(1)
			if nl == 1 && nh == 1 {
				ci[k] = hi - lo
			}
		}
		return delta, ci
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
	base, baseCI := read()
	atBaseline()
	baseHold := medianDuration(g.takeHolds())
	t.Logf("ground truth D=0: delta p50 %v (CI widths %v), median hold %s", base, baseCI, baseHold)
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
		now, ci := read()
		holds := g.takeHolds()
		hold := medianDuration(holds) - baseHold
		t.Logf("ground truth D=%s: delta p50 %v (CI widths %v), median hold %s over %d packets", st.D, now, ci, hold+baseHold, len(holds))
		for _, gp := range groundTruthPhases {
			k := gp.check + "/" + gp.phase
			gt = append(gt, groundTruth{D: st.D, Check: gp.check, Phase: gp.phase, Hold: hold, Asserted: gp.asserted && st.Asserted,
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
