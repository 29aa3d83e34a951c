package e2e

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/httpstream"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/remotecommand"
	"k8s.io/utils/ptr"

	"github.com/xosprobe/xosprobe/test/e2e/cluster"
)

const podtoolImage = "xosprobe-e2e.local/podtool:1"

// TestKubeletNode runs one Linux node of the box with a real kubelet and
// containerd (runc, CNI bridge + host-local), imports images built here
// without a registry, and runs a pod bound to the node through the API: it
// must reach Running and Ready with an IP of the node's pod CIDR, answer
// HTTP from the host, run as the pod spec's user, and take an exec through
// the apiserver's exec subresource as kubectl exec does.
func TestKubeletNode(t *testing.T) {
	ctx, cancel := testContext(t, 10*time.Minute)
	defer cancel()
	c := setupKubeletCluster(t, ctx)
	kcfg := cluster.KubeletConfig{PauseBinary: buildPodtool(t, ctx, c.WorkDir())}

	start := time.Now()
	node, err := c.CreateKubeletNode(ctx, "klin-1", "", kcfg)
	if node != nil && node.Kubelet != nil {
		k := node.Kubelet
		t.Cleanup(func() { stopKubelet(t, k) })
	}
	if err != nil {
		t.Fatalf("kubelet node: %v", err)
	}
	k := node.Kubelet
	t.Logf("kubelet node %s Ready after %s (cgroup root %s)", node.Name, time.Since(start).Round(time.Millisecond), k.CgroupRoot)

	imageTar := filepath.Join(c.WorkDir(), "podtool.oci.tar")
	bin, err := os.ReadFile(kcfg.PauseBinary)
	if err != nil {
		t.Fatal(err)
	}
	if err := cluster.WriteImageFile(imageTar, cluster.ImageSpec{
		Ref:        podtoolImage,
		Files:      []cluster.ImageFile{{Path: "/podtool", Mode: 0o755, Data: bin}},
		Entrypoint: []string{"/podtool"},
		Env:        []string{"PATH=/"},
		User:       "65532",
	}); err != nil {
		t.Fatal(err)
	}
	if err := k.ImportImage(ctx, imageTar); err != nil {
		t.Fatal(err)
	}
	images, err := k.Images(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{k.SandboxImage, podtoolImage} {
		if !slices.Contains(images, want) {
			t.Fatalf("runtime images %v lack %s", images, want)
		}
	}

	pod := kubeletTestPod(node.Name)
	start = time.Now()
	if _, err := c.Client.CoreV1().Pods(pod.Namespace).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	running, err := waitPodRunning(ctx, c.Client, node, pod.Namespace, pod.Name, 3*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("pod %s/%s Running and Ready after %s, IP %s", pod.Namespace, pod.Name, time.Since(start).Round(time.Millisecond), running.Status.PodIP)

	ip, err := netip.ParseAddr(running.Status.PodIP)
	if err != nil || !node.PodCIDR.Contains(ip) || ip.Less(node.PodCIDR.Masked().Addr().Next().Next()) {
		t.Fatalf("pod IP %q: want an address of node %s's pod CIDR %s", running.Status.PodIP, node.Name, node.PodCIDR)
	}
	if running.Status.HostIP != node.IP.String() {
		t.Errorf("pod hostIP %s, want the node's %s", running.Status.HostIP, node.IP)
	}
	cs := running.Status.ContainerStatuses
	if len(cs) != 1 || !strings.HasPrefix(cs[0].ContainerID, "containerd://") || !strings.Contains(cs[0].ImageID, "sha256:") {
		t.Errorf("container status %+v: want a containerd container of an imported image", cs)
	}

	body, err := httpGet(ctx, "http://"+ip.String()+":8080/healthz")
	if err != nil {
		t.Fatalf("pod's HTTP from the host: %v", err)
	}
	if want := "ok " + pod.Name + "\n"; body != want {
		t.Errorf("pod's /healthz = %q, want %q", body, want)
	}

	for _, tc := range []struct {
		name string
		cmd  []string
		want string
	}{
		// The pod spec's user, not the image's 65532: the kubelet enforced it.
		{"runs as the pod's user", []string{"podtool", "id"}, "uid=65534 gid=65534\n"},
		{"sees its own network", []string{"podtool", "addrs"}, "eth0=" + ip.String()},
		{"pod hostname", []string{"/podtool", "hostname"}, pod.Name + "\n"},
	} {
		t.Run("exec/"+tc.name, func(t *testing.T) {
			stdout, stderr, err := podExec(ctx, c.CP.REST, c.Client, pod.Namespace, pod.Name, "main", tc.cmd)
			if err != nil {
				t.Fatalf("exec %v: %v (stderr %q)", tc.cmd, err, stderr)
			}
			if !strings.Contains(stdout, tc.want) {
				t.Errorf("exec %v: stdout %q, want it to contain %q", tc.cmd, stdout, tc.want)
			}
		})
	}
	t.Run("exec/failing command reports its exit code", func(t *testing.T) {
		_, _, err := podExec(ctx, c.CP.REST, c.Client, pod.Namespace, pod.Name, "main", []string{"podtool", "no-such-command"})
		if err == nil || !strings.Contains(err.Error(), "exit code 2") {
			t.Errorf("exec of a failing command: error %v, want exit code 2", err)
		}
	})

	// The kubelet, not the harness, stops the pod and lets the API delete it.
	start = time.Now()
	if err := c.Client.CoreV1().Pods(pod.Namespace).Delete(ctx, pod.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := waitPodGone(ctx, c.Client, node, pod.Namespace, pod.Name, time.Minute); err != nil {
		t.Fatal(err)
	}
	t.Logf("pod deleted by the kubelet after %s", time.Since(start).Round(time.Millisecond))
}

// TestKubeletNodeStartFailures: a node whose runtime or kubelet cannot
// start fails CreateKubeletNode at once, naming the component and carrying
// its log, instead of waiting out the readiness timeout.
func TestKubeletNodeStartFailures(t *testing.T) {
	ctx, cancel := testContext(t, 5*time.Minute)
	defer cancel()
	c := setupKubeletCluster(t, ctx)
	pause := buildPodtool(t, ctx, c.WorkDir())
	for _, tc := range []struct {
		node string
		cfg  cluster.KubeletConfig
		want []string
	}{
		{"kbad-rt", cluster.KubeletConfig{PauseBinary: pause, ContainerdArgs: []string{"--no-such-flag"}},
			[]string{"containerd exited", "no-such-flag"}},
		{"kbad-kl", cluster.KubeletConfig{PauseBinary: pause, KubeletArgs: []string{"--no-such-flag"}},
			[]string{"kubelet exited", "no-such-flag"}},
	} {
		t.Run(tc.node, func(t *testing.T) {
			start := time.Now()
			_, err := c.CreateKubeletNode(ctx, tc.node, "", tc.cfg)
			took := time.Since(start)
			if err == nil {
				t.Fatal("CreateKubeletNode succeeded")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error lacks %q:\n%v", w, err)
				}
			}
			t.Logf("failed after %s: %.300s", took.Round(time.Millisecond), err)
		})
	}
}

// setupKubeletCluster is setup for a cluster whose nodes need neither CoreDNS
// nor kube-router.
func setupKubeletCluster(t *testing.T, ctx context.Context) *cluster.Cluster {
	t.Helper()
	return startKubeletCluster(t, ctx, cluster.Config{})
}

// startKubeletCluster is setup for clusters with kubelet nodes: it runs
// build.sh, checks KubeletRequirements (and cluster.Requirements with
// cfg.NetworkPolicy, and that extraBins were built), then starts a cluster
// of cfg (BinDir, WorkDir and Logger filled in) and tears it down after the
// test, failing it on leftovers.
func startKubeletCluster(t *testing.T, ctx context.Context, cfg cluster.Config, extraBins ...string) *cluster.Cluster {
	t.Helper()
	if testing.Short() {
		t.Skip("e2e: skipped in -short mode")
	}
	if os.Geteuid() != 0 {
		t.Skip("e2e: needs root (network namespaces, cgroups, mounts); run as root, e.g. sudo -E go test")
	}
	bin := binDir(t)
	if os.Getenv("XOSPROBE_E2E_SKIP_BUILD") == "" {
		cmd := exec.CommandContext(ctx, "bash", "build.sh")
		cmd.Env = append(os.Environ(), "XOSPROBE_E2E_BIN="+bin)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("build.sh: %v (ctx %v)\n%s", err, ctx.Err(), out)
		}
	}
	if cfg.NetworkPolicy {
		if err := cluster.Requirements(bin, true); err != nil {
			t.Skipf("e2e: %v", err)
		}
	}
	if err := cluster.KubeletRequirements(bin, cluster.KubeletConfig{}); err != nil {
		t.Skipf("e2e: kubelet node: %v", err)
	}
	for _, b := range extraBins {
		if !fileExists(filepath.Join(bin, b)) {
			t.Skipf("e2e: %s missing (run test/e2e/build.sh)", filepath.Join(bin, b))
		}
	}
	work := os.Getenv("XOSPROBE_E2E_WORKDIR")
	if work == "" {
		work = t.TempDir()
	} else if err := os.MkdirAll(work, 0o755); err != nil {
		t.Fatal(err)
	}
	cfg.BinDir, cfg.WorkDir = bin, work
	cfg.Logger = slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelInfo}))
	c, err := cluster.New(cfg)
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
		if left, err := cluster.Leftovers(c.Prefix()); err != nil || len(left) > 0 {
			t.Errorf("teardown left %v behind (%v)", left, err)
		}
	})
	if err := c.Start(ctx); err != nil {
		t.Fatalf("start: %v", err)
	}
	return c
}

// stopKubelet stops the node's kubelet and runtime and checks that no
// container, cgroup or mount of theirs is left on the host.
func stopKubelet(t *testing.T, k *cluster.Kubelet) {
	if err := k.Stop(); err != nil {
		t.Errorf("stop kubelet node %s: %v", k.Node.Name, err)
	}
	if left, err := cluster.SweepKubelets(cluster.DefaultPrefix); err != nil || len(left) > 0 {
		t.Errorf("kubelet node %s left %v behind (%v)", k.Node.Name, left, err)
	}
	f, err := os.Open("/proc/self/mounts")
	if err != nil {
		t.Error(err)
		return
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if fields := strings.Fields(sc.Text()); len(fields) > 1 && strings.HasPrefix(fields[1], k.Dir) {
			t.Errorf("kubelet node %s left a mount on the host: %s", k.Node.Name, sc.Text())
		}
	}
}

// buildPodtool builds cmd/podtool as a static binary: the sandbox's pause
// process and the workload image's toolbox.
func buildPodtool(t *testing.T, ctx context.Context, dir string) string {
	t.Helper()
	out := filepath.Join(dir, "podtool")
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-o", out, "./cmd/podtool")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build podtool: %v\n%s", err, b)
	}
	return out
}

// kubeletTestPod is bound to node by name (no scheduler) and carries a
// restricted security context the kubelet must enforce.
func kubeletTestPod(node string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "kubelet-smoke", Namespace: metav1.NamespaceDefault, Labels: map[string]string{"app": "kubelet-smoke"}},
		Spec: corev1.PodSpec{
			NodeName:                      node,
			AutomountServiceAccountToken:  ptr.To(false),
			TerminationGracePeriodSeconds: ptr.To[int64](5),
			SecurityContext: &corev1.PodSecurityContext{
				RunAsNonRoot:   ptr.To(true),
				RunAsUser:      ptr.To[int64](65534),
				RunAsGroup:     ptr.To[int64](65534),
				SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
			},
			Containers: []corev1.Container{{
				Name:            "main",
				Image:           podtoolImage,
				ImagePullPolicy: corev1.PullNever, // no registry: only the imported image exists
				Args:            []string{"serve", ":8080"},
				Ports:           []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}},
				ReadinessProbe: &corev1.Probe{
					ProbeHandler:  corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/healthz", Port: intstr.FromInt32(8080)}},
					PeriodSeconds: 1,
				},
				SecurityContext: &corev1.SecurityContext{
					AllowPrivilegeEscalation: ptr.To(false),
					ReadOnlyRootFilesystem:   ptr.To(true),
					Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
				},
			}},
		},
	}
}

// waitPodRunning waits until the pod is Running and Ready with an IP. It
// fails early when the node's kubelet or runtime exits, and on timeout says
// where the pod got stuck, with the pod's events and both components' logs.
func waitPodRunning(ctx context.Context, cs kubernetes.Interface, node *cluster.Node, ns, name string, timeout time.Duration) (*corev1.Pod, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var last *corev1.Pod
	for {
		if err := kubeletAlive(node.Kubelet); err != nil {
			return nil, fmt.Errorf("pod %s/%s: %w", ns, name, err)
		}
		p, err := cs.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
		if err == nil {
			last = p
			if p.Status.Phase == corev1.PodRunning && p.Status.PodIP != "" && podReady(p) {
				return p, nil
			}
			if p.Status.Phase == corev1.PodFailed || p.Status.Phase == corev1.PodSucceeded {
				return nil, fmt.Errorf("pod %s/%s ended %s: %s", ns, name, p.Status.Phase, podDiagnosis(context.Background(), cs, node, p))
			}
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("pod %s/%s not Running and Ready within %s (last error %v): %s",
				ns, name, timeout, err, podDiagnosis(context.Background(), cs, node, last))
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func waitPodGone(ctx context.Context, cs kubernetes.Interface, node *cluster.Node, ns, name string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for {
		if err := kubeletAlive(node.Kubelet); err != nil {
			return fmt.Errorf("deleting pod %s/%s: %w", ns, name, err)
		}
		p, err := cs.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("pod %s/%s still there %s after its deletion: %s", ns, name, timeout, podDiagnosis(context.Background(), cs, node, p))
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// kubeletAlive fails, naming the component and its log tail, when the
// node's kubelet or containerd has exited.
func kubeletAlive(k *cluster.Kubelet) error {
	for _, p := range []*cluster.Process{k.Containerd, k.Process} {
		if done, err := p.Exited(); done {
			return fmt.Errorf("node %s: %s exited (%v); log tail:\n%s", k.Node.Name, p.Name, err, p.LogTail(3000))
		}
	}
	return nil
}

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// podDiagnosis describes where a pod is stuck: phase, conditions, container
// states, its events and the tails of the node's kubelet and containerd logs.
func podDiagnosis(ctx context.Context, cs kubernetes.Interface, node *cluster.Node, p *corev1.Pod) string {
	var b strings.Builder
	if p == nil {
		b.WriteString("pod never read from the API\n")
	} else {
		fmt.Fprintf(&b, "phase %s, podIP %q\n", p.Status.Phase, p.Status.PodIP)
		for _, c := range p.Status.Conditions {
			fmt.Fprintf(&b, "  condition %s=%s %s %s\n", c.Type, c.Status, c.Reason, c.Message)
		}
		for _, c := range p.Status.ContainerStatuses {
			fmt.Fprintf(&b, "  container %s ready=%v restarts=%d state=%+v lastState=%+v\n", c.Name, c.Ready, c.RestartCount, c.State, c.LastTerminationState)
		}
		ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		if evs, err := cs.CoreV1().Events(p.Namespace).List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.name=" + p.Name}); err == nil {
			for _, e := range evs.Items {
				fmt.Fprintf(&b, "  event %s %s: %s\n", e.Type, e.Reason, e.Message)
			}
		}
	}
	k := node.Kubelet
	fmt.Fprintf(&b, "kubelet log tail:\n%s\ncontainerd log tail:\n%s", k.Process.LogTail(4000), k.Containerd.LogTail(3000))
	return b.String()
}

// podExec runs cmd in a container through the apiserver's exec subresource,
// as kubectl exec does (WebSocket, falling back to SPDY), and returns its
// output. A command that exits non-zero returns an error naming the code.
func podExec(ctx context.Context, rc *rest.Config, cs kubernetes.Interface, ns, pod, container string, cmd []string) (string, string, error) {
	req := cs.CoreV1().RESTClient().Post().Resource("pods").Namespace(ns).Name(pod).SubResource("exec").
		VersionedParams(&corev1.PodExecOptions{Container: container, Command: cmd, Stdout: true, Stderr: true}, scheme.ParameterCodec)
	ws, err := remotecommand.NewWebSocketExecutor(rc, http.MethodGet, req.URL().String())
	if err != nil {
		return "", "", err
	}
	spdy, err := remotecommand.NewSPDYExecutor(rc, http.MethodPost, req.URL())
	if err != nil {
		return "", "", err
	}
	executor, err := remotecommand.NewFallbackExecutor(ws, spdy, httpstream.IsUpgradeFailure)
	if err != nil {
		return "", "", err
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	var stdout, stderr bytes.Buffer
	err = executor.StreamWithContext(ctx, remotecommand.StreamOptions{Stdout: &stdout, Stderr: &stderr})
	return stdout.String(), stderr.String(), err
}

func httpGet(ctx context.Context, url string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return string(b), fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return string(b), nil
}
