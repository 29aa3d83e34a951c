package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/utils/ptr"

	"github.com/xosprobe/xosprobe/test/e2e/cluster"
)

const (
	agentSA      = "xosprobe-agent"
	aggregatorSA = "xosprobe-aggregator"
	audience     = "xosprobe-aggregator"
	// The harness plays the kubelet faster than the manifests' pace.
	e2eInterval = "2s"
	// 70 s: the delta alert's p90 needs 50 samples a side, and the
	// linux->linux baseline gets one per second (two agents, one peer each).
	e2eDeltaWindow = 70 * time.Second
	// The aggregator's window is made of 10 s buckets and recomputed every
	// 2 s: this long after a change, it holds only results from after it.
	e2eSettle = e2eDeltaWindow + 12*time.Second
	// The aggregator's trailing window for regressions (default 1h).
	e2eBaselineWindow = 3 * time.Minute
	// Largest accepted difference between the aggregator's delta change and
	// the delayer's hold, unless the delta's CI is wider (groundTruth.bound).
	groundTruthTolerance = 300 * time.Microsecond
	// The widest delta CI (at D=0 or D) of an asserted phase that can still
	// resolve the tolerance; clean windows here are 0.2-0.5 ms wide.
	groundTruthMaxCI = 2 * groundTruthTolerance
	// How many times in all a disturbed stage is measured again.
	groundTruthRetries = 2
	// The ground truth's stages: two asserted delays, then one above the
	// shipped alert threshold.
	groundTruthStages = 3
	// The ground truth's windows at worst: the first baseline, every stage
	// followed by its baseline, and two windows per retry.
	groundTruthWindows = 1 + 2*groundTruthStages + 2*groundTruthRetries
	// TestMixedCluster's budget: its windows, 6 minutes for the rest
	// (setup, the checks before and the faults after take 2-3 minutes) and
	// the no-false-alarm scenarios.
	mixedClusterBudget = groundTruthWindows*e2eSettle + 6*time.Minute + scenariosBudget
)

// mixedPod is a pod the test runs an xosprobe component in.
type mixedPod struct {
	pod  *cluster.Pod
	os   cluster.OS
	proc *cluster.Process
	spec cluster.ExecSpec // to start it again
}

// TestMixedCluster runs the shipped manifests on two Linux and two Windows
// nodes: every manifest goes through the real kube-apiserver (server-side dry
// run, then for real), the harness plays the kubelet for the agent
// DaemonSets and one aggregator replica from their pod templates, and the
// test checks what the system reports against what the cluster is: all four
// OS pairs probed, NetworkPolicy enforced toward Linux pods and not toward
// Windows pods, Windows' single DNS suffix found.
func TestMixedCluster(t *testing.T) {
	ctx, cancel := testContext(t, mixedClusterBudget)
	defer cancel()
	linuxBin, _ := filepath.Abs("../../bin/xosprobe")
	windowsBin, _ := filepath.Abs("../../bin/xosprobe.exe")
	manifestDir, _ := filepath.Abs("../../manifests/base")
	if os.Geteuid() == 0 && !testing.Short() {
		// Checked before the cluster starts; setup skips for the same reasons otherwise.
		for _, b := range []string{linuxBin, windowsBin} {
			if !fileExists(b) {
				t.Skipf("e2e: %s missing (make build in the main module)", b)
			}
		}
		if err := wineReady(); err != nil {
			t.Skipf("e2e: %v", err)
		}
		if os.Getenv("XOSPROBE_E2E_SKIP_BUILD") != "" && !fileExists(filepath.Join(binDir(t), "prometheus")) {
			t.Skipf("e2e: %s missing (run test/e2e/build.sh)", filepath.Join(binDir(t), "prometheus"))
		}
	}
	begin := time.Now()
	// The summary's RESULT lines (results_test.go).
	res := &results{}
	start := time.Now()
	c := setup(t, ctx, true)
	t.Logf("timing: cluster start %s", time.Since(start).Round(time.Millisecond))

	// 1. Nodes, DNS, and every shipped manifest through the real apiserver.
	start = time.Now()
	nodes := map[string]*cluster.Node{}
	var nodeNames []string
	for _, spec := range []struct {
		name string
		os   cluster.OS
	}{{"lin-1", cluster.Linux}, {"lin-2", cluster.Linux}, {"win-1", cluster.Windows}, {"win-2", cluster.Windows}} {
		n, err := c.CreateNode(ctx, spec.name, spec.os, "")
		if err != nil {
			t.Fatal(err)
		}
		nodes[spec.name] = n
		nodeNames = append(nodeNames, spec.name)
	}
	dnsPod, err := c.StartDNS(ctx, nodes["lin-1"])
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("timing: 4 nodes + DNS %s", time.Since(start).Round(time.Millisecond))

	objs, err := loadManifests(manifestDir)
	if err != nil {
		t.Fatal(err)
	}
	ap, err := newApplier(c.CP.REST)
	if err != nil {
		t.Fatal(err)
	}
	var warnings []string
	t.Run("ManifestsAccepted", func(t *testing.T) {
		// Cluster-scoped objects first; a namespaced dry run needs its
		// Namespace to exist, so that one is created (after its own dry run)
		// before the rest are dry-run.
		namespaced := func(m manifestObject) bool { return m.Obj.GetNamespace() != "" }
		for _, pass := range []bool{false, true} {
			for _, m := range objs {
				if namespaced(m) != pass {
					continue
				}
				if err := ap.create(ctx, m.Obj, true); err != nil {
					t.Errorf("dry run of %s rejected: %v", m, err)
				}
				for _, w := range ap.takeWarnings() {
					warnings = append(warnings, m.String()+": "+w)
				}
				if m.Obj.GetKind() == "Namespace" {
					if err := ap.create(ctx, m.Obj, false); err != nil {
						t.Fatalf("create %s: %v", m, err)
					}
					ap.takeWarnings()
				}
			}
		}
		if t.Failed() {
			t.FailNow()
		}
		for _, m := range objs {
			if m.Obj.GetKind() == "Namespace" {
				continue
			}
			if err := ap.create(ctx, m.Obj, false); err != nil {
				t.Errorf("create %s: %v", m, err)
			}
			ap.takeWarnings()
		}
		for _, w := range warnings {
			t.Logf("apiserver warning: %s", w)
		}
		t.Logf("%d manifest objects accepted (dry run, then created)", len(objs))
	})
	if t.Failed() {
		t.FailNow()
	}

	// 2. Play the kubelet from the pod templates.
	start = time.Now()
	tokenDir := filepath.Join(c.WorkDir(), "tokens")
	if err := os.MkdirAll(tokenDir, 0o700); err != nil {
		t.Fatal(err)
	}
	agentKC := inlineKubeconfig(t, ctx, c, agentSA)
	aggKC := inlineKubeconfig(t, ctx, c, aggregatorSA)
	agentToken := projectedToken(t, ctx, c, agentSA, filepath.Join(tokenDir, "agent"))
	aggToken := projectedToken(t, ctx, c, aggregatorSA, filepath.Join(tokenDir, "aggregator"))

	_, dep, err := podTemplate(objs, "Deployment", "xosprobe-aggregator")
	if err != nil {
		t.Fatal(err)
	}
	aggArgs := dep.Template.Spec.Containers[0].Args
	aggArgs = setFlag(aggArgs, "replica-token-file", aggToken)
	aggArgs = setFlag(aggArgs, "delta-window", e2eDeltaWindow.String())
	aggArgs = setFlag(aggArgs, "compute-interval", "2s")
	// Regressions against the last few minutes instead of the last hour, so
	// the ground truth's delays show as one within the test.
	aggArgs = setFlag(aggArgs, "baseline-window", e2eBaselineWindow.String())
	aggArgs = append(aggArgs, "--kubeconfig="+aggKC)
	// One replica: --peer-dns stays; the headless Service lists only this
	// pod, which recognises itself by $POD_IP.
	aggPod := startFromTemplate(t, ctx, c, nodes["lin-2"], "xosprobe-aggregator-0", &dep.Template, linuxBin, aggArgs, false)
	aggOut, err := c.Run(ctx, aggPod.pod, cluster.ExecSpec{Args: append([]string{linuxBin}, append(aggArgs, "--check-config")...)})
	if err != nil {
		t.Fatalf("aggregator --check-config: %v\n%s", err, aggOut)
	}
	t.Logf("aggregator --check-config:\n%s", strings.TrimSpace(aggOut))

	// Flags the agent binary has beyond the manifests' (features of newer builds).
	agentFlags := binaryFlags(t, ctx, linuxBin, "agent")
	// agentFromTemplate plays the kubelet for a pod called name of the agent
	// DaemonSet ds on node n, Ready at once or, with notReady, once the
	// caller saw its readiness probe pass.
	agentFromTemplate := func(n *cluster.Node, name string, ds *appsv1.DaemonSetSpec, notReady bool) mixedPod {
		ds = ds.DeepCopy()
		if n.OS == cluster.Windows {
			podSecurityWorkaround(t, &ds.Template)
		}
		args := ds.Template.Spec.Containers[0].Args
		bin := linuxBin
		if n.OS == cluster.Windows {
			// The kubelet's volumes are in the pod's C: drive
			// (kubeletWineVolumes): the shipped --token-file and the
			// in-cluster config serve as they are, and no --dns-server.
			bin = windowsBin
			args = windowsDNSWorkaround(t, args)
		} else {
			args = setFlag(args, "token-file", agentToken)
			args = append(args, "--kubeconfig="+agentKC)
		}
		args = setFlag(args, "interval", e2eInterval)
		args = setFlag(args, "timeout", e2eInterval) // must not exceed --interval
		if agentFlags["policy-grace"] {
			args = setFlag(args, "policy-grace", e2ePolicyGrace.String())
		}
		if agentFlags["policy-rediscover-interval"] {
			args = setFlag(args, "policy-rediscover-interval", e2ePolicyRediscover.String())
		}
		return startPodFromTemplate(t, ctx, c, n, name, &ds.Template, bin, args, n.OS == cluster.Windows, notReady)
	}
	// startAgent plays the kubelet for the agent DaemonSet of node's OS.
	startAgent := func(n *cluster.Node) mixedPod {
		ds, _, err := podTemplate(objs, "DaemonSet", "xosprobe-agent-"+string(n.OS))
		if err != nil {
			t.Fatal(err)
		}
		return agentFromTemplate(n, "xosprobe-agent-"+n.Name, ds, false)
	}
	var agents []mixedPod
	for _, name := range nodeNames {
		agents = append(agents, startAgent(nodes[name]))
	}
	agentsStarted := time.Now()
	t.Logf("timing: aggregator + 4 agents started %s", time.Since(start).Round(time.Millisecond))

	// Prometheus in a pod on a Linux node, with the shipped config and rules.
	start = time.Now()
	prom := startPrometheus(t, ctx, c, nodes["lin-1"], filepath.Join(binDir(t), "prometheus"))
	promStarted := time.Now()
	t.Logf("timing: Prometheus ready %s", time.Since(start).Round(time.Millisecond))

	// Ground truth for latency: NFQUEUE delayers on the path into the Windows
	// pods, holding 0 until the measurement changes it.
	groundTruthOn := os.Getenv("XOSPROBE_E2E_GROUND_TRUTH") != "0"
	var delay *delayers
	if groundTruthOn {
		var winPods []*cluster.Pod
		var linuxIPs []string
		for _, a := range append([]mixedPod{aggPod}, agents...) {
			if a.os == cluster.Windows {
				winPods = append(winPods, a.pod)
			} else if a.pod != aggPod.pod {
				linuxIPs = append(linuxIPs, a.pod.IP.String())
			}
		}
		delay = startDelayers(t, ctx, winPods, linuxIPs)
	}

	get := func(p *cluster.Pod, url string) (string, error) { return podGet(ctx, p, url) }
	metricsOf := func(a mixedPod) ([]sample, error) { return podMetrics(ctx, a.pod, 9445) }
	readMatrix := func() (*matrixDoc, error) {
		out, err := get(aggPod.pod, "http://127.0.0.1:9446/matrix")
		if err != nil {
			return nil, err
		}
		var m matrixDoc
		if err := json.Unmarshal([]byte(out), &m); err != nil {
			return nil, fmt.Errorf("/matrix: %w: %.300s", err, out)
		}
		return &m, nil
	}
	alive := func() error {
		for _, p := range append([]mixedPod{aggPod}, agents...) {
			if exited, err := p.proc.Exited(); exited {
				return fmt.Errorf("%s in %s exited (%v):\n%s", p.proc.Name, p.pod, err, p.proc.LogTail(30))
			}
		}
		return nil
	}

	// Every node pair's tcp check reached the aggregator as a success, and
	// /matrix has all four OS pairs.
	start = time.Now()
	pairs := []string{"linux->linux", "linux->windows", "windows->linux", "windows->windows"}
	var matrix *matrixDoc
	eventually(t, 150*time.Second, "all four OS pairs with successful tcp results in /matrix", func() error {
		if err := alive(); err != nil {
			t.Fatal(err)
		}
		m, err := readMatrix()
		if err != nil {
			return err
		}
		got := map[string]bool{}
		for _, p := range m.Pairs {
			if tcp, ok := p.Checks["tcp"]; ok && tcp.Samples > 0 && tcp.SuccessRate > 0 {
				got[p.Pair] = true
			}
		}
		var missing []string
		for _, p := range pairs {
			if !got[p] {
				missing = append(missing, p)
			}
		}
		// And every ordered node pair's latest tcp result is a success.
		ok := map[string]bool{}
		for _, cell := range m.Cells {
			if cell.Check == "tcp" && cell.Outcome == "success" {
				ok[cell.Src+">"+cell.Dst] = true
			}
		}
		for _, s := range nodeNames {
			for _, d := range nodeNames {
				if s != d && !ok[s+">"+d] {
					missing = append(missing, "cell "+s+"->"+d)
				}
			}
		}
		if len(missing) > 0 {
			return fmt.Errorf("missing %v", missing)
		}
		matrix = m
		return nil
	})
	t.Logf("timing: all pairs in /matrix %s", time.Since(start).Round(time.Millisecond))

	// 3. NetworkPolicy and DNS as the agents report them. Counters are read
	// as increases from now on: before every responder listened, a deny
	// check could meet a closed port (a reset, i.e. "blocked").
	var enforcement []string
	baseline := map[*cluster.Pod][]sample{}
	for _, a := range agents {
		ss, err := metricsOf(a)
		if err != nil {
			t.Fatal(err)
		}
		baseline[a.pod] = ss
	}
	t.Run("NetworkPolicyFromMetrics", func(t *testing.T) {
		for _, a := range agents {
			eventually(t, 60*time.Second, "netpol-deny results of "+a.pod.String(), func() error {
				now, err := metricsOf(a)
				if err != nil {
					return err
				}
				ss := increase(baseline[a.pod], now)
				src := string(a.os)
				blocked, _ := sumMetric(ss, "xosprobe_probe_total", map[string]string{"check": "netpol-deny", "src_os": src, "dst_os": "linux", "result": "success"})
				leakLinux, _ := sumMetric(ss, "xosprobe_probe_total", map[string]string{"check": "netpol-deny", "src_os": src, "dst_os": "linux", "result": "policy_not_enforced"})
				if blocked == 0 || leakLinux != 0 {
					return fmt.Errorf("netpol-deny toward linux: %v blocked, %v not enforced; want >0 and 0", blocked, leakLinux)
				}
				if a.os == cluster.Linux {
					leak, _ := sumMetric(ss, "xosprobe_probe_total", map[string]string{"check": "netpol-deny", "src_os": src, "dst_os": "windows", "result": "policy_not_enforced"})
					okWin, _ := sumMetric(ss, "xosprobe_probe_total", map[string]string{"check": "netpol-deny", "src_os": src, "dst_os": "windows", "result": "success"})
					if leak == 0 || okWin != 0 {
						return fmt.Errorf("netpol-deny toward windows: %v not enforced, %v blocked; want >0 and 0", leak, okWin)
					}
					rl, nl := sumMetric(now, "xosprobe_netpol_enforced_ratio", map[string]string{"dst_os": "linux"})
					rw, nw := sumMetric(now, "xosprobe_netpol_enforced_ratio", map[string]string{"dst_os": "windows"})
					if nl != 1 || nw != 1 || rl != 1 || rw != 0 {
						return fmt.Errorf("xosprobe_netpol_enforced_ratio: linux %v (%d series), windows %v (%d series); want 1 and 0", rl, nl, rw, nw)
					}
					enforcement = append(enforcement, fmt.Sprintf("%s: enforced_ratio toward linux %.2f, toward windows %.2f", a.pod.Node.Name, rl, rw))
				}
				return nil
			})
		}
	})

	t.Run("CheckInLinuxAgentPod", func(t *testing.T) {
		a := agents[0]
		var out string
		eventually(t, 30*time.Second, "xosprobe check in "+a.pod.String(), func() error {
			var err error
			out, err = c.Run(ctx, a.pod, cluster.ExecSpec{Args: []string{linuxBin, "check", "--kubeconfig=" + agentKC}})
			// Exit 1 is expected: the deny port of the Windows agent accepts.
			for _, re := range []string{`NetworkPolicy toward [^\n]*linux[^\n]*: enforced`, `NetworkPolicy toward [^\n]*windows[^\n]*: NOT enforced`} {
				if !regexp.MustCompile(re).MatchString(out) {
					return fmt.Errorf("output lacks %q (exit: %v):\n%s", re, err, out)
				}
			}
			return nil
		})
		t.Logf("xosprobe check in %s:\n%s", a.pod, out)
	})

	t.Run("WindowsShortNameFinding", func(t *testing.T) {
		for _, a := range agents {
			if a.os != cluster.Windows {
				continue
			}
			eventually(t, 60*time.Second, "short_name_fails from "+a.pod.String(), func() error {
				ss, err := metricsOf(a)
				if err != nil {
					return err
				}
				v, _ := sumMetric(ss, "xosprobe_dns_findings_total", map[string]string{"finding": "short_name_fails", "src_os": "windows"})
				if v == 0 {
					return fmt.Errorf("xosprobe_dns_findings_total{finding=short_name_fails,src_os=windows} is 0")
				}
				return nil
			})
		}
		// Linux pods walk the search list: no such finding from them.
		for _, a := range agents {
			if a.os != cluster.Linux {
				continue
			}
			ss, err := metricsOf(a)
			if err != nil {
				t.Fatal(err)
			}
			if v, _ := sumMetric(ss, "xosprobe_dns_findings_total", map[string]string{"finding": "short_name_fails"}); v != 0 {
				t.Errorf("%s reports short_name_fails %v times; Linux pods have the full search list", a.pod, v)
			}
		}
	})

	// Windows pods as close to nanoserver as Wine allows (winepods_test.go).
	res.Run(t, "wine-no-host-root", func(t *testing.T, r *result) { wineNoHostRoot(t, ctx, c, agents, r) })
	res.Run(t, "windows-dns-direct", func(t *testing.T, r *result) { windowsDNSDirect(t, ctx, agents, r) })

	t.Run("PrometheusDiscoversAndScrapes", func(t *testing.T) {
		// Kubernetes SD finds every agent and the aggregator, the shipped
		// relabelling names them, and every scrape succeeds.
		want := map[string]string{aggPod.pod.Name: "xosprobe-aggregator"}
		for _, a := range agents {
			want[a.pod.Name] = "xosprobe-agent"
		}
		eventually(t, 90*time.Second, "Prometheus targets", func() error {
			ts, err := prom.targets()
			if err != nil {
				return err
			}
			got := map[string]string{}
			for _, tg := range ts {
				if tg.Health != "up" {
					return fmt.Errorf("target %v: %s %s", tg.Labels, tg.Health, tg.LastError)
				}
				got[tg.Labels["pod"]] = tg.Labels["job"]
				if tg.Labels["namespace"] != probeNS || tg.Labels["node"] == "" {
					return fmt.Errorf("target %v lacks the shipped relabelling's namespace/node", tg.Labels)
				}
			}
			if fmt.Sprint(got) != fmt.Sprint(want) {
				return fmt.Errorf("targets (pod: job) %v, want %v", got, want)
			}
			return nil
		})
		n, bad, err := prom.rulesHealth()
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 || len(bad) > 0 {
			t.Errorf("%d rules loaded; unhealthy: %v", n, bad)
		}
		t.Logf("Prometheus: %d targets up (agents and aggregator by Kubernetes SD), %d rules healthy", len(want), n)
	})

	if m, err := readMatrix(); err == nil {
		matrix = m
	}
	if err := alive(); err != nil {
		t.Error(err)
	}

	// 4. Ground truth: the change of the linux->windows delta p50 between
	// D=0 and D must be the hold the delayers applied.
	var gt []groundTruth
	var alert *deltaAlertWatch
	if groundTruthOn && !t.Failed() {
		start = time.Now()
		aggMetrics := func() ([]sample, error) { return podMetrics(ctx, aggPod.pod, 9446) }
		// Two asserted delays, then one above the shipped alert threshold; the
		// array's length is the one the test's budget counts.
		alert = newDeltaAlertWatch(t, prom)
		stages := [groundTruthStages]gtStage{{2 * time.Millisecond, true}, {5 * time.Millisecond, true}, {alert.threshold + 5*time.Millisecond, false}}
		gt = runGroundTruth(t, ctx, delay, stages[:], e2eSettle, time.Since(agentsStarted), aggMetrics,
			func() {
				// The summary's /matrix: a full window, all at D=0.
				if m, err := readMatrix(); err == nil {
					matrix = m
				}
			}, alert.stage, func() { alert.resolve(e2eSettle + 30*time.Second) })
		delay.stop(t)
		for _, g := range gt {
			if e, bound := g.Observed-g.Hold, g.bound(); g.Asserted && (e > bound || e < -bound) {
				t.Errorf("ground truth D=%s %s %s: the delta p50 moved %s, the delayer held %s (error %s, bound %s: the tolerance %s or the delta CI's width %s)",
					g.D, g.Check, g.Phase, g.Observed, g.Hold, e, bound, groundTruthTolerance, g.CIWidth)
			}
		}
		if err := alive(); err != nil {
			t.Error(err)
		}
		t.Logf("timing: ground truth %s", time.Since(start).Round(time.Millisecond))
	} else if !groundTruthOn {
		t.Log("ground truth skipped (XOSPROBE_E2E_GROUND_TRUTH=0)")
	}
	// 5. Faults, each after the previous one recovered.
	f := &faultEnv{ctx: ctx, c: c, agents: &agents, agg: &aggPod, dns: dnsPod, prom: prom, interval: 2 * time.Second, startAgent: startAgent}
	for _, fault := range []struct {
		name string
		run  func()
	}{
		{"FaultCoreDNSStopped", f.dnsStopped},
		{"FaultAggregatorKilled", f.aggregatorKilled},
		{"FaultAgentPodDeleted", func() { f.agentDeleted(nodes["win-2"]) }},
		{"FaultAPIServerRestarted", func() { f.apiserverRestarted(nodes["win-2"]) }},
	} {
		if ctx.Err() != nil {
			t.Fatalf("%s not run: the test's budget of %s ran out (%v)", fault.name, mixedClusterBudget, ctx.Err())
		}
		start = time.Now()
		t.Run(fault.name, func(t *testing.T) {
			f.t = t
			fault.run()
		})
		t.Logf("timing: %s %s", fault.name, time.Since(start).Round(time.Millisecond))
		if err := alive(); err != nil {
			t.Fatal(err)
		}
	}

	// 6. No false alarms (issue #18): rollouts, drains, restarts and policy
	// changes, each with its RESULT line.
	repoRoot, _ := filepath.Abs("../..")
	le := &lifecycleEnv{faultEnv: f, nodes: nodes, agentFromTemplate: agentFromTemplate, agentFlags: agentFlags, repoRoot: repoRoot,
		aggFromTemplate: func(n *cluster.Node, name string, tmpl *corev1.PodTemplateSpec, notReady bool) mixedPod {
			return startPodFromTemplate(t, ctx, c, n, name, tmpl, linuxBin, aggArgs, false, notReady)
		}}
	le.run(t, res)
	if err := alive(); err != nil {
		t.Error(err) // not Fatal: the summary with the RESULT lines still prints
	}

	// 7. Every dashboard query returned data at some point of the run.
	var promLines []string
	t.Run("DashboardQueries", func(t *testing.T) {
		n, withData, empty, listed, stale, err := dashboardCoverage(prom, "../../dashboards/queries.txt", "prometheus-empty-ok.txt", promStarted, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		for _, q := range empty {
			t.Errorf("dashboard query returned no data during the run: %s", q)
		}
		for _, q := range stale {
			t.Errorf("prometheus-empty-ok.txt lists a query that is not in dashboards/queries.txt: %s", q)
		}
		promLines = append(promLines, fmt.Sprintf("dashboard queries: %d, %d with data, %d empty as listed in prometheus-empty-ok.txt, %d empty unlisted", n, withData, len(listed), len(empty)))
		for _, q := range listed {
			promLines = append(promLines, "  empty as listed: "+q)
		}
	})
	if alert != nil {
		promLines = append(alert.Lines, promLines...)
	}
	printSummary(t, matrix, enforcement, gt, promLines, f.Lines, res.Lines())
	t.Logf("timing: TestMixedCluster body %s", time.Since(begin).Round(time.Millisecond))
}

// startFromTemplate creates a pod from a workload's pod template on node (its
// labels, container ports, ServiceAccount and security contexts) and starts
// the container's args with bin, as a kubelet would start the image.
func startFromTemplate(t *testing.T, ctx context.Context, c *cluster.Cluster, n *cluster.Node, name string,
	tmpl *corev1.PodTemplateSpec, bin string, args []string, wine bool) mixedPod {
	t.Helper()
	return startPodFromTemplate(t, ctx, c, n, name, tmpl, bin, args, wine, false)
}

// startPodFromTemplate is startFromTemplate; notReady creates the pod not
// Ready, as before its readiness probe first passes (cluster.SetReady).
func startPodFromTemplate(t *testing.T, ctx context.Context, c *cluster.Cluster, n *cluster.Node, name string,
	tmpl *corev1.PodTemplateSpec, bin string, args []string, wine, notReady bool) mixedPod {
	t.Helper()
	ctr := tmpl.Spec.Containers[0]
	p, err := c.CreatePod(ctx, n, cluster.PodSpec{
		Namespace: probeNS, Name: name,
		Labels:                   tmpl.Labels,
		Ports:                    ctr.Ports,
		ServiceAccount:           tmpl.Spec.ServiceAccountName,
		SecurityContext:          tmpl.Spec.SecurityContext,
		ContainerSecurityContext: ctr.SecurityContext,
		NotReady:                 notReady,
	})
	if err != nil {
		t.Fatalf("pod %s from the %s template: %v", name, ctr.Name, err)
	}
	env, err := downwardEnv(&ctr, p)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	if wine {
		t.Logf("%s: kubelet volumes in its C: drive: %s", p, strings.Join(kubeletWineVolumes(t, ctx, c, p, tmpl), ", "))
	}
	spec := cluster.ExecSpec{Args: append([]string{bin}, args...), Env: env, Wine: wine, Name: ctr.Name}
	proc, err := c.Exec(ctx, p, spec)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%s on %s (%s): %s %s", p, n.Name, p.IP, filepath.Base(bin), strings.Join(args, " "))
	return mixedPod{pod: p, os: n.OS, proc: proc, spec: spec}
}

// downwardEnv is the container's environment with its downward-API fields
// resolved for pod p, as the kubelet would.
func downwardEnv(ctr *corev1.Container, p *cluster.Pod) ([]string, error) {
	var env []string
	for _, e := range ctr.Env {
		v := e.Value
		if e.ValueFrom != nil && e.ValueFrom.FieldRef != nil {
			switch e.ValueFrom.FieldRef.FieldPath {
			case "spec.nodeName":
				v = p.Node.Name
			case "metadata.name":
				v = p.Name
			case "metadata.namespace":
				v = p.Namespace
			case "status.podIP":
				v = p.IP.String()
			default:
				return nil, fmt.Errorf("env %s: fieldPath %s not handled by the test", e.Name, e.ValueFrom.FieldRef.FieldPath)
			}
		} else if e.ValueFrom != nil {
			return nil, fmt.Errorf("env %s: only fieldRef sources are handled by the test", e.Name)
		}
		env = append(env, e.Name+"="+v)
	}
	return env, nil
}

// increase is now minus base for counters (by name and labels); other
// samples as they are now.
func increase(base, now []sample) []sample {
	key := func(s sample) string {
		var b strings.Builder
		b.WriteString(s.Name)
		var ks []string
		for k := range s.Labels {
			ks = append(ks, k)
		}
		sort.Strings(ks)
		for _, k := range ks {
			b.WriteString("," + k + "=" + s.Labels[k])
		}
		return b.String()
	}
	prev := map[string]float64{}
	for _, s := range base {
		prev[key(s)] = s.Value
	}
	out := make([]sample, 0, len(now))
	for _, s := range now {
		if strings.HasSuffix(s.Name, "_total") {
			s.Value -= prev[key(s)]
		}
		out = append(out, s)
	}
	return out
}

// strictKnownBugs makes the workarounds for known product bugs failures.
func strictKnownBugs() bool { return os.Getenv("XOSPROBE_E2E_STRICT") != "" }

// knownBug logs a product bug the test works around, or fails on it when
// XOSPROBE_E2E_STRICT is set.
func knownBug(t *testing.T, format string, args ...any) {
	t.Helper()
	if strictKnownBugs() {
		t.Errorf("PRODUCT BUG: "+format, args...)
		return
	}
	t.Logf("PRODUCT BUG (worked around; XOSPROBE_E2E_STRICT=1 fails on it): "+format, args...)
}

// podSecurityWorkaround: the xosprobe Namespace enforces Pod Security
// "restricted", which requires runAsNonRoot also of Windows pods, and the
// Windows agent template (agent-windows.yaml) does not set it, so the
// apiserver rejects every Windows agent pod. The test adds it (the fix:
// securityContext.runAsNonRoot: true next to windowsOptions.runAsUserName).
func podSecurityWorkaround(t *testing.T, tmpl *corev1.PodTemplateSpec) {
	t.Helper()
	sc := tmpl.Spec.SecurityContext
	if sc != nil && sc.RunAsNonRoot != nil && *sc.RunAsNonRoot {
		return
	}
	if ctr := tmpl.Spec.Containers[0].SecurityContext; ctr != nil && ctr.RunAsNonRoot != nil && *ctr.RunAsNonRoot {
		return
	}
	knownBug(t, "manifests/base/agent-windows.yaml: the pod template lacks securityContext.runAsNonRoot: true; "+
		"the xosprobe Namespace enforces Pod Security restricted, so the apiserver rejects every Windows agent pod")
	if sc == nil {
		sc = &corev1.PodSecurityContext{}
		tmpl.Spec.SecurityContext = sc
	}
	sc.RunAsNonRoot = ptr.To(true)
}

// windowsDNSWorkaround: agent-windows.yaml sends results to
// http://xosprobe-aggregator.xosprobe.svc:9446, the svc.ns.svc form that
// Windows' single DNS suffix cannot resolve (the very finding the dns check
// reports), so no Windows agent result ever reaches the aggregator. The test
// uses the FQDN (the fix).
func windowsDNSWorkaround(t *testing.T, args []string) []string {
	t.Helper()
	u, ok := flagValue(args, "aggregator-url")
	if !ok {
		return args
	}
	host := strings.TrimPrefix(strings.TrimPrefix(u, "http://"), "https://")
	host, _, _ = strings.Cut(host, ":")
	if !strings.HasSuffix(host, ".svc") {
		return args
	}
	knownBug(t, "manifests/base/agent-windows.yaml: --aggregator-url=%s is not fully qualified; Windows pods (single DNS suffix) "+
		"cannot resolve %s, so Windows agents never deliver a result. Use %s.%s", u, host, host, cluster.ClusterDomain)
	return setFlag(args, "aggregator-url", strings.Replace(u, host, host+"."+cluster.ClusterDomain, 1))
}

// inlineKubeconfig is ServiceAccountKubeconfig with the CA inlined, so the
// Windows binary under Wine does not need to open a Unix path.
func inlineKubeconfig(t *testing.T, ctx context.Context, c *cluster.Cluster, sa string) string {
	t.Helper()
	path, err := c.ServiceAccountKubeconfig(ctx, probeNS, sa)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := clientcmd.LoadFromFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, cl := range cfg.Clusters {
		if cl.CertificateAuthority != "" {
			if cl.CertificateAuthorityData, err = os.ReadFile(cl.CertificateAuthority); err != nil {
				t.Fatal(err)
			}
			cl.CertificateAuthority = ""
		}
	}
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		t.Fatal(err)
	}
	return path
}

// projectedToken stands in for the manifests' projected serviceAccountToken
// volume: a TokenRequest for audience xosprobe-aggregator, written to path.
func projectedToken(t *testing.T, ctx context.Context, c *cluster.Cluster, sa, path string) string {
	t.Helper()
	tr, err := c.Client.CoreV1().ServiceAccounts(probeNS).CreateToken(ctx, sa, &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{Audiences: []string{audience}, ExpirationSeconds: ptr.To[int64](3600)},
	}, metav1.CreateOptions{})
	if err != nil {
		if apierrors.IsNotFound(err) {
			t.Fatalf("ServiceAccount %s/%s missing: the manifests should create it", probeNS, sa)
		}
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(tr.Status.Token), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// groundTruth is one delayer run's comparison.
type groundTruth struct {
	D        time.Duration
	Check    string
	Phase    string
	Hold     time.Duration // median hold the delayer measured
	Observed time.Duration // change of the aggregator's delta p50
	Asserted bool          // held to bound()
	CIWidth  time.Duration // the wider of the delta's confidence intervals at D=0 and D
	Steal    float64       // the larger share of CPU time the hypervisor took in the D=0 and D windows
}

// bound is the largest error asserted: the tolerance, or the width of the
// delta's CI when that is wider. A stage still disturbed after its retries
// (the hypervisor taking 10-16% of the vCPUs widens CIs to 0.6-1.6 ms)
// cannot resolve the tolerance; its error is then held to what the
// measurement itself can tell apart. Precise stages keep the tolerance.
func (g groundTruth) bound() time.Duration { return max(groundTruthTolerance, g.CIWidth) }

// printSummary logs the per-pair table of /matrix, policy enforcement and
// the ground-truth errors.
func printSummary(t *testing.T, m *matrixDoc, enforcement []string, gt []groundTruth, prometheus, faults, resultLines []string) {
	t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "\n== xosprobe e2e summary ==\n")
	if m != nil {
		fmt.Fprintf(&b, "/matrix window %s\n", m.Window)
		fmt.Fprintf(&b, "%-17s %-13s %8s %8s %-10s %10s %10s %10s %11s\n", "pair", "check", "samples", "success", "phase", "p50", "p90", "p99", "delta p50")
		pairs := slices.Clone(m.Pairs)
		sort.Slice(pairs, func(i, j int) bool { return pairs[i].Pair < pairs[j].Pair })
		for _, p := range pairs {
			var checks []string
			for c := range p.Checks {
				checks = append(checks, c)
			}
			sort.Strings(checks)
			for _, cn := range checks {
				cs := p.Checks[cn]
				var phases []string
				for ph := range cs.Phases {
					phases = append(phases, ph)
				}
				sort.Strings(phases)
				if len(phases) == 0 {
					fmt.Fprintf(&b, "%-17s %-13s %8d %7.1f%%\n", p.Pair, cn, cs.Samples, 100*cs.SuccessRate)
				}
				for _, ph := range phases {
					s := cs.Phases[ph]
					d := "-"
					if s.DeltaP50 != nil {
						d = ms(s.DeltaP50.Seconds)
					}
					fmt.Fprintf(&b, "%-17s %-13s %8d %7.1f%% %-10s %10s %10s %10s %11s\n", p.Pair, cn, cs.Samples, 100*cs.SuccessRate, ph, ms(s.P50), ms(s.P90), ms(s.P99), d)
				}
			}
		}
	}
	fmt.Fprintf(&b, "NetworkPolicy: enforced toward linux (kube-router), not toward windows (no enforcer)\n")
	for _, e := range enforcement {
		fmt.Fprintf(&b, "  %s\n", e)
	}
	if len(gt) > 0 {
		fmt.Fprintf(&b, "ground truth (NFQUEUE hold on packets into Windows pods):\n")
		fmt.Fprintf(&b, "  %-6s %-6s %-10s %12s %14s %10s %12s %6s  %s\n", "D", "check", "phase", "median hold", "delta change", "error", "delta CI", "steal", "asserted within")
		for _, g := range gt {
			within := "-"
			if g.Asserted {
				within = "±" + g.bound().Round(time.Microsecond).String()
			}
			fmt.Fprintf(&b, "  %-6s %-6s %-10s %12s %14s %10s %12s %5.1f%%  %s\n", g.D, g.Check, g.Phase, g.Hold.Round(time.Microsecond),
				g.Observed.Round(time.Microsecond), (g.Observed - g.Hold).Round(time.Microsecond), g.CIWidth.Round(time.Microsecond), 100*g.Steal, within)
		}
	}
	for _, sec := range []struct {
		title string
		lines []string
	}{{"Prometheus (shipped config and rules)", prometheus}, {"faults", faults}} {
		if len(sec.lines) > 0 {
			fmt.Fprintf(&b, "%s:\n  %s\n", sec.title, strings.Join(sec.lines, "\n  "))
		}
	}
	// Last and without a section indent: one grep of "RESULT " lists them.
	for _, l := range resultLines {
		fmt.Fprintf(&b, "%s\n", l)
	}
	t.Log(b.String())
}

func ms(s float64) string { return fmt.Sprintf("%.3fms", s*1e3) }
