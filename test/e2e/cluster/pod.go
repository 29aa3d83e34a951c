package cluster

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

// PodSpec describes a pod to create.
type PodSpec struct {
	Namespace string // created when missing; default "default"
	Name      string
	Labels    map[string]string
	// Ports are declared on the pod's one container ("main"), so named
	// Service target ports resolve.
	Ports []corev1.ContainerPort
	// ServiceAccount, when set, becomes spec.serviceAccountName. No token is
	// mounted: get one with the TokenRequest API if the workload needs it.
	ServiceAccount string
	// SecurityContext and ContainerSecurityContext, when set, go to the Pod
	// object as a kubelet's pod would carry them from its template (a
	// namespace enforcing Pod Security "restricted" rejects pods without).
	// The harness still runs the workload as the test's user.
	SecurityContext          *corev1.PodSecurityContext
	ContainerSecurityContext *corev1.SecurityContext
	// NotReady creates the pod Running but not Ready, as a kubelet reports a
	// container whose readiness probe has not passed yet; SetReady flips it.
	NotReady bool
}

// Pod is a network namespace on its node's bridge plus the Pod object whose
// status the harness keeps Running and Ready, as a kubelet would.
type Pod struct {
	Namespace string
	Name      string
	Node      *Node
	IP        netip.Addr
	NetNS     string

	c     *Cluster
	veth  string // host end, in the node's namespace
	procs processSet

	mu         sync.Mutex
	winePrefix string // mounted on first Wine exec
}

func (p *Pod) key() string { return p.Namespace + "/" + p.Name }

// String is namespace/name.
func (p *Pod) String() string { return p.key() }

// ResolvConf is the resolv.conf a pod gets. Linux pods get the kubelet's
// ClusterFirst file. Windows pods get the one DNS suffix Windows configures
// (<ns>.svc.cluster.local): Windows does not walk a search list for names with
// a dot, so "svc.other-ns" fails there while it resolves on Linux — a real
// difference xosprobe reports, reproduced here.
func ResolvConf(nodeOS OS, namespace string) string {
	if nodeOS == Windows {
		return fmt.Sprintf("nameserver %s\nsearch %s.svc.%s\n", DNSServiceIP, namespace, ClusterDomain)
	}
	return fmt.Sprintf("nameserver %s\nsearch %s.svc.%s svc.%s %s\noptions ndots:5\n",
		DNSServiceIP, namespace, ClusterDomain, ClusterDomain, ClusterDomain)
}

// CreatePod creates a pod on node: its namespace (named after the pod), a
// veth into the node's bridge with the next address of the node's pod CIDR,
// /etc/netns files (resolv.conf, hosts) that ip netns exec mounts over /etc,
// and the Pod object, whose status it then sets to Running and Ready.
func (c *Cluster) CreatePod(ctx context.Context, node *Node, spec PodSpec) (*Pod, error) {
	if spec.Namespace == "" {
		spec.Namespace = metav1.NamespaceDefault
	}
	if spec.Name == "" {
		return nil, errors.New("CreatePod: empty name")
	}
	p, err := c.newPod(ctx, node, spec.Namespace, spec.Name)
	if err != nil {
		return nil, err
	}
	if err := c.ensureNamespace(ctx, spec.Namespace); err != nil {
		return nil, err
	}
	if c.cfg.Workloads {
		// ServiceAccount admission rejects a pod whose account does not
		// exist yet; the controller makes "default" moments after the
		// namespace.
		sa := spec.ServiceAccount
		if sa == "" {
			sa = "default"
		}
		if err := waitFor(ctx, nil, 30*time.Second, "ServiceAccount "+spec.Namespace+"/"+sa, func(ctx context.Context) error {
			_, err := c.Client.CoreV1().ServiceAccounts(spec.Namespace).Get(ctx, sa, metav1.GetOptions{})
			return err
		}); err != nil {
			return nil, fmt.Errorf("pod %s: %w", p, err)
		}
	}
	if err := p.createObject(ctx, spec); err != nil {
		return nil, fmt.Errorf("pod %s: %w", p, err)
	}
	return p, nil
}

// AdoptPod plays the kubelet for a Pod object bound to node by someone else
// (the scheduler, a controller): it gives the pod its network as CreatePod
// does and reports it Running, not Ready (SetReady, once its readiness
// probe passes). The object must exist and name node.
func (c *Cluster) AdoptPod(ctx context.Context, node *Node, obj *corev1.Pod) (*Pod, error) {
	if obj.Spec.NodeName != node.Name {
		return nil, fmt.Errorf("adopt pod %s/%s: bound to %q, not %s", obj.Namespace, obj.Name, obj.Spec.NodeName, node.Name)
	}
	p, err := c.newPod(ctx, node, obj.Namespace, obj.Name)
	if err != nil {
		return nil, err
	}
	if err := p.updateStatus(ctx, obj.DeepCopy(), false); err != nil {
		return nil, fmt.Errorf("pod %s: status: %w", p, err)
	}
	return p, nil
}

// newPod registers a pod of the harness and creates its network.
func (c *Cluster) newPod(ctx context.Context, node *Node, namespace, name string) (*Pod, error) {
	ip, veth, err := node.allocIP()
	if err != nil {
		return nil, err
	}
	p := &Pod{
		Namespace: namespace, Name: name, Node: node, IP: ip, c: c, veth: veth,
		NetNS: c.cfg.Prefix + "-pod-" + namespace + "-" + name,
	}
	c.mu.Lock()
	if _, dup := c.pods[p.key()]; dup {
		c.mu.Unlock()
		return nil, fmt.Errorf("pod %s exists", p)
	}
	c.pods[p.key()] = p
	c.mu.Unlock()
	start := time.Now()
	if err := p.createNetwork(ctx); err != nil {
		return nil, fmt.Errorf("pod %s: %w", p, err)
	}
	c.log.Debug("pod network ready", "pod", p.key(), "node", node.Name, "ip", ip, "elapsed", time.Since(start).Round(time.Millisecond))
	return p, nil
}

// Pod returns a pod the harness created, or nil.
func (c *Cluster) Pod(namespace, name string) *Pod {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.pods[namespace+"/"+name]
}

func (p *Pod) createNetwork(ctx context.Context) error {
	n := p.Node
	etc := filepath.Join("/etc/netns", p.NetNS)
	if err := os.MkdirAll(etc, 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(etc, "resolv.conf"), []byte(ResolvConf(n.OS, p.Namespace)), 0o644); err != nil {
		return err
	}
	hosts := fmt.Sprintf("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n%s\t%s\n", p.IP, p.Name)
	if err := os.WriteFile(filepath.Join(etc, "hosts"), []byte(hosts), 0o644); err != nil {
		return err
	}
	bits := strconv.Itoa(n.PodCIDR.Bits())
	return runAll(ctx,
		[]string{"ip", "netns", "add", p.NetNS},
		[]string{"ip", "-n", n.NetNS, "link", "add", p.veth, "type", "veth", "peer", "name", "eth0", "netns", p.NetNS},
		[]string{"ip", "-n", n.NetNS, "link", "set", p.veth, "master", "cbr0", "up"},
		// Hairpin lets a pod reach itself through a Service VIP: kube-proxy
		// DNATs the packet back out of the port it came in on.
		[]string{"ip", "-n", n.NetNS, "link", "set", p.veth, "type", "bridge_slave", "hairpin", "on"},
		[]string{"ip", "-n", p.NetNS, "link", "set", "lo", "up"},
		[]string{"ip", "-n", p.NetNS, "addr", "add", p.IP.String() + "/" + bits, "dev", "eth0"},
		[]string{"ip", "-n", p.NetNS, "link", "set", "eth0", "up"},
		[]string{"ip", "-n", p.NetNS, "route", "add", "default", "via", n.Gateway.String()},
	)
}

func (c *Cluster) ensureNamespace(ctx context.Context, name string) error {
	_, err := c.Client.CoreV1().Namespaces().Create(ctx,
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		return nil
	}
	return err
}

func (p *Pod) createObject(ctx context.Context, spec PodSpec) error {
	nodeOS := p.Node.OS
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: p.Name, Namespace: p.Namespace, Labels: spec.Labels},
		Spec: corev1.PodSpec{
			NodeName:                      p.Node.Name,
			NodeSelector:                  map[string]string{corev1.LabelOSStable: string(nodeOS)},
			OS:                            &corev1.PodOS{Name: corev1.OSName(nodeOS)},
			ServiceAccountName:            spec.ServiceAccount,
			AutomountServiceAccountToken:  ptr.To(false),
			TerminationGracePeriodSeconds: ptr.To[int64](0),
			SecurityContext:               spec.SecurityContext,
			Containers: []corev1.Container{{
				Name:            "main",
				Image:           "xosprobe-e2e.invalid/netns:" + string(nodeOS), // never pulled
				Ports:           spec.Ports,
				SecurityContext: spec.ContainerSecurityContext,
			}},
		},
	}
	created, err := p.c.Client.CoreV1().Pods(p.Namespace).Create(ctx, pod, metav1.CreateOptions{})
	if err != nil {
		return err
	}
	return p.updateStatus(ctx, created, !spec.NotReady)
}

// SetReady flips the pod's Ready condition, as a kubelet does when a
// readiness probe starts or stops passing; EndpointSlices follow.
func (c *Cluster) SetReady(ctx context.Context, p *Pod, ready bool) error {
	obj, err := c.Client.CoreV1().Pods(p.Namespace).Get(ctx, p.Name, metav1.GetOptions{})
	if err != nil {
		return err
	}
	return p.updateStatus(ctx, obj, ready)
}

func (p *Pod) updateStatus(ctx context.Context, obj *corev1.Pod, ready bool) error {
	now := metav1.Now()
	start := now
	if obj.Status.StartTime != nil {
		start = *obj.Status.StartTime
	}
	cond := func(t corev1.PodConditionType, ok bool) corev1.PodCondition {
		s := corev1.ConditionTrue
		if !ok {
			s = corev1.ConditionFalse
		}
		return corev1.PodCondition{Type: t, Status: s, LastTransitionTime: now}
	}
	hostIP := p.Node.IP.String()
	qos := obj.Status.QOSClass // set by the apiserver at creation, immutable
	if qos == "" {
		qos = corev1.PodQOSBestEffort
	}
	obj.Status = corev1.PodStatus{
		Phase:     corev1.PodRunning,
		HostIP:    hostIP,
		HostIPs:   []corev1.HostIP{{IP: hostIP}},
		PodIP:     p.IP.String(),
		PodIPs:    []corev1.PodIP{{IP: p.IP.String()}},
		StartTime: &start,
		QOSClass:  qos,
		Conditions: []corev1.PodCondition{
			cond(corev1.PodReadyToStartContainers, true),
			cond(corev1.PodInitialized, true),
			cond(corev1.PodScheduled, true),
			cond(corev1.ContainersReady, ready),
			cond(corev1.PodReady, ready),
		},
		ContainerStatuses: []corev1.ContainerStatus{{
			Name:        obj.Spec.Containers[0].Name,
			Image:       obj.Spec.Containers[0].Image,
			ImageID:     obj.Spec.Containers[0].Image,
			ContainerID: "xosprobe-e2e://" + p.NetNS,
			Ready:       ready,
			Started:     ptr.To(true),
			State:       corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: start}},
		}},
	}
	_, err := p.c.Client.CoreV1().Pods(p.Namespace).UpdateStatus(ctx, obj, metav1.UpdateOptions{})
	return err
}

// TerminatePod starts a graceful deletion of the Pod object, as a controller
// or kubectl does: the apiserver sets its deletionTimestamp and keeps it, now
// terminating (EndpointSlices mark its endpoint so), until the kubelet
// confirms. DeletePod is that confirmation: it stops the workload and deletes
// the object for good.
func (c *Cluster) TerminatePod(ctx context.Context, p *Pod, grace time.Duration) error {
	err := c.Client.CoreV1().Pods(p.Namespace).Delete(ctx, p.Name, metav1.DeleteOptions{GracePeriodSeconds: ptr.To(int64(grace / time.Second))})
	if err != nil {
		return fmt.Errorf("pod %s: graceful delete: %w", p, err)
	}
	got, err := c.Client.CoreV1().Pods(p.Namespace).Get(ctx, p.Name, metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("pod %s: after graceful delete: %w", p, err)
	}
	if got.DeletionTimestamp == nil {
		return fmt.Errorf("pod %s: graceful delete left no deletionTimestamp", p)
	}
	return nil
}

// DeletePod stops the pod's processes, deletes the Pod object (EndpointSlices
// drop it) and removes its namespace, veth and /etc/netns files.
func (c *Cluster) DeletePod(ctx context.Context, p *Pod) error {
	c.mu.Lock()
	delete(c.pods, p.key())
	c.mu.Unlock()
	errs := []error{p.procs.stopAll()}
	killPIDs(netnsPIDs(p.NetNS)) // what the workload forked, wineserver included
	err := c.Client.CoreV1().Pods(p.Namespace).Delete(ctx, p.Name, metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](0)})
	if !apierrors.IsNotFound(err) {
		errs = append(errs, err)
	}
	p.mu.Lock()
	if p.winePrefix != "" {
		errs = append(errs, exec.Command("umount", p.winePrefix).Run())
		p.winePrefix = ""
	}
	p.mu.Unlock()
	if _, err := run(ctx, "ip", "netns", "del", p.NetNS); err != nil {
		errs = append(errs, err)
	}
	errs = append(errs, os.RemoveAll(filepath.Join("/etc/netns", p.NetNS)))
	return errors.Join(errs...)
}

// ExecSpec is a process to run inside a pod.
type ExecSpec struct {
	Args []string
	// Env is added to the pod's base environment: PATH and HOME of the test
	// process, the KUBERNETES_SERVICE_* variables a kubelet injects, and
	// POD_NAME, POD_NAMESPACE, POD_IP, NODE_NAME, HOST_IP.
	Env []string
	// Wine runs Args[0] under Wine with a Wine prefix of the pod's own (Wine
	// opens sockets in its wineserver, so every Windows pod needs a
	// wineserver started inside its namespace), sandboxed as winesandbox.go
	// describes. Args[0] is a C:\ path in the pod's C: drive, or a host .exe
	// that is first copied to C:\<name>\<name>.exe.
	Wine bool
	// Name labels the log file (default: base name of Args[0]).
	Name string
}

// Exec starts spec inside the pod's namespace (ip netns exec, which also
// mounts the pod's resolv.conf and hosts). Stop the returned Process, or let
// DeletePod or Teardown do it; its output is in Process.LogPath.
func (c *Cluster) Exec(ctx context.Context, p *Pod, spec ExecSpec) (*Process, error) {
	argv, env, err := p.command(spec)
	if err != nil {
		return nil, err
	}
	name := spec.Name
	if name == "" {
		name = filepath.Base(spec.Args[0])
	}
	logPath := filepath.Join(c.cfg.WorkDir, "logs", p.Node.Name, p.Namespace+"_"+p.Name+"_"+name+".log")
	proc, err := startProcess(name, logPath, "", env, argv)
	if err != nil {
		return nil, err
	}
	p.procs.add(proc)
	return proc, nil
}

// Processes returns the pod's running processes that Exec started, oldest
// first (tests signal them: SIGSTOP, SIGKILL).
func (p *Pod) Processes() []*Process {
	p.procs.mu.Lock()
	defer p.procs.mu.Unlock()
	return append([]*Process(nil), p.procs.procs...)
}

// Run runs spec inside the pod to completion and returns its combined output.
func (c *Cluster) Run(ctx context.Context, p *Pod, spec ExecSpec) (string, error) {
	argv, env, err := p.command(spec)
	if err != nil {
		return "", err
	}
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Env = env
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("in pod %s: %s: %w", p, strings.Join(spec.Args, " "), err)
	}
	return string(out), nil
}

func (p *Pod) command(spec ExecSpec) (argv, env []string, err error) {
	if len(spec.Args) == 0 {
		return nil, nil, errors.New("exec: no command")
	}
	env = []string{
		"PATH=" + os.Getenv("PATH"),
		"HOME=" + os.Getenv("HOME"),
		"KUBERNETES_SERVICE_HOST=" + KubernetesServiceIP.String(),
		"KUBERNETES_SERVICE_PORT=443",
		"KUBERNETES_SERVICE_PORT_HTTPS=443",
		"POD_NAME=" + p.Name,
		"POD_NAMESPACE=" + p.Namespace,
		"POD_IP=" + p.IP.String(),
		"NODE_NAME=" + p.Node.Name,
		"HOST_IP=" + p.Node.IP.String(),
	}
	args := spec.Args
	if spec.Wine {
		prefix, err := p.wine()
		if err != nil {
			return nil, nil, err
		}
		// The pod's sandbox (winesandbox.go): no host drive, a Unix root of
		// its own, the binary at the image's path. Wine keeps its wineserver
		// socket under $TMPDIR, the pod's own directory bound at /tmp.
		var wenv []string
		if args, wenv, err = p.wineCommand(prefix, args); err != nil {
			return nil, nil, err
		}
		env = append(env, wenv...)
	}
	env = append(env, spec.Env...)
	argv = append([]string{"ip", "netns", "exec", p.NetNS}, args...)
	if cpus := p.c.cfg.CPUs[p.Node.OS]; cpus != "" {
		argv = append([]string{"taskset", "-c", cpus}, argv...) // inherited by all it forks (wineserver too)
	}
	return argv, env, nil
}

// wine mounts the pod's Wine prefix: an overlay on the template prefix, so
// each pod gets its own wineserver (the server is per prefix directory)
// without copying ~700 MB.
func (p *Pod) wine() (string, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.winePrefix != "" {
		return p.winePrefix, nil
	}
	tmpl := p.c.cfg.WineTemplate
	if _, err := os.Stat(filepath.Join(tmpl, "system.reg")); err != nil {
		return "", fmt.Errorf("wine template prefix %s is not initialised (run test/wine/setup.sh): %w", tmpl, err)
	}
	base := filepath.Join(p.c.cfg.WorkDir, "wine", p.Namespace+"_"+p.Name)
	upper, work, merged := filepath.Join(base, "upper"), filepath.Join(base, "work"), filepath.Join(base, "prefix")
	for _, d := range []string{upper, work, merged, filepath.Join(base, "tmp")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return "", err
		}
	}
	if _, err := run(context.Background(), "mount", "-t", "overlay", wineSource(p.c.cfg.Prefix),
		"-o", "lowerdir="+tmpl+",upperdir="+upper+",workdir="+work, merged); err != nil {
		return "", err
	}
	if err := dropHostDrives(merged); err != nil {
		return "", fmt.Errorf("pod %s: %w", p, err)
	}
	p.winePrefix = merged
	return merged, nil
}
