// Package e2e holds the end-to-end tests that run xosprobe in the
// cluster-in-a-box of package cluster. They need root and the binaries of
// build.sh; without them they skip and say why.
package e2e

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/xosprobe/xosprobe/test/e2e/cluster"
)

// The responder ports, as xosprobe serve uses them.
const (
	portHTTP  = 9440
	portTCP   = 9441
	portAllow = 9442
	portDeny  = 9443
	probeNS   = "xosprobe"
)

// binDir is where build.sh puts the cluster binaries.
func binDir(t *testing.T) string {
	if d := os.Getenv("XOSPROBE_E2E_BIN"); d != "" {
		return d
	}
	d, err := filepath.Abs(filepath.Join(".cache", "bin"))
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// setup builds what is missing (build.sh is idempotent: seconds when built),
// starts a cluster and registers its teardown, which also checks that nothing
// with the cluster's prefix is left on the host.
func setup(t *testing.T, ctx context.Context, networkPolicy bool) *cluster.Cluster {
	t.Helper()
	if testing.Short() {
		t.Skip("e2e: skipped in -short mode")
	}
	if os.Geteuid() != 0 {
		t.Skip("e2e: needs root (network namespaces, iptables, mounts); run as root, e.g. sudo -E go test")
	}
	bin := binDir(t)
	if os.Getenv("XOSPROBE_E2E_SKIP_BUILD") == "" {
		start := time.Now()
		cmd := exec.CommandContext(ctx, "bash", "build.sh")
		cmd.Env = append(os.Environ(), "XOSPROBE_E2E_BIN="+bin)
		out, err := cmd.CombinedOutput()
		if ctx.Err() != nil {
			t.Fatalf("build.sh did not finish before the test's deadline (a cold build takes ~15 min on 2 cores): "+
				"run bash build.sh first, or go test -timeout 40m\n%s", out)
		}
		if err != nil {
			t.Fatalf("build.sh: %v\n%s", err, out)
		}
		t.Logf("build.sh (%s):\n%s", time.Since(start).Round(time.Millisecond), out)
	}
	if err := cluster.Requirements(bin, networkPolicy); err != nil {
		t.Skipf("e2e: %v", err)
	}
	// XOSPROBE_E2E_WORKDIR keeps certificates and logs after the run.
	work := os.Getenv("XOSPROBE_E2E_WORKDIR")
	if work == "" {
		work = t.TempDir()
	} else if err := os.MkdirAll(work, 0o755); err != nil {
		t.Fatal(err)
	}
	c, err := cluster.New(cluster.Config{
		BinDir:        bin,
		WorkDir:       work,
		NetworkPolicy: networkPolicy,
		CPUs:          cpusByOS(),
		Logger:        slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelInfo})),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			dumpLogs(t, c)
		}
		if err := c.Teardown(); err != nil {
			t.Errorf("teardown: %v", err)
		}
		left, err := cluster.Leftovers(c.Prefix())
		if err != nil {
			t.Errorf("leftovers: %v", err)
		}
		if len(left) > 0 {
			t.Errorf("teardown left %d things behind: %v", len(left), left)
		}
		if _, err := os.Stat(cluster.LockPath); err == nil {
			t.Errorf("teardown left the host lock %s", cluster.LockPath)
		}
	})
	if err := c.Start(ctx); err != nil {
		t.Fatalf("start: %v", err)
	}
	return c
}

// testContext bounds a test by max, and ends it a minute before go test's
// -timeout would panic: a panicking test binary runs no Cleanup, so the
// teardown would be left to the next run's Sweep.
func testContext(t *testing.T, max time.Duration) (context.Context, context.CancelFunc) {
	deadline := time.Now().Add(max)
	if d, ok := t.Deadline(); ok && d.Add(-time.Minute).Before(deadline) {
		deadline = d.Add(-time.Minute)
	}
	return context.WithDeadline(t.Context(), deadline)
}

// dumpLogs prints the tail of every process log of a failed test.
func dumpLogs(t *testing.T, c *cluster.Cluster) {
	logs, _ := filepath.Glob(filepath.Join(c.WorkDir(), "logs", "*.log"))
	more, _ := filepath.Glob(filepath.Join(c.WorkDir(), "logs", "*", "*.log"))
	for _, l := range append(logs, more...) {
		b, err := os.ReadFile(l)
		if err != nil {
			continue
		}
		if len(b) > 2500 {
			b = b[len(b)-2500:]
		}
		t.Logf("--- %s (tail)\n%s", strings.TrimPrefix(l, c.WorkDir()), b)
	}
}

// responder says how a pod on a node of os serves the probe ports: the real
// xosprobe binaries when the main module's bin/ has them (the Windows one under
// Wine), otherwise the test binary's own helper responder.
func responder(t *testing.T, nodeOS cluster.OS, node string) cluster.ExecSpec {
	linux, _ := filepath.Abs("../../bin/xosprobe")
	windows, _ := filepath.Abs("../../bin/xosprobe.exe")
	serve := []string{"serve", "--http-addr", fmt.Sprintf(":%d", portHTTP), "--tcp-addr", fmt.Sprintf(":%d", portTCP),
		"--allow-addr", fmt.Sprintf(":%d", portAllow), "--deny-addr", fmt.Sprintf(":%d", portDeny), "--node", node}
	if nodeOS == cluster.Windows && fileExists(windows) {
		err := wineReady()
		if err == nil {
			return cluster.ExecSpec{Args: append([]string{windows}, serve...), Wine: true, Name: "xosprobe.exe"}
		}
		t.Logf("Windows pods run the Linux responder: %v", err)
	}
	if fileExists(linux) {
		return cluster.ExecSpec{Args: append([]string{linux}, serve...)}
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return cluster.ExecSpec{Args: []string{exe, "serve", node}, Env: []string{helperEnv + "=1"}, Name: "responder"}
}

// wineReady reports whether Go windows/amd64 binaries can run under Wine:
// wine installed and a prefix with the ProcessPrng shim (test/wine/setup.sh).
func wineReady() error {
	if _, err := exec.LookPath("wine"); err != nil {
		return errors.New("wine not installed (apt-get install wine64)")
	}
	prefix := os.Getenv("WINEPREFIX")
	if prefix == "" {
		home, _ := os.UserHomeDir()
		prefix = filepath.Join(home, ".wine")
	}
	if !fileExists(filepath.Join(prefix, "drive_c", "windows", "system32", "bcryptprimitives.dll")) {
		return fmt.Errorf("wine prefix %s lacks the ProcessPrng shim (run test/wine/setup.sh)", prefix)
	}
	return nil
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// inPod runs the test binary's helper inside pod p.
func inPod(ctx context.Context, c *cluster.Cluster, p *cluster.Pod, args ...string) (string, error) {
	exe, err := os.Executable()
	if err != nil {
		return "", err
	}
	return c.Run(ctx, p, cluster.ExecSpec{Args: append([]string{exe}, args...), Env: []string{helperEnv + "=1", "GODEBUG=netdns=go"}})
}

// eventually retries f every 200 ms until it succeeds or timeout passes.
func eventually(t *testing.T, timeout time.Duration, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var err error
	for {
		if err = f(); err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: still failing after %s: %v", what, timeout, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestSmoke brings up two Linux and two Windows nodes with one responder pod
// each, a Service per OS, and checks the fabric: pod to pod across nodes, pod
// to Service VIP (kube-proxy), Service names through CoreDNS, EndpointSlices
// from the controller-manager, and a NetworkPolicy that kube-router enforces
// for the Linux pod and nobody enforces for the Windows pod.
func TestSmoke(t *testing.T) {
	ctx, cancel := testContext(t, 25*time.Minute)
	defer cancel()
	start := time.Now()
	c := setup(t, ctx, true)
	t.Logf("timing: cluster start %s", time.Since(start).Round(time.Millisecond))

	start = time.Now()
	type agent struct {
		pod *cluster.Pod
		os  cluster.OS
	}
	var agents []agent
	var firstLinux *cluster.Node
	for _, spec := range []struct {
		name string
		os   cluster.OS
	}{{"lin-1", cluster.Linux}, {"lin-2", cluster.Linux}, {"win-1", cluster.Windows}, {"win-2", cluster.Windows}} {
		n, err := c.CreateNode(ctx, spec.name, spec.os, "")
		if err != nil {
			t.Fatal(err)
		}
		if firstLinux == nil && spec.os == cluster.Linux {
			firstLinux = n
		}
		p, err := c.CreatePod(ctx, n, cluster.PodSpec{
			Namespace: probeNS, Name: "agent-" + spec.name,
			Labels: map[string]string{"app": "xosprobe-agent", "os": string(spec.os)},
			Ports:  []corev1.ContainerPort{{Name: "http", ContainerPort: portHTTP, Protocol: corev1.ProtocolTCP}},
		})
		if err != nil {
			t.Fatal(err)
		}
		rs := responder(t, spec.os, spec.name)
		t.Logf("%s runs %s (wine: %v)", p, rs.Args[0], rs.Wine)
		if _, err := c.Exec(ctx, p, rs); err != nil {
			t.Fatal(err)
		}
		agents = append(agents, agent{p, spec.os})
	}
	if _, err := c.StartDNS(ctx, firstLinux); err != nil {
		t.Fatal(err)
	}
	t.Logf("timing: 4 nodes, 4 pods, DNS %s", time.Since(start).Round(time.Millisecond))

	svcIP := map[cluster.OS]string{}
	for _, nodeOS := range []cluster.OS{cluster.Linux, cluster.Windows} {
		svc, err := c.Client.CoreV1().Services(probeNS).Create(ctx, &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Name: "probe-" + string(nodeOS)},
			Spec: corev1.ServiceSpec{
				Selector: map[string]string{"app": "xosprobe-agent", "os": string(nodeOS)},
				Ports:    []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromString("http")}},
			},
		}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		svcIP[nodeOS] = svc.Spec.ClusterIP
	}

	// Responders up (Wine takes a few seconds), probed from the host.
	for _, a := range agents {
		eventually(t, 90*time.Second, "responder in "+a.pod.String(), func() error {
			_, err := inPodFromHost(ctx, a.pod)
			return err
		})
	}

	t.Run("EndpointSlices", func(t *testing.T) {
		for nodeOS := range svcIP {
			var want []string
			for _, a := range agents {
				if a.os == nodeOS {
					want = append(want, a.pod.IP.String())
				}
			}
			eventually(t, 30*time.Second, "EndpointSlice of probe-"+string(nodeOS), func() error {
				got, err := readyEndpoints(ctx, c, "probe-"+string(nodeOS))
				if err != nil {
					return err
				}
				slices.Sort(got)
				slices.Sort(want)
				if !slices.Equal(got, want) {
					return fmt.Errorf("ready endpoints %v, want %v", got, want)
				}
				return nil
			})
		}
	})

	t.Run("PodToPod", func(t *testing.T) {
		for _, src := range agents {
			for _, dst := range agents {
				if src.pod.Node == dst.pod.Node {
					continue
				}
				url := fmt.Sprintf("http://%s:%d/healthz", dst.pod.IP, portHTTP)
				out, err := inPod(ctx, c, src.pod, "get", url)
				if err != nil {
					t.Errorf("%s -> %s: %v: %s", src.pod, dst.pod, err, out)
				}
			}
		}
	})

	t.Run("PodToServiceVIP", func(t *testing.T) {
		for _, src := range agents {
			for nodeOS, ip := range svcIP {
				url := fmt.Sprintf("http://%s:80/healthz", ip)
				eventually(t, 20*time.Second, fmt.Sprintf("%s -> probe-%s VIP", src.pod, nodeOS), func() error {
					out, err := inPod(ctx, c, src.pod, "get", url)
					if err != nil {
						return fmt.Errorf("%w: %s", err, out)
					}
					return nil
				})
			}
		}
	})

	t.Run("DNS", func(t *testing.T) {
		lin, win := agents[0].pod, agents[2].pod
		fqdn := "probe-windows." + probeNS + ".svc." + cluster.ClusterDomain
		for _, tc := range []struct {
			pod    *cluster.Pod
			name   string
			want   string // "" = must not resolve
			libcOK bool
		}{
			{lin, fqdn, svcIP[cluster.Windows], true},
			{lin, "probe-windows", svcIP[cluster.Windows], true},
			{lin, "probe-linux." + probeNS, svcIP[cluster.Linux], true},
			{lin, "kubernetes.default", cluster.KubernetesServiceIP.String(), true},
			{win, fqdn, svcIP[cluster.Windows], true},
			{win, "probe-linux", svcIP[cluster.Linux], true},
			// Windows' single DNS suffix: svc.ns does not resolve. The finding
			// xosprobe's dns check reports.
			{win, "kubernetes.default", "", false},
			{lin, "no-such-service", "", false},
		} {
			eventually(t, 20*time.Second, fmt.Sprintf("resolve %q in %s", tc.name, tc.pod), func() error {
				out, err := inPod(ctx, c, tc.pod, "resolve", tc.name)
				got := strings.TrimSpace(out)
				if tc.want == "" {
					if err == nil {
						return fmt.Errorf("resolved to %s, want no answer", got)
					}
					return nil
				}
				if err != nil || got != tc.want {
					return fmt.Errorf("got %q (%v), want %s", got, err, tc.want)
				}
				// And through the C library, as most programs resolve.
				out, err = c.Run(ctx, tc.pod, cluster.ExecSpec{Args: []string{"getent", "hosts", tc.name}})
				if err != nil || !strings.HasPrefix(out, tc.want+" ") {
					return fmt.Errorf("getent hosts: %q (%v), want %s", out, err, tc.want)
				}
				return nil
			})
		}
	})

	t.Run("NetworkPolicy", func(t *testing.T) {
		// Allow every port but the deny port into every agent pod: Linux
		// pods get it enforced by their node's kube-router, Windows pods not.
		tcp := corev1.ProtocolTCP
		var ports []networkingv1.NetworkPolicyPort
		for _, p := range []int{portHTTP, portTCP, portAllow} {
			ports = append(ports, networkingv1.NetworkPolicyPort{Protocol: &tcp, Port: ptrTo(intstr.FromInt32(int32(p)))})
		}
		src := agents[1].pod // lin-2
		linDst, winDst := agents[0].pod, agents[3].pod
		dial := func(dst *cluster.Pod, port int) error {
			out, err := inPod(ctx, c, src, "dial", fmt.Sprintf("%s:%d", dst.IP, port))
			if err != nil {
				return fmt.Errorf("%w: %s", err, strings.TrimSpace(out))
			}
			return nil
		}
		// Without a policy every port is open: a closed port later means the
		// policy closed it, not a responder that never listened.
		for _, dst := range []*cluster.Pod{linDst, winDst} {
			if err := dial(dst, portDeny); err != nil {
				t.Fatalf("before any policy, %s:%d: %v", dst, portDeny, err)
			}
		}
		_, err := c.Client.NetworkingV1().NetworkPolicies(probeNS).Create(ctx, &networkingv1.NetworkPolicy{
			ObjectMeta: metav1.ObjectMeta{Name: "probe-deny"},
			Spec: networkingv1.NetworkPolicySpec{
				PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": "xosprobe-agent"}},
				PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress},
				Ingress:     []networkingv1.NetworkPolicyIngressRule{{Ports: ports}},
			},
		}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		eventually(t, 60*time.Second, "deny port of the Linux pod blocked", func() error {
			if dial(linDst, portDeny) == nil {
				return fmt.Errorf("%s -> %s:%d connected", src, linDst, portDeny)
			}
			return nil
		})
		if err := dial(linDst, portAllow); err != nil {
			t.Errorf("allow port of the Linux pod: %v", err)
		}
		if err := dial(winDst, portDeny); err != nil {
			t.Errorf("deny port of the Windows pod should stay open (no enforcer on Windows nodes): %v", err)
		}
		// Windows -> Linux is enforced at the Linux end too.
		if out, err := inPod(ctx, c, agents[2].pod, "dial", fmt.Sprintf("%s:%d", linDst.IP, portDeny)); err == nil {
			t.Errorf("win-1 -> %s:%d connected through the policy: %s", linDst, portDeny, out)
		}
	})

	t.Run("InClusterAPI", func(t *testing.T) {
		// A workload's service-account token, through the kubernetes Service
		// VIP: authenticated but forbidden until RBAC allows it.
		kc, err := c.ServiceAccountKubeconfig(ctx, probeNS, "xosprobe-agent")
		if err != nil {
			t.Fatal(err)
		}
		src := agents[2].pod // win-1: its node's kube-proxy carries 10.96.0.1
		out, err := inPod(ctx, c, src, "list-pods", kc, probeNS)
		if ee := (*exec.ExitError)(nil); !errors.As(err, &ee) || ee.ExitCode() != 3 {
			t.Fatalf("before RBAC: want Forbidden (exit 3), got %v: %s", err, out)
		}
		rules := []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"get", "list", "watch"}}}
		if _, err := c.Client.RbacV1().Roles(probeNS).Create(ctx, &rbacv1.Role{
			ObjectMeta: metav1.ObjectMeta{Name: "pod-reader"}, Rules: rules,
		}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Client.RbacV1().RoleBindings(probeNS).Create(ctx, &rbacv1.RoleBinding{
			ObjectMeta: metav1.ObjectMeta{Name: "pod-reader"},
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: "pod-reader"},
			Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Namespace: probeNS, Name: "xosprobe-agent"}},
		}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		eventually(t, 20*time.Second, "list pods with RBAC", func() error {
			out, err := inPod(ctx, c, src, "list-pods", kc, probeNS)
			if err != nil {
				return fmt.Errorf("%w: %s", err, out)
			}
			return nil
		})
	})

	t.Run("RestartAPIServer", func(t *testing.T) {
		start := time.Now()
		if err := c.CP.Restart(ctx, cluster.KubeAPIServer); err != nil {
			t.Fatal(err)
		}
		t.Logf("timing: kube-apiserver restart %s", time.Since(start).Round(time.Millisecond))
		// The data plane never depended on the apiserver; the controllers
		// reconnect and keep reconciling.
		out, err := inPod(ctx, c, agents[0].pod, "get", fmt.Sprintf("http://%s:80/healthz", svcIP[cluster.Windows]))
		if err != nil {
			t.Errorf("VIP during/after restart: %v: %s", err, out)
		}
	})

	t.Run("DeletePod", func(t *testing.T) {
		p := agents[3].pod
		if err := c.DeletePod(ctx, p); err != nil {
			t.Fatal(err)
		}
		eventually(t, 30*time.Second, "EndpointSlice drops the deleted pod", func() error {
			got, err := readyEndpoints(ctx, c, "probe-windows")
			if err != nil {
				return err
			}
			if slices.Contains(got, p.IP.String()) {
				return fmt.Errorf("still lists %s", p.IP)
			}
			return nil
		})
	})
}

// inPodFromHost checks a responder from the host, which routes to every pod.
func inPodFromHost(ctx context.Context, p *cluster.Pod) (string, error) {
	exe, err := os.Executable()
	if err != nil {
		return "", err
	}
	cmd := exec.CommandContext(ctx, exe, "get", fmt.Sprintf("http://%s:%d/healthz", p.IP, portHTTP))
	cmd.Env = append(os.Environ(), helperEnv+"=1")
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func readyEndpoints(ctx context.Context, c *cluster.Cluster, service string) ([]string, error) {
	slices_, err := c.Client.DiscoveryV1().EndpointSlices(probeNS).List(ctx, metav1.ListOptions{
		LabelSelector: discoveryv1.LabelServiceName + "=" + service,
	})
	if err != nil {
		return nil, err
	}
	var ips []string
	for _, s := range slices_.Items {
		for _, e := range s.Endpoints {
			if e.Conditions.Ready != nil && *e.Conditions.Ready {
				ips = append(ips, e.Addresses...)
			}
		}
	}
	return ips, nil
}

func ptrTo[T any](v T) *T { return &v }

// TestSweep leaves a cluster running, as a crashed run would, and checks that
// Sweep removes all of it: processes, namespaces, links, routes, chains.
func TestSweep(t *testing.T) {
	ctx, cancel := testContext(t, 5*time.Minute)
	defer cancel()
	c := setup(t, ctx, false)
	n, err := c.CreateNode(ctx, "lin-1", cluster.Linux, "")
	if err != nil {
		t.Fatal(err)
	}
	p, err := c.CreatePod(ctx, n, cluster.PodSpec{Name: "orphan"})
	if err != nil {
		t.Fatal(err)
	}
	proc, err := c.Exec(ctx, p, cluster.ExecSpec{Args: []string{"sleep", "600"}})
	if err != nil {
		t.Fatal(err)
	}
	apiserver := c.CP.Process(cluster.KubeAPIServer)
	start := time.Now()
	removed, err := cluster.Sweep(c.Prefix())
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("sweep (%s) removed: %v", time.Since(start).Round(time.Millisecond), removed)
	for _, pr := range []*cluster.Process{proc, apiserver} {
		select {
		case <-pr.Done():
		case <-time.After(10 * time.Second):
			t.Errorf("%s (pid %d) survived the sweep", pr.Name, pr.PID())
		}
	}
	if left, err := cluster.Leftovers(c.Prefix()); err != nil || len(left) > 0 {
		t.Errorf("after sweep: %v %v", left, err)
	}
	// The registered Teardown runs next and must cope with a swept cluster.
}

// TestStartFailureCleansUp starts a cluster whose kube-apiserver exits at
// once: Start must fail with the component's log, and Teardown (registered by
// setup) must still leave nothing behind.
func TestStartFailureCleansUp(t *testing.T) {
	ctx, cancel := testContext(t, 2*time.Minute)
	defer cancel()
	if os.Geteuid() != 0 || testing.Short() {
		t.Skip("e2e: needs root and no -short")
	}
	real := binDir(t)
	broken := t.TempDir()
	for _, b := range []string{"etcd", "kube-controller-manager", "kube-proxy", "coredns", "kube-router"} {
		if err := os.Symlink(filepath.Join(real, b), filepath.Join(broken, b)); err != nil {
			t.Fatal(err)
		}
	}
	script := "#!/bin/sh\necho 'broken on purpose' >&2\nexit 1\n"
	if err := os.WriteFile(filepath.Join(broken, "kube-apiserver"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := cluster.Requirements(real, false); err != nil {
		t.Skipf("e2e: %v", err)
	}
	c, err := cluster.New(cluster.Config{BinDir: broken, WorkDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	err = c.Start(ctx)
	if err == nil || !strings.Contains(err.Error(), "broken on purpose") {
		t.Errorf("Start: want the apiserver's log in the error, got %v", err)
	}
	if err := c.Teardown(); err != nil {
		t.Errorf("teardown: %v", err)
	}
	if left, err := cluster.Leftovers(c.Prefix()); err != nil || len(left) > 0 {
		t.Errorf("after a failed start: %v %v", left, err)
	}
}

// cpusByOS gives the Linux nodes' pods one half of this machine's CPUs and
// the Windows nodes' pods the other. Otherwise both ends of every probe
// compete for the same CPUs at the same moment, which pods on separate
// nodes never do: the Windows responder under Wine then answered 0.8-0.9 ms
// slower when its request came at once than when a delayer had held it.
func cpusByOS() map[cluster.OS]string {
	n := runtime.NumCPU()
	if n < 2 {
		return nil
	}
	half := n / 2
	return map[cluster.OS]string{cluster.Linux: fmt.Sprintf("0-%d", half-1), cluster.Windows: fmt.Sprintf("%d-%d", half, n-1)}
}
