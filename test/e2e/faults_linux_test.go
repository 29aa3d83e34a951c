//go:build linux

package e2e

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/xosprobe/xosprobe/test/e2e/cluster"
)

// faultEnv is what the fault scenarios act on and read.
type faultEnv struct {
	t        *testing.T
	ctx      context.Context
	c        *cluster.Cluster
	agents   *[]mixedPod // a deleted agent leaves the list
	agg      *mixedPod   // a restarted aggregator gets its new process here
	dns      *cluster.Pod
	prom     *promServer
	interval time.Duration
	// startAgent starts the agent DaemonSet's pod on a node, as the kubelet would.
	startAgent func(*cluster.Node) mixedPod
	Lines      []string // for the summary
}

func (f *faultEnv) logf(format string, args ...any) {
	f.t.Helper()
	line := fmt.Sprintf(format, args...)
	f.t.Log(line)
	f.Lines = append(f.Lines, line)
}

// waitPeerChange waits until every agent other than a counts delta more
// peers of a's OS (xosprobe_peers) than it did in before.
func (f *faultEnv) waitPeerChange(t *testing.T, timeout time.Duration, what string, before map[*cluster.Pod][]sample, a mixedPod, delta float64) {
	dstOS := map[string]string{"dst_os": string(a.os)}
	eventually(t, timeout, what, func() error {
		now, err := f.agentMetrics()
		if err != nil {
			return err
		}
		for _, o := range *f.agents {
			if o.pod == a.pod {
				continue
			}
			b, _ := sumMetric(before[o.pod], "xosprobe_peers", dstOS)
			n, _ := sumMetric(now[o.pod], "xosprobe_peers", dstOS)
			if n != b+delta {
				return fmt.Errorf("%s: %v %s peers, had %v", o.pod, n, a.os, b)
			}
		}
		return nil
	})
}

// agentMetrics reads every agent's /metrics, by pod.
func (f *faultEnv) agentMetrics() (map[*cluster.Pod][]sample, error) {
	out := map[*cluster.Pod][]sample{}
	for _, a := range *f.agents {
		ss, err := podMetrics(f.ctx, a.pod, 9445)
		if err != nil {
			return nil, err
		}
		out[a.pod] = ss
	}
	return out, nil
}

func (f *faultEnv) aggMetrics() ([]sample, error) { return podMetrics(f.ctx, f.agg.pod, 9446) }

// sumAgents sums a metric over every agent.
func sumAgents(ms map[*cluster.Pod][]sample, name string, labels map[string]string) float64 {
	var sum float64
	for _, ss := range ms {
		v, _ := sumMetric(ss, name, labels)
		sum += v
	}
	return sum
}

func (f *faultEnv) sleep(d time.Duration) {
	select {
	case <-f.ctx.Done():
		f.t.Fatalf("fault: %v", f.ctx.Err())
	case <-time.After(d):
	}
}

// checkOutcomes is the increase of xosprobe_probe_total by check and result
// in ss (increases from increase()).
func checkOutcomes(ss []sample) map[string]map[string]float64 {
	out := map[string]map[string]float64{}
	for _, s := range ss {
		if s.Name != "xosprobe_probe_total" || s.Value == 0 {
			continue
		}
		ch := s.Labels["check"]
		if out[ch] == nil {
			out[ch] = map[string]float64{}
		}
		out[ch][s.Labels["result"]] += s.Value
	}
	return out
}

// dnsStopped stops CoreDNS (SIGSTOP: it holds its socket and answers
// nothing, so queries time out instead of being refused) for a few probe
// intervals. Every agent's dns checks must fail with dns_timeout and only
// that; tcp, http, service and netpol-allow must keep succeeding. Then
// CoreDNS continues and dns checks succeed again.
func (f *faultEnv) dnsStopped() {
	t := f.t
	procs := f.dns.Processes()
	if len(procs) != 1 {
		t.Fatalf("CoreDNS pod runs %d processes, want 1", len(procs))
	}
	pgid := procs[0].PID()
	if err := syscall.Kill(-pgid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	stopped := true
	cont := func() {
		if stopped {
			_ = syscall.Kill(-pgid, syscall.SIGCONT)
			stopped = false
		}
	}
	t.Cleanup(cont) // before the teardown, which could not stop a stopped process gracefully
	// Runs started before the stop, and the first timeouts, are over after
	// an interval plus the timeout; then count over five intervals.
	f.sleep(2 * f.interval)
	base, err := f.agentMetrics()
	if err != nil {
		t.Fatal(err)
	}
	f.sleep(5 * f.interval)
	now, err := f.agentMetrics()
	if err != nil {
		t.Fatal(err)
	}
	cont()
	var notes []string
	for _, a := range *f.agents {
		oc := checkOutcomes(increase(base[a.pod], now[a.pod]))
		dns := oc["dns"]
		if dns["dns_timeout"] == 0 {
			t.Errorf("CoreDNS stopped: %s (%s) reports no dns_timeout; dns outcomes %v", a.pod, a.os, dns)
		}
		for r, n := range dns {
			if r != "dns_timeout" {
				t.Errorf("CoreDNS stopped: %s (%s) dns check %s x%v, want only dns_timeout", a.pod, a.os, r, n)
			}
		}
		for _, ch := range []string{"tcp", "http", "service", "netpol-allow"} {
			if oc[ch]["success"] == 0 {
				t.Errorf("CoreDNS stopped: %s (%s) %s check had no success: %v", a.pod, a.os, ch, oc[ch])
			}
			for r, n := range oc[ch] {
				if r != "success" {
					t.Errorf("CoreDNS stopped: %s (%s) %s check %s x%v; only dns may fail", a.pod, a.os, ch, r, n)
				}
			}
		}
		notes = append(notes, fmt.Sprintf("%s %v", a.pod.Node.Name, dns))
	}
	f.logf("CoreDNS stopped %s: dns outcomes per agent over %s: %s; tcp/http/service/netpol-allow all success",
		(7 * f.interval).String(), 5*f.interval, strings.Join(notes, ", "))
	// Recovery.
	recovered, err := f.agentMetrics()
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	eventually(t, 60*time.Second, "dns checks succeed again after CoreDNS continued", func() error {
		now, err := f.agentMetrics()
		if err != nil {
			return err
		}
		for _, a := range *f.agents {
			if checkOutcomes(increase(recovered[a.pod], now[a.pod]))["dns"]["success"] == 0 {
				return fmt.Errorf("%s: no dns success yet", a.pod)
			}
		}
		return nil
	})
	f.logf("CoreDNS continued: every agent's dns check succeeds again after %s", time.Since(start).Round(100*time.Millisecond))
}

// aggregatorKilled SIGKILLs the aggregator, keeps it down for a few
// intervals, and starts it again in the same pod with the same arguments.
// The agents must buffer (nothing dropped) and resend; the delta must come
// back; and the new aggregator must have counted exactly the results the
// agents delivered since the kill: none lost, none counted twice.
func (f *faultEnv) aggregatorKilled() {
	t := f.t
	const ingested, skipped = "xosprobe_aggregator_results_total", "xosprobe_aggregator_results_skipped_total"
	const sent, dropped, buffered = "xosprobe_reporter_sent_results_total", "xosprobe_reporter_dropped_results_total", "xosprobe_reporter_buffered_results"
	before, err := f.agentMetrics()
	if err != nil {
		t.Fatal(err)
	}
	old := f.agg.proc
	if err := syscall.Kill(-old.PID(), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	select {
	case <-old.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("aggregator did not die of SIGKILL")
	}
	killed := time.Now()
	// Acknowledgements stop with the aggregator: the agents' sent counters
	// now stay where they are until it is back.
	atKill, err := f.agentMetrics()
	if err != nil {
		t.Fatal(err)
	}
	sentAtKill := sumAgents(atKill, sent, nil)
	f.sleep(5 * f.interval)
	down, err := f.agentMetrics()
	if err != nil {
		t.Fatal(err)
	}
	if s := sumAgents(down, sent, nil); s != sentAtKill {
		t.Errorf("aggregator down: the agents' sent counters moved from %v to %v", sentAtKill, s)
	}
	buf := sumAgents(down, buffered, nil)
	if buf == 0 {
		t.Errorf("aggregator down for %s: the agents buffer nothing", time.Since(killed).Round(time.Second))
	}
	proc, err := f.c.Exec(f.ctx, f.agg.pod, f.agg.spec)
	if err != nil {
		t.Fatal(err)
	}
	f.agg.proc = proc
	restarted := time.Now()

	// The buffered results arrive, and the delta is computed again.
	eventually(t, 90*time.Second, "agents' buffers drained into the restarted aggregator and the delta back", func() error {
		if exited, err := proc.Exited(); exited {
			t.Fatalf("restarted aggregator exited (%v):\n%s", err, proc.LogTail(3000))
		}
		now, err := f.agentMetrics()
		if err != nil {
			return err
		}
		if s := sumAgents(now, sent, nil); s < sentAtKill+buf {
			return fmt.Errorf("sent %v since the kill, %v were buffered", s-sentAtKill, buf)
		}
		ss, err := f.aggMetrics()
		if err != nil {
			return err
		}
		for _, e := range deltaAlertExpected {
			l := map[string]string{"check": e.check, "phase": e.phase, "pair": "linux->windows", "quantile": "0.5"}
			if _, n := sumMetric(ss, "xosprobe_cross_os_delta_seconds", l); n != 1 {
				return fmt.Errorf("no delta %v yet", l)
			}
			if v, _ := sumMetric(ss, "xosprobe_cross_os_delta_insufficient", l); v != 0 {
				return fmt.Errorf("delta %v still insufficient", l)
			}
		}
		return nil
	})
	recovered := time.Since(restarted)

	// Exactly once: read while no agent's sent counter moves around the
	// aggregator's read, so no batch is between counted and acknowledged.
	var sentSince, counted, dups float64
	eventually(t, 30*time.Second, "aggregator count equal to the results the agents delivered since the kill", func() error {
		s1, err := f.agentMetrics()
		if err != nil {
			return err
		}
		ss, err := f.aggMetrics()
		if err != nil {
			return err
		}
		s2, err := f.agentMetrics()
		if err != nil {
			return err
		}
		a, b := sumAgents(s1, sent, nil), sumAgents(s2, sent, nil)
		if a != b {
			return fmt.Errorf("agents sent during the read (%v -> %v)", a, b)
		}
		in, _ := sumMetric(ss, ingested, map[string]string{"source": "agent"})
		sk, _ := sumMetric(ss, skipped, nil)
		sentSince, counted = a-sentAtKill, in+sk
		dups, _ = sumMetric(ss, "xosprobe_aggregator_batches_total", map[string]string{"result": "duplicate"})
		if counted != sentSince {
			return fmt.Errorf("the restarted aggregator counted %v results (%v ingested, %v skipped), the agents delivered %v since the kill", counted, in, sk, sentSince)
		}
		return nil
	})
	after, err := f.agentMetrics()
	if err != nil {
		t.Fatal(err)
	}
	if d := sumAgents(after, dropped, nil) - sumAgents(before, dropped, nil); d != 0 {
		t.Errorf("agents dropped %v results around the aggregator restart", d)
	}
	errs := sumAgents(after, "xosprobe_reporter_send_errors_total", nil) - sumAgents(before, "xosprobe_reporter_send_errors_total", nil)
	f.logf("aggregator SIGKILLed, down %s: agents buffered %v results (0 dropped, %v send errors), the restarted one had the delta back after %s "+
		"and counted %v results = the %v the agents delivered since the kill (%v duplicate batches answered)",
		restarted.Sub(killed).Round(100*time.Millisecond), buf, errs, recovered.Round(100*time.Millisecond), counted, sentSince, dups)
}

// apiserverRestarted restarts kube-apiserver, then starts the agent pod of
// node again (agentDeleted removed it): the other agents' informers and
// Prometheus' service discovery must recover from the restart and pick up
// the new pod (new IP) created after it.
func (f *faultEnv) apiserverRestarted(node *cluster.Node) {
	t := f.t
	start := time.Now()
	if err := f.c.CP.Restart(f.ctx, cluster.KubeAPIServer); err != nil {
		t.Fatal(err)
	}
	restart := time.Since(start)
	before, err := f.agentMetrics()
	if err != nil {
		t.Fatal(err)
	}
	a := f.startAgent(node)
	created := time.Now()
	*f.agents = append(*f.agents, a)
	f.waitPeerChange(t, 60*time.Second, "agents' peer counts with the new agent", before, a, +1)
	peers := time.Since(created)
	eventually(t, 60*time.Second, "Prometheus' target of the new agent up", func() error {
		ts, err := f.prom.targets()
		if err != nil {
			return err
		}
		for _, tg := range ts {
			if tg.Labels["pod"] == a.pod.Name && tg.Health == "up" && strings.HasPrefix(tg.Labels["instance"], a.pod.IP.String()+":") {
				return nil
			}
		}
		return fmt.Errorf("no target up for %s at %s", a.pod, a.pod.IP)
	})
	f.logf("kube-apiserver restarted in %s; the agent pod of %s created after it (new IP %s) was in every agent's peers after %s and scraped by Prometheus after %s",
		restart.Round(100*time.Millisecond), node.Name, a.pod.IP, peers.Round(100*time.Millisecond), time.Since(created).Round(100*time.Millisecond))
}

// agentDeleted deletes the agent pod on node victim. No agent may open a new
// connection to its probe ports later than one interval after the Pod is
// deleted (new conntrack entries in the victim node's namespace, where every
// probe toward the pod passes, direct or through a Service; a retransmitted
// SYN of an earlier probe is no new entry); the other agents' peer counts
// and Prometheus' targets drop it; and no alert starts but the one that says
// a node's agent stopped (XosprobePeersDropped for its OS: with two nodes per
// OS, one agent is half the peers).
func (f *faultEnv) agentDeleted(node *cluster.Node) {
	t := f.t
	victim := node.Name
	i := slices.IndexFunc(*f.agents, func(a mixedPod) bool { return a.pod.Node == node })
	if i < 0 {
		t.Fatalf("no agent on %s", victim)
	}
	a := (*f.agents)[i]
	conns := newConnWatch(a.pod.Node.NetNS, a.pod.IP.String(), portHTTP, portDeny)
	peersBefore, err := f.agentMetrics()
	if err != nil {
		t.Fatal(err)
	}
	alertsBefore, err := f.prom.alerts()
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*f.interval, "new probe connections toward "+a.pod.String()+" in "+a.pod.Node.Name+"'s conntrack table", func() error {
		if n, err := conns.poll(); err != nil || n == 0 {
			return fmt.Errorf("%d new (%v)", n, err)
		}
		return nil
	})

	// Poll every 100 ms while the pod is deleted and four intervals after;
	// the last new connection must be within one interval of the deletion.
	stop, done := make(chan struct{}), make(chan error, 1)
	go func() {
		for {
			if _, err := conns.poll(); err != nil {
				done <- err
				return
			}
			select {
			case <-stop:
				done <- nil
				return
			case <-time.After(100 * time.Millisecond):
			}
		}
	}()
	*f.agents = slices.Delete(*f.agents, i, i+1)
	err = f.c.DeletePod(f.ctx, a.pod) // stops the agent, deletes the Pod object, then the namespace
	deleted := time.Now()
	if err != nil {
		close(stop)
		<-done
		t.Fatal(err)
	}
	f.sleep(4 * f.interval)
	close(stop)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	var late []string
	last := time.Duration(0)
	for _, c := range conns.since(deleted) {
		at := c.seen.Sub(deleted)
		last = max(last, at)
		if at > f.interval {
			late = append(late, fmt.Sprintf("%s at +%s", c.tuple, at.Round(100*time.Millisecond)))
		}
	}
	if len(late) > 0 {
		t.Errorf("agent pod on %s deleted: new probe connections toward it later than one interval (%s): %v", victim, f.interval, late)
	}
	lastAfter := last
	newAfter := len(conns.since(deleted))

	// The informers saw it: peer counts drop by the deleted agent.
	f.waitPeerChange(t, 30*time.Second, "agents' peer counts without the deleted agent", peersBefore, a, -1)
	eventually(t, 60*time.Second, "Prometheus' target of the deleted agent gone", func() error {
		ts, err := f.prom.targets()
		if err != nil {
			return err
		}
		for _, tg := range ts {
			if tg.Labels["pod"] == a.pod.Name {
				return fmt.Errorf("target %v still discovered", tg.Labels)
			}
		}
		return nil
	})

	// No alert storm: ten evaluations later, only the expected alert is new.
	f.sleep(10 * f.interval)
	alertsAfter, err := f.prom.alerts()
	if err != nil {
		t.Fatal(err)
	}
	had := map[string]bool{}
	for _, al := range alertsBefore {
		had[alertKey(al)] = true
	}
	var started []string
	for _, al := range alertsAfter {
		if had[alertKey(al)] {
			continue
		}
		if al.Labels["alertname"] == "XosprobePeersDropped" && al.Labels["dst_os"] == string(a.os) {
			started = append(started, al.String()+" (expected)")
			continue
		}
		if slices.Contains(latencyAlerts, al.Labels["alertname"]) {
			// Not lifecycle: see latencyAlerts.
			started = append(started, al.String()+" (latency, not judged here)")
			continue
		}
		t.Errorf("agent pod on %s deleted: alert %s started", victim, al)
		started = append(started, al.String())
	}
	f.logf("agent pod on %s deleted: %d new probe connections toward it after the deletion, the last %s after it (interval %s); peers and Prometheus targets dropped it; alerts started: %v",
		victim, newAfter, lastAfter.Round(100*time.Millisecond), f.interval, started)
}

// alertKey identifies an alert series whatever its state.
func alertKey(a promAlert) string {
	s := promAlert{Labels: a.Labels}.String()
	return strings.TrimSpace(s)
}
