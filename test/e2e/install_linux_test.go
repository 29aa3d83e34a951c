package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	"github.com/xosprobe/xosprobe/test/e2e/cluster"
)

// The shipped images' references: the chart's defaults (image.*,
// appVersion), as the Makefile's IMAGE and IMAGE_TAG name them.
const (
	shippedLinuxImage   = "ghcr.io/xosprobe/xosprobe:dev-linux"
	shippedWindowsImage = "ghcr.io/xosprobe/xosprobe:dev-windows"
	promImage           = "xosprobe-e2e.local/prometheus:1"
)

// TestShippedInstall installs xosprobe as an operator does, with the README's
// own commands, on a box whose Linux nodes are real kubelet nodes
// (containerd, runc, CNI) running the image `make image-linux` built, and
// whose Windows nodes are harness nodes whose kubelet (windowsKubelet) runs
// the pods the scheduler binds to them under Wine:
//
//   - `helm install` of charts/xosprobe (the box has no registry: pull
//     policy IfNotPresent); kube-scheduler, the DaemonSet and Deployment
//     controllers make and place every pod;
//   - helm-install: the release deployed by server-side apply, the kustomize
//     install accepted as the same objects, a values variant accepted;
//   - kubelet-linux-pods: both Linux agents, both aggregator replicas and
//     Prometheus (the shipped config, in-cluster discovery) Running and Ready
//     on kubelet nodes from the imported images, scheduled by the scheduler,
//     with the securityContext enforced as read from /proc;
//   - in-cluster-config: no pod got a kubeconfig; the agents' informers found
//     their peers and the aggregator admitted every agent's results with the
//     kubelet-mounted audience-bound token;
//   - kubectl-exec-check-linux: `kubectl exec -n xosprobe
//     ds/xosprobe-agent-linux -- xosprobe check` through the apiserver and
//     the kubelet prints both OSes' rows;
//   - pdb-aggregator: the PodDisruptionBudget lets one aggregator replica be
//     evicted and refuses the second;
//   - daemonset-rolling-update: `kubectl rollout restart` of both agent
//     DaemonSets, `kubectl rollout status` until every pod is replaced;
//   - ground-truth-kubelet-nodes: TestMixedCluster's latency ground truth
//     (D = 5 ms) with the Linux agents in kubelet pods;
//   - helm-uninstall: nothing of the release stays.
func TestShippedInstall(t *testing.T) {
	ctx, cancel := testContext(t, 20*time.Minute)
	defer cancel()
	root, _ := filepath.Abs("../..")
	linuxImage := filepath.Join(root, "bin", "xosprobe-linux.oci.tar")
	windowsBin := filepath.Join(root, "bin", "xosprobe.exe")
	helmBin := filepath.Join(root, "bin", "helm")
	if os.Geteuid() == 0 && !testing.Short() {
		for _, f := range []string{linuxImage, windowsBin, helmBin} {
			if !fileExists(f) {
				t.Skipf("e2e: %s missing (make build image-linux bin/helm in the main module)", f)
			}
		}
		if err := wineReady(); err != nil {
			t.Skipf("e2e: %v", err)
		}
	}
	// kube-router, the scheduler and workload controllers, each OS's
	// harness pods on CPUs of their own.
	c := startKubeletCluster(t, ctx, cluster.Config{NetworkPolicy: true, Workloads: true, CPUs: cpusByOS()},
		"kube-scheduler", "kubectl", "prometheus")
	bin := binDir(t)
	// An operator's client, run from the work tree against the box's apiserver.
	client := func(binary string, env ...string) func(ctx context.Context, args ...string) (string, error) {
		return func(ctx context.Context, args ...string) (string, error) {
			cmd := exec.CommandContext(ctx, binary, append([]string{"--kubeconfig", c.CP.Kubeconfig}, args...)...)
			cmd.Dir = root
			cmd.Env = append(os.Environ(), env...)
			out, err := cmd.CombinedOutput()
			return string(out), err
		}
	}
	kubectl := client(filepath.Join(bin, "kubectl"))
	// Helm v4 (make e2e builds bin/helm from test/chart's tool directive),
	// its configuration and cache in the test's work directory.
	home := filepath.Join(c.WorkDir(), "helm")
	helm := client(helmBin, "HELM_CONFIG_HOME="+home+"/config", "HELM_CACHE_HOME="+home+"/cache", "HELM_DATA_HOME="+home+"/data")
	res := &results{}
	defer func() {
		t.Logf("\n== shipped install summary ==\n%s", strings.Join(res.Lines(), "\n"))
	}()

	// Nodes: two real kubelet nodes, two harness Windows nodes.
	start := time.Now()
	kcfg := cluster.KubeletConfig{PauseBinary: buildPodtool(t, ctx, c.WorkDir())}
	var linux []*cluster.Node
	for _, name := range []string{"lin-1", "lin-2"} {
		n, err := c.CreateKubeletNode(ctx, name, "", kcfg)
		if err != nil {
			t.Fatalf("kubelet node: %v", err)
		}
		linux = append(linux, n)
	}
	var windows []*cluster.Node
	for _, name := range []string{"win-1", "win-2"} {
		n, err := c.CreateNode(ctx, name, cluster.Windows, "")
		if err != nil {
			t.Fatal(err)
		}
		windows = append(windows, n)
		startWindowsKubelet(t, ctx, c, n, map[string]string{shippedWindowsImage: windowsBin})
	}
	if _, err := c.StartDNS(ctx, linux[0]); err != nil {
		t.Fatal(err)
	}
	promTar := filepath.Join(c.WorkDir(), "prometheus.oci.tar")
	if err := writeBinaryImage(promTar, promImage, filepath.Join(bin, "prometheus"), "65534"); err != nil {
		t.Fatal(err)
	}
	for _, n := range linux {
		for _, tar := range []string{linuxImage, promTar} {
			if err := n.Kubelet.ImportImage(ctx, tar); err != nil {
				t.Fatal(err)
			}
		}
	}
	t.Logf("timing: 2 kubelet nodes, 2 Windows nodes, DNS, images %s", time.Since(start).Round(time.Millisecond))

	// The README's install line, as an operator runs it. The box has no
	// registry: its images are imported into each node's containerd, so the
	// one value that differs is the pull policy (Always for a tag, by
	// default).
	start = time.Now()
	helmArgs := []string{"install", "xosprobe", "charts/xosprobe", "--namespace", probeNS, "--create-namespace",
		"--set", "image.pullPolicy=IfNotPresent"}
	out, err := helm(ctx, helmArgs...)
	if err != nil {
		t.Fatalf("helm %s: %v\n%s", strings.Join(helmArgs, " "), err, out)
	}
	t.Logf("helm %s:\n%s", strings.Join(helmArgs, " "), strings.TrimSpace(out))
	helmTook := time.Since(start)
	deployPrometheus(t, ctx, c, linux[0].Name)

	// Every workload rolled out by its controller.
	for _, w := range []string{"xosprobe/daemonset/xosprobe-agent-linux", "xosprobe/daemonset/xosprobe-agent-windows",
		"xosprobe/deployment/xosprobe-aggregator", promNS + "/deployment/" + promName} {
		ns, obj, _ := strings.Cut(w, "/")
		if out, err := kubectl(ctx, "-n", ns, "rollout", "status", obj, "--timeout=4m"); err != nil {
			t.Fatalf("kubectl rollout status %s: %v\n%s\n%s", w, err, out, installDiagnosis(ctx, c, linux))
		}
	}
	installed := time.Since(start)
	t.Logf("timing: installed and rolled out %s", installed.Round(time.Millisecond))

	const aggregators, prometheus = "app.kubernetes.io/component=aggregator", "app.kubernetes.io/name=prometheus"
	agents := func(t *testing.T, nodeOS cluster.OS) []corev1.Pod {
		t.Helper()
		return listPods(t, ctx, c, probeNS, "app.kubernetes.io/component=agent,xosprobe.io/os="+string(nodeOS))
	}

	res.Run(t, "helm-install", func(t *testing.T, r *result) {
		out, err := helm(ctx, "status", "xosprobe", "--namespace", probeNS, "-o", "json")
		if err != nil {
			t.Fatalf("helm status: %v\n%s", err, out)
		}
		var st struct {
			Info struct {
				Status string `json:"status"`
			} `json:"info"`
		}
		if err := json.Unmarshal([]byte(out), &st); err != nil || st.Info.Status != "deployed" {
			t.Fatalf("helm status: %q (%v)", st.Info.Status, err)
		}
		// Helm v4 applies server-side: each workload's fields are owned
		// by an Apply operation of Helm's field manager.
		ds, err := c.Client.AppsV1().DaemonSets(probeNS).Get(ctx, "xosprobe-agent-linux", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		var managers []string
		for _, mf := range ds.ManagedFields {
			managers = append(managers, mf.Manager+"/"+string(mf.Operation))
		}
		if !slices.Contains(managers, "helm/Apply") || ds.Labels["app.kubernetes.io/managed-by"] != "Helm" {
			t.Errorf("DaemonSet xosprobe-agent-linux: field managers %v, managed-by %q; want helm/Apply and Helm", managers, ds.Labels["app.kubernetes.io/managed-by"])
		}
		// The kustomize install is the same objects (test/chart proves it
		// object by object); the apiserver takes it as an update of them.
		if out, err := kubectl(ctx, "apply", "-k", "manifests/", "--server-side", "--force-conflicts", "--dry-run=server"); err != nil {
			t.Errorf("kubectl apply -k manifests/ --server-side --dry-run=server: %v\n%s", err, out)
		}
		// Values the install above does not use, rendered and accepted by
		// the apiserver: a DaemonSet per Windows build, dashboards, narrower
		// builds, a digest, tolerations and a priority class.
		variant := []string{"template", "xosprobe", "charts/xosprobe", "--namespace", probeNS,
			"--set", "agent.windows.perBuild=true", "--set", "agent.windows.builds.ltsc2019.enabled=false",
			"--set", "dashboards.enabled=true", "--set", "image.digests.linux=sha256:" + strings.Repeat("ab", 32),
			"--set", "agent.priorityClassName=system-cluster-critical", "--set", "agent.tolerations[0].operator=Exists"}
		rendered, err := helm(ctx, variant...)
		if err != nil {
			t.Fatalf("helm %s: %v\n%s", strings.Join(variant, " "), err, rendered)
		}
		file := filepath.Join(c.WorkDir(), "variant.yaml")
		if err := os.WriteFile(file, []byte(rendered), 0o644); err != nil {
			t.Fatal(err)
		}
		out, err = kubectl(ctx, "apply", "-f", file, "--server-side", "--force-conflicts", "--dry-run=server")
		if err != nil {
			t.Errorf("the variant's objects, server-side dry run: %v\n%s", err, out)
		}
		perBuild := strings.Count(out, "daemonset.apps/xosprobe-agent-windows-ltsc")
		if perBuild != 2 {
			t.Errorf("variant: %d per-build Windows DaemonSets accepted, want 2 (ltsc2022, ltsc2025):\n%s", perBuild, out)
		}
		r.Figure("helm install (server-side apply) in %s, release deployed; kubectl apply -k manifests/ accepted as the same objects (server dry run); a variant with per-build DaemonSets, dashboards and a digest accepted (%d objects)",
			helmTook.Round(100*time.Millisecond), strings.Count(out, "serverside-applied"))
	})

	res.Run(t, "kubelet-linux-pods", func(t *testing.T, r *result) {
		pods := agents(t, cluster.Linux)
		pods = append(pods, listPods(t, ctx, c, probeNS, aggregators)...)
		pods = append(pods, listPods(t, ctx, c, promNS, prometheus)...)
		if len(pods) != 5 {
			t.Fatalf("%d pods (2 Linux agents, 2 aggregators, Prometheus wanted): %v", len(pods), podNames(pods))
		}
		scheduled := scheduledBy(t, ctx, c, probeNS, promNS)
		kubeletNodes := map[string]*cluster.Node{}
		for _, n := range linux {
			kubeletNodes[n.Name] = n
		}
		perNode := map[string]int{}
		for _, p := range pods {
			n := kubeletNodes[p.Spec.NodeName]
			if n == nil {
				t.Errorf("%s/%s on %q, not a kubelet node", p.Namespace, p.Name, p.Spec.NodeName)
				continue
			}
			perNode[n.Name]++
			if p.Status.Phase != corev1.PodRunning || !podReady(&p) {
				t.Errorf("%s/%s: phase %s, ready %v", p.Namespace, p.Name, p.Status.Phase, podReady(&p))
			}
			if by := scheduled[p.Namespace+"/"+p.Name]; by != "default-scheduler" {
				t.Errorf("%s/%s: no Scheduled event from default-scheduler (got %q): placed, not scheduled", p.Namespace, p.Name, by)
			}
			cs := p.Status.ContainerStatuses
			if len(cs) != 1 || !strings.HasPrefix(cs[0].ContainerID, "containerd://") || !strings.Contains(cs[0].ImageID, "sha256:") {
				t.Errorf("%s/%s: container status %+v: want one containerd container of an imported image", p.Namespace, p.Name, cs)
				continue
			}
			want := shippedLinuxImage
			if p.Namespace == promNS {
				want = promImage
			}
			if cs[0].Image != want {
				t.Errorf("%s/%s runs image %s, want %s", p.Namespace, p.Name, cs[0].Image, want)
			}
			if p.Namespace == probeNS {
				sec, err := containerSecurity(n.Kubelet, p.Name)
				if err != nil {
					t.Errorf("%s/%s: %v", p.Namespace, p.Name, err)
					continue
				}
				if sec != (enforced{uid: "65532", gid: "65532", capEff: "0000000000000000", noNewPrivs: true, seccomp: "2", rootReadOnly: true}) {
					t.Errorf("%s/%s: runtime enforced %+v; want uid/gid 65532, no capabilities, no_new_privs, seccomp filter, read-only root", p.Namespace, p.Name, sec)
				}
			}
		}
		r.Figure("%d pods Running and Ready on kubelet nodes (%v), each scheduled by default-scheduler", len(pods), perNode)
		r.Figure("image %s (Linux pods), %s (Prometheus)", shippedLinuxImage, promImage)
		r.Figure("uid 65532, CapEff 0, NoNewPrivs 1, Seccomp 2, read-only root (from /proc)")
		r.Figure("installed and rolled out in %s", installed.Round(time.Second))
	})

	res.Run(t, "in-cluster-config", func(t *testing.T, r *result) {
		l, err := c.Client.CoreV1().Pods(probeNS).List(ctx, metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range l.Items {
			for _, a := range append(append([]string(nil), p.Spec.Containers[0].Command...), p.Spec.Containers[0].Args...) {
				if strings.Contains(a, "kubeconfig") {
					t.Errorf("%s: argument %q: the pod got a kubeconfig", p.Name, a)
				}
			}
		}
		// The agents' informers work: every agent probes the other three.
		all := append(agents(t, cluster.Linux), agents(t, cluster.Windows)...)
		eventually(t, 90*time.Second, "every agent probing 3 peers", func() error {
			for _, p := range all {
				body, err := httpGet(ctx, "http://"+p.Status.PodIP+":9445/metrics")
				if err != nil {
					return fmt.Errorf("%s: %w", p.Name, err)
				}
				if n, _ := sumMetric(parseMetrics(body), "xosprobe_peers", nil); n != 3 {
					return fmt.Errorf("%s: xosprobe_peers %v, want 3", p.Name, n)
				}
			}
			return nil
		})
		// The aggregator admitted results of all four agents (TokenReview of
		// the kubelet-mounted audience-bound tokens) and the two replicas
		// replicate to each other.
		aggs := listPods(t, ctx, c, probeNS, aggregators)
		var pairs int
		eventually(t, 120*time.Second, "both aggregator replicas with tcp successes from every node to every other", func() error {
			for _, a := range aggs {
				body, err := httpGet(ctx, "http://"+a.Status.PodIP+":9446/matrix")
				if err != nil {
					return fmt.Errorf("%s: %w", a.Name, err)
				}
				var m matrixDoc
				if err := json.Unmarshal([]byte(body), &m); err != nil {
					return fmt.Errorf("%s /matrix: %w", a.Name, err)
				}
				ok := map[string]bool{}
				for _, cell := range m.Cells {
					if cell.Check == "tcp" && cell.Outcome == "success" {
						ok[cell.Src+"->"+cell.Dst] = true
					}
				}
				if len(ok) < 12 {
					return fmt.Errorf("%s: %d of 12 node pairs with a tcp success: %v", a.Name, len(ok), keys(ok))
				}
				pairs = len(ok)
			}
			return nil
		})
		// Prometheus in its kubelet pod discovers and scrapes every agent and
		// replica with the shipped in-cluster service discovery.
		proms := listPods(t, ctx, c, promNS, prometheus)
		if len(proms) != 1 {
			t.Fatalf("Prometheus pods: %v, want one", podNames(proms))
		}
		var up map[string]int
		eventually(t, 60*time.Second, "Prometheus scraping 4 agents and 2 aggregator replicas", func() error {
			body, err := httpGet(ctx, "http://"+proms[0].Status.PodIP+":"+strconv.Itoa(promPort)+"/api/v1/targets?state=active")
			if err != nil {
				return err
			}
			var d struct {
				Data struct {
					Active []promTarget `json:"activeTargets"`
				} `json:"data"`
			}
			if err := json.Unmarshal([]byte(body), &d); err != nil {
				return err
			}
			up = map[string]int{}
			for _, tg := range d.Data.Active {
				if tg.Health == "up" {
					up[tg.ScrapePool]++
				}
			}
			if up["xosprobe-agent"] != 4 || up["xosprobe-aggregator"] != 2 {
				return fmt.Errorf("targets up by job %v, want 4 agents and 2 aggregators", up)
			}
			return nil
		})
		r.Figure("0 kubeconfigs among %d pods; 4 agents x 3 peers from their informers; %d node pairs in both replicas' /matrix; Prometheus (in-cluster SD) scraping %v",
			len(l.Items), pairs, up)
	})

	res.Run(t, "windows-pods-scheduled", func(t *testing.T, r *result) {
		pods := agents(t, cluster.Windows)
		scheduled := scheduledBy(t, ctx, c, probeNS)
		onNode := map[string]bool{}
		for _, p := range pods {
			onNode[p.Spec.NodeName] = true
			if len(p.OwnerReferences) != 1 || p.OwnerReferences[0].Kind != "DaemonSet" {
				t.Errorf("%s: owners %v, want the DaemonSet", p.Name, p.OwnerReferences)
			}
			if by := scheduled[p.Namespace+"/"+p.Name]; by != "default-scheduler" {
				t.Errorf("%s: no Scheduled event from default-scheduler (got %q)", p.Name, by)
			}
			if p.Status.Phase != corev1.PodRunning || !podReady(&p) || p.Status.PodIP == "" {
				t.Errorf("%s: phase %s, ready %v, IP %q", p.Name, p.Status.Phase, podReady(&p), p.Status.PodIP)
			}
		}
		for _, n := range windows {
			if !onNode[n.Name] {
				t.Errorf("no Windows agent on %s: %v", n.Name, podNames(pods))
			}
		}
		r.Figure("%d Windows agent pods made by the DaemonSet controller, bound by default-scheduler, run under Wine by the harness's Windows kubelet, Ready from their readiness probe", len(pods))
	})

	res.Run(t, "kubectl-exec-check-linux", func(t *testing.T, r *result) {
		// The README's line, verbatim after the binary's path.
		args := []string{"exec", "-n", "xosprobe", "ds/xosprobe-agent-linux", "--", "xosprobe", "check"}
		var out string
		var err error
		var took time.Duration
		eventually(t, 60*time.Second, "kubectl exec ... xosprobe check", func() error {
			begin := time.Now()
			out, err = kubectl(ctx, args...)
			took = time.Since(begin)
			return checkOutputBothOSes(out, err)
		})
		t.Logf("kubectl %s (%s):\n%s", strings.Join(args, " "), took.Round(time.Millisecond), out)
		r.Figure("exit %s in %s; every dns, tcp, http, service and netpol-allow row PASS toward linux and windows; netpol-deny enforced toward linux, NOT enforced toward windows (no enforcer there: a true finding)",
			exitCode(err), took.Round(time.Millisecond))
	})

	res.Run(t, "pdb-aggregator", func(t *testing.T, r *result) {
		eventually(t, 60*time.Second, "PDB xosprobe-aggregator allows one disruption", func() error {
			pdb, err := c.Client.PolicyV1().PodDisruptionBudgets(probeNS).Get(ctx, "xosprobe-aggregator", metav1.GetOptions{})
			if err != nil {
				return err
			}
			if pdb.Status.CurrentHealthy != 2 || pdb.Status.DisruptionsAllowed != 1 {
				return fmt.Errorf("status: healthy %d, disruptions allowed %d", pdb.Status.CurrentHealthy, pdb.Status.DisruptionsAllowed)
			}
			return nil
		})
		aggs := listPods(t, ctx, c, probeNS, aggregators)
		if len(aggs) != 2 {
			t.Fatalf("aggregator pods: %v, want two", podNames(aggs))
		}
		evict := func(name string) error {
			return c.Client.CoreV1().Pods(probeNS).EvictV1(ctx, &policyv1.Eviction{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: probeNS}})
		}
		if err := evict(aggs[0].Name); err != nil {
			t.Fatalf("evicting the first replica: %v", err)
		}
		err := evict(aggs[1].Name)
		if !apierrors.IsTooManyRequests(err) {
			t.Fatalf("evicting the second replica right after: %v, want 429 (the budget's minAvailable 1)", err)
		}
		t.Logf("second eviction refused: %v", err)
		start := time.Now()
		if out, err := kubectl(ctx, "-n", probeNS, "rollout", "status", "deployment/xosprobe-aggregator", "--timeout=3m"); err != nil {
			t.Fatalf("aggregator after the eviction: %v\n%s", err, out)
		}
		eventually(t, 60*time.Second, "two aggregator replicas Ready again", func() error {
			d, err := c.Client.AppsV1().Deployments(probeNS).Get(ctx, "xosprobe-aggregator", metav1.GetOptions{})
			if err != nil {
				return err
			}
			if d.Status.ReadyReplicas != 2 || d.Status.Replicas != 2 {
				return fmt.Errorf("ready %d of %d", d.Status.ReadyReplicas, d.Status.Replicas)
			}
			return nil
		})
		r.Figure("first eviction allowed, second refused with 429; replacement Ready in %s", time.Since(start).Round(time.Second))
	})

	res.Run(t, "daemonset-rolling-update", func(t *testing.T, r *result) {
		before := map[string]bool{}
		for _, p := range append(agents(t, cluster.Linux), agents(t, cluster.Windows)...) {
			before[string(p.UID)] = true
		}
		start := time.Now()
		if out, err := kubectl(ctx, "-n", probeNS, "rollout", "restart", "daemonset/xosprobe-agent-linux", "daemonset/xosprobe-agent-windows"); err != nil {
			t.Fatalf("kubectl rollout restart: %v\n%s", err, out)
		}
		for _, ds := range []string{"daemonset/xosprobe-agent-linux", "daemonset/xosprobe-agent-windows"} {
			if out, err := kubectl(ctx, "-n", probeNS, "rollout", "status", ds, "--timeout=4m"); err != nil {
				t.Fatalf("kubectl rollout status %s: %v\n%s\n%s", ds, err, out, installDiagnosis(ctx, c, linux))
			}
		}
		took := time.Since(start)
		var replaced int
		for _, nodeOS := range []cluster.OS{cluster.Linux, cluster.Windows} {
			ds, err := c.Client.AppsV1().DaemonSets(probeNS).Get(ctx, "xosprobe-agent-"+string(nodeOS), metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if err := daemonSetRolledOut(ds); err != nil {
				t.Error(err)
			}
			for _, p := range agents(t, nodeOS) {
				if p.DeletionTimestamp != nil {
					continue
				}
				if before[string(p.UID)] {
					t.Errorf("%s was not replaced", p.Name)
				}
				replaced++
			}
		}
		if replaced != 4 {
			t.Errorf("%d agents after the rollout, want 4", replaced)
		}
		r.Figure("4 agent pods replaced by the DaemonSet controller (maxUnavailable 1) in %s", took.Round(time.Second))
	})

	res.Run(t, "ground-truth-kubelet-nodes", func(t *testing.T, r *result) { groundTruthOnKubeletNodes(t, ctx, c, kubectl, r) })

	// The README's removal: nothing of the release stays behind.
	res.Run(t, "helm-uninstall", func(t *testing.T, r *result) {
		start := time.Now()
		if out, err := helm(ctx, "uninstall", "xosprobe", "--namespace", probeNS, "--wait"); err != nil {
			t.Fatalf("helm uninstall: %v\n%s", err, out)
		}
		var left []string
		if l, err := c.Client.AppsV1().DaemonSets(probeNS).List(ctx, metav1.ListOptions{}); err == nil {
			for _, o := range l.Items {
				left = append(left, "DaemonSet "+o.Name)
			}
		}
		if l, err := c.Client.RbacV1().ClusterRoles().List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/name=xosprobe"}); err == nil {
			for _, o := range l.Items {
				left = append(left, "ClusterRole "+o.Name)
			}
		}
		if l, err := c.Client.RbacV1().RoleBindings("kube-system").List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/name=xosprobe"}); err == nil {
			for _, o := range l.Items {
				left = append(left, "RoleBinding kube-system/"+o.Name)
			}
		}
		eventually(t, 2*time.Minute, "agent and aggregator pods gone", func() error {
			if pods := listPods(t, ctx, c, probeNS, "app.kubernetes.io/name=xosprobe"); len(pods) > 0 {
				return fmt.Errorf("%d pods left: %v", len(pods), podNames(pods))
			}
			return nil
		})
		if len(left) > 0 {
			t.Errorf("left after helm uninstall: %v", left)
		}
		r.Figure("helm uninstall --wait and every pod gone in %s; no DaemonSet, ClusterRole or kube-system RoleBinding left", time.Since(start).Round(100*time.Millisecond))
	})
}

// groundTruthOnKubeletNodes is TestMixedCluster's latency ground truth with
// the Linux agents in real kubelet pods: the operator's way to measure
// faster, new flags in the workloads (agents every 2 s, the aggregator's
// e2e windows) rolled out by the controllers, then NFQUEUE delayers in the
// Windows pods hold packets from the Linux agents' pod IPs, and the
// aggregator's linux->windows delta p50 must move by the hold within the
// same bound.
func groundTruthOnKubeletNodes(t *testing.T, ctx context.Context, c *cluster.Cluster, kubectl func(context.Context, ...string) (string, error), r *result) {
	if os.Getenv("XOSPROBE_E2E_GROUND_TRUTH") == "0" {
		t.Skip("XOSPROBE_E2E_GROUND_TRUTH=0")
	}
	edit := map[string]map[string]string{
		"daemonset/xosprobe-agent-linux":   {"interval": e2eInterval, "timeout": e2eInterval},
		"daemonset/xosprobe-agent-windows": {"interval": e2eInterval, "timeout": e2eInterval},
		"deployment/xosprobe-aggregator": {"delta-window": e2eDeltaWindow.String(), "compute-interval": "2s",
			"baseline-window": e2eBaselineWindow.String()},
	}
	for obj, flags := range edit {
		kind, name, _ := strings.Cut(obj, "/")
		var err error
		switch kind {
		case "daemonset":
			var ds *appsv1.DaemonSet
			if ds, err = c.Client.AppsV1().DaemonSets(probeNS).Get(ctx, name, metav1.GetOptions{}); err == nil {
				setContainerFlags(&ds.Spec.Template, flags)
				_, err = c.Client.AppsV1().DaemonSets(probeNS).Update(ctx, ds, metav1.UpdateOptions{})
			}
		default:
			var d *appsv1.Deployment
			if d, err = c.Client.AppsV1().Deployments(probeNS).Get(ctx, name, metav1.GetOptions{}); err == nil {
				setContainerFlags(&d.Spec.Template, flags)
				_, err = c.Client.AppsV1().Deployments(probeNS).Update(ctx, d, metav1.UpdateOptions{})
			}
		}
		if err != nil {
			t.Fatalf("%s: %v", obj, err)
		}
	}
	for obj := range edit {
		if out, err := kubectl(ctx, "-n", probeNS, "rollout", "status", obj, "--timeout=4m"); err != nil {
			t.Fatalf("kubectl rollout status %s: %v\n%s", obj, err, out)
		}
	}
	started := time.Now()
	// Each OS's pods on CPUs of their own, as in TestMixedCluster (the
	// Windows pods by Config.CPUs): see test/e2e/README.
	if cpus := cpusByOS()[cluster.Linux]; cpus != "" {
		for _, n := range c.Nodes() {
			if n.Kubelet == nil {
				continue
			}
			pinned, err := n.Kubelet.PinContainers(ctx, cpus)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%s: %d container processes pinned to CPUs %s", n.Name, pinned, cpus)
		}
	}
	pods, err := c.Client.CoreV1().Pods(probeNS).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var winPods []*cluster.Pod
	var linuxIPs []string
	var aggIP string
	for _, p := range pods.Items {
		if p.DeletionTimestamp != nil {
			continue
		}
		switch {
		case p.Labels["app.kubernetes.io/component"] == "aggregator":
			aggIP = p.Status.PodIP
		case p.Labels["xosprobe.io/os"] == "windows":
			hp := c.Pod(p.Namespace, p.Name)
			if hp == nil {
				t.Fatalf("Windows agent %s is not running under the harness's kubelet", p.Name)
			}
			winPods = append(winPods, hp)
		case p.Labels["xosprobe.io/os"] == "linux":
			linuxIPs = append(linuxIPs, p.Status.PodIP)
		}
	}
	if len(winPods) != 2 || len(linuxIPs) != 2 || aggIP == "" {
		t.Fatalf("after the rollout: %d Windows agents, Linux agent IPs %v, aggregator %q", len(winPods), linuxIPs, aggIP)
	}
	delay := startDelayers(t, ctx, winPods, linuxIPs)
	aggMetrics := func() ([]sample, error) {
		body, err := httpGet(ctx, "http://"+aggIP+":9446/metrics")
		if err != nil {
			return nil, err
		}
		return parseMetrics(body), nil
	}
	// One stage: TestMixedCluster holds 2, 5 and 20 ms; here the question is
	// whether the Linux side in kubelet pods measures the same.
	stages := []gtStage{{5 * time.Millisecond, true}}
	gt := runGroundTruth(t, ctx, delay, stages, e2eSettle, time.Since(started), aggMetrics, func() {}, nil, nil)
	delay.stop(t)
	for _, g := range gt {
		e, bound := g.Observed-g.Hold, g.bound()
		if e > bound || e < -bound {
			t.Errorf("ground truth D=%s %s %s: the delta p50 moved %s, the delayer held %s (error %s, bound %s: the tolerance %s or the delta CI's width %s)",
				g.D, g.Check, g.Phase, g.Observed, g.Hold, e, bound, groundTruthTolerance, g.CIWidth)
		}
		r.Figure("D=%s %s/%s error %+dus (bound %dus)", g.D, g.Check, g.Phase, (g.Observed - g.Hold).Microseconds(), g.bound().Microseconds())
	}
}

// listPods lists the pods in namespace ns matching the label selector.
func listPods(t *testing.T, ctx context.Context, c *cluster.Cluster, ns, selector string) []corev1.Pod {
	t.Helper()
	l, err := c.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: selector})
	if err != nil {
		t.Fatal(err)
	}
	return l.Items
}

// setContainerFlags sets flags (name -> value) in the args of the
// template's first container, as an operator edits a workload.
func setContainerFlags(tmpl *corev1.PodTemplateSpec, flags map[string]string) {
	ctr := &tmpl.Spec.Containers[0]
	for f, v := range flags {
		ctr.Args = setFlag(ctr.Args, f, v)
	}
}

// writeBinaryImage writes a one-binary OCI image of a static executable.
func writeBinaryImage(path, ref, binary, user string) error {
	b, err := os.ReadFile(binary)
	if err != nil {
		return err
	}
	name := "/" + filepath.Base(binary)
	return cluster.WriteImageFile(path, cluster.ImageSpec{
		Ref:        ref,
		Files:      []cluster.ImageFile{{Path: name, Mode: 0o755, Data: b}},
		Entrypoint: []string{name},
		User:       user,
	})
}

// deployPrometheus runs Prometheus as an operator would beside the shipped
// manifests: a Deployment on node in namespace monitoring, its ServiceAccount
// with a Role to list and watch pods in xosprobe, manifests/prometheus'
// config (in-cluster discovery, as shipped) and rules in a ConfigMap.
func deployPrometheus(t *testing.T, ctx context.Context, c *cluster.Cluster, node string) {
	t.Helper()
	dir, _ := filepath.Abs("../../manifests/prometheus")
	shippedCfg, err := os.ReadFile(filepath.Join(dir, "prometheus.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	shippedRules, err := os.ReadFile(filepath.Join(dir, "rules.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	cfg, rules, edits, err := derivePrometheusFiles(shippedCfg, shippedRules, "")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("Prometheus: the shipped manifests/prometheus files with %d edits:\n  %s", len(edits), strings.Join(edits, "\n  "))
	labels := map[string]string{"app.kubernetes.io/name": "prometheus"}
	objs := []func() error{
		func() error {
			_, err := c.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: promNS}}, metav1.CreateOptions{})
			return err
		},
		func() error {
			_, err := c.Client.CoreV1().ServiceAccounts(promNS).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: promName}}, metav1.CreateOptions{})
			return err
		},
		func() error {
			_, err := c.Client.RbacV1().Roles(probeNS).Create(ctx, &rbacv1.Role{
				ObjectMeta: metav1.ObjectMeta{Name: "prometheus-xosprobe-sd", Namespace: probeNS},
				Rules:      []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"get", "list", "watch"}}},
			}, metav1.CreateOptions{})
			return err
		},
		func() error {
			_, err := c.Client.RbacV1().RoleBindings(probeNS).Create(ctx, &rbacv1.RoleBinding{
				ObjectMeta: metav1.ObjectMeta{Name: "prometheus-xosprobe-sd", Namespace: probeNS},
				RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: "prometheus-xosprobe-sd"},
				Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Namespace: promNS, Name: promName}},
			}, metav1.CreateOptions{})
			return err
		},
		func() error {
			_, err := c.Client.CoreV1().ConfigMaps(promNS).Create(ctx, &corev1.ConfigMap{
				ObjectMeta: metav1.ObjectMeta{Name: promName},
				// rule_files names rules.yaml relative to the config file.
				Data: map[string]string{"prometheus.yaml": string(cfg), "rules.yaml": string(rules)},
			}, metav1.CreateOptions{})
			return err
		},
		func() error {
			_, err := c.Client.AppsV1().Deployments(promNS).Create(ctx, prometheusDeployment(node, labels), metav1.CreateOptions{})
			return err
		},
	}
	for _, create := range objs {
		if err := create(); err != nil {
			t.Fatalf("Prometheus: %v", err)
		}
	}
}

func prometheusDeployment(node string, labels map[string]string) *appsv1.Deployment {
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: promName, Namespace: promNS, Labels: labels},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To[int32](1),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{
					ServiceAccountName: promName,
					NodeSelector:       map[string]string{corev1.LabelHostname: node},
					SecurityContext: &corev1.PodSecurityContext{
						RunAsNonRoot: ptr.To(true), RunAsUser: ptr.To[int64](65534), RunAsGroup: ptr.To[int64](65534), FSGroup: ptr.To[int64](65534),
						SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
					},
					Containers: []corev1.Container{{
						Name:            "prometheus",
						Image:           promImage,
						ImagePullPolicy: corev1.PullNever, // imported, no registry
						Args: []string{
							"--config.file=/etc/prometheus/prometheus.yaml",
							"--storage.tsdb.path=/data",
							"--web.listen-address=:" + strconv.Itoa(promPort),
						},
						Ports: []corev1.ContainerPort{{Name: "web", ContainerPort: promPort}},
						ReadinessProbe: &corev1.Probe{
							ProbeHandler:  corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/-/ready", Port: intstr.FromString("web")}},
							PeriodSeconds: 2,
						},
						Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{
							corev1.ResourceCPU: resource.MustParse("50m"), corev1.ResourceMemory: resource.MustParse("128Mi"),
						}},
						SecurityContext: &corev1.SecurityContext{
							AllowPrivilegeEscalation: ptr.To(false),
							ReadOnlyRootFilesystem:   ptr.To(true),
							Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
						},
						VolumeMounts: []corev1.VolumeMount{
							{Name: "config", MountPath: "/etc/prometheus", ReadOnly: true},
							{Name: "data", MountPath: "/data"},
						},
					}},
					Volumes: []corev1.Volume{
						{Name: "config", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: promName}}}},
						{Name: "data", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
					},
				},
			},
		},
	}
}

// scheduledBy maps namespace/name to the component that reported the
// pod's Scheduled event.
func scheduledBy(t *testing.T, ctx context.Context, c *cluster.Cluster, namespaces ...string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, ns := range namespaces {
		evs, err := c.Client.CoreV1().Events(ns).List(ctx, metav1.ListOptions{FieldSelector: "reason=Scheduled"})
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range evs.Items {
			by := e.ReportingController
			if by == "" {
				by = e.Source.Component
			}
			out[ns+"/"+e.InvolvedObject.Name] = by
		}
	}
	return out
}

// enforced is what the runtime applied to a container's process.
type enforced struct {
	uid, gid, capEff, seccomp string
	noNewPrivs, rootReadOnly  bool
}

// containerSecurity reads, from /proc, what the runtime enforced on the
// container process of pod on kubelet node k (found by its POD_NAME).
func containerSecurity(k *cluster.Kubelet, pod string) (enforced, error) {
	for _, pid := range k.ContainerPIDs() {
		env, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid))
		if err != nil || !slices.Contains(strings.Split(string(env), "\x00"), "POD_NAME="+pod) {
			continue
		}
		var e enforced
		status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
		if err != nil {
			return e, err
		}
		for _, line := range strings.Split(string(status), "\n") {
			k, v, _ := strings.Cut(line, ":")
			f := strings.Fields(v)
			switch {
			case k == "Uid" && len(f) == 4 && f[0] == f[1] && f[1] == f[2] && f[2] == f[3]:
				e.uid = f[0]
			case k == "Gid" && len(f) == 4 && f[0] == f[1] && f[1] == f[2] && f[2] == f[3]:
				e.gid = f[0]
			case k == "CapEff" && len(f) == 1:
				e.capEff = f[0]
			case k == "NoNewPrivs" && len(f) == 1:
				e.noNewPrivs = f[0] == "1"
			case k == "Seccomp" && len(f) == 1:
				e.seccomp = f[0]
			}
		}
		mi, err := os.ReadFile(fmt.Sprintf("/proc/%d/mountinfo", pid))
		if err != nil {
			return e, err
		}
		for _, line := range strings.Split(string(mi), "\n") {
			// id parent major:minor root mountpoint options ...
			if f := strings.Fields(line); len(f) > 5 && f[4] == "/" {
				e.rootReadOnly = slices.Contains(strings.Split(f[5], ","), "ro")
			}
		}
		return e, nil
	}
	return enforced{}, fmt.Errorf("no process with POD_NAME=%s in node %s's containers", pod, k.Node.Name)
}

// checkOutputBothOSes accepts `xosprobe check` output run in a Linux agent
// pod of the box: every step toward both OSes passes except netpol-deny
// toward Windows, which no enforcer there blocks (exit 1 for that finding).
func checkOutputBothOSes(out string, err error) error {
	var missing []string
	for _, nodeOS := range []string{"linux", "windows"} {
		for _, step := range []string{"dns", "tcp", "http", "service", "netpol-allow"} {
			re := `(?m)^` + nodeOS + ` \S+ \S+\s+` + regexp.QuoteMeta(step) + `\s+PASS`
			if !regexp.MustCompile(re).MatchString(out) {
				missing = append(missing, nodeOS+" "+step+" PASS")
			}
		}
	}
	for _, re := range []string{`(?m)^linux \S+ \S+\s+netpol-deny\s+PASS`, `(?m)^windows \S+ \S+\s+netpol-deny\s+FAIL\s+policy_not_enforced`,
		`NetworkPolicy toward linux [^\n]*: enforced`, `NetworkPolicy toward windows [^\n]*: NOT enforced`} {
		if !regexp.MustCompile(re).MatchString(out) {
			missing = append(missing, re)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("output lacks %v (exit %s):\n%s", missing, exitCode(err), out)
	}
	if exitCode(err) != "1" {
		return fmt.Errorf("exit %s, want 1 (the Windows NetworkPolicy finding only):\n%s", exitCode(err), out)
	}
	return nil
}

func exitCode(err error) string {
	if err == nil {
		return "0"
	}
	if ee, ok := err.(*exec.ExitError); ok {
		return strconv.Itoa(ee.ExitCode())
	}
	return err.Error()
}

// daemonSetRolledOut says whether the controller reports every pod of ds
// updated and available.
func daemonSetRolledOut(ds *appsv1.DaemonSet) error {
	s := ds.Status
	if s.ObservedGeneration < ds.Generation || s.DesiredNumberScheduled == 0 ||
		s.UpdatedNumberScheduled != s.DesiredNumberScheduled || s.NumberAvailable != s.DesiredNumberScheduled {
		return fmt.Errorf("daemonset %s: generation %d observed %d, desired %d, updated %d, available %d",
			ds.Name, ds.Generation, s.ObservedGeneration, s.DesiredNumberScheduled, s.UpdatedNumberScheduled, s.NumberAvailable)
	}
	return nil
}

func podNames(pods []corev1.Pod) []string {
	var out []string
	for _, p := range pods {
		out = append(out, p.Namespace+"/"+p.Name+"@"+p.Spec.NodeName)
	}
	return out
}

// installDiagnosis describes every pod of the install and the kubelet
// nodes' log tails, for a rollout that did not finish.
func installDiagnosis(ctx context.Context, c *cluster.Cluster, kubeletNodes []*cluster.Node) string {
	var b bytes.Buffer
	for _, ns := range []string{probeNS, promNS} {
		l, err := c.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			fmt.Fprintf(&b, "pods in %s: %v\n", ns, err)
			continue
		}
		for i := range l.Items {
			p := &l.Items[i]
			var node *cluster.Node
			for _, n := range kubeletNodes {
				if n.Name == p.Spec.NodeName {
					node = n
				}
			}
			if node == nil {
				fmt.Fprintf(&b, "%s/%s on %q: phase %s, ready %v\n", p.Namespace, p.Name, p.Spec.NodeName, p.Status.Phase, podReady(p))
				continue
			}
			fmt.Fprintf(&b, "%s/%s on %s: %s\n", p.Namespace, p.Name, node.Name, podDiagnosis(ctx, c.Client, node, p))
		}
	}
	return b.String()
}
