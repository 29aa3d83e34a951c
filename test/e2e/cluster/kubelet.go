package cluster

import (
	"context"
	"crypto"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// KubeletConfig configures a real kubelet node (CreateKubeletNode).
type KubeletConfig struct {
	// PauseBinary is a static linux/amd64 executable that sleeps until
	// SIGTERM (e.g. test/e2e/cmd/podtool): it becomes the sandbox image,
	// built here because no registry is reachable (required).
	PauseBinary string
	// Runc is the OCI runtime binary (default Debian's /usr/sbin/runc).
	Runc string
	// CNIBinDir holds the bridge, host-local and loopback plugins (default
	// Debian's /usr/lib/cni).
	CNIBinDir string
	// Verbosity is the kubelet's -v (default 2).
	Verbosity int
	// ContainerdArgs and KubeletArgs are appended to each one's command
	// line (tests break a node with them on purpose).
	ContainerdArgs, KubeletArgs []string
}

// Kubelet is a node's real kubelet and container runtime. Everything runs
// inside the node's network namespace; the kubelet joins containerd's mount
// namespace (see startContainerd). The kubelet adopts the Node object the
// harness creates (labels, pod CIDR) and fills in its status itself.
type Kubelet struct {
	Node *Node
	// Dir holds the node's runtime and kubelet files (under the cluster's
	// work dir, kubelet/<node>).
	Dir string
	// CgroupRoot is the kubelet's --cgroup-root: one per node, so two
	// kubelets on this host keep their pods apart.
	CgroupRoot string
	// SandboxImage is the pause image's name, pinned in containerd.
	SandboxImage string
	Containerd   *Process
	Process      *Process // the kubelet

	c   *Cluster
	cfg KubeletConfig
}

// Ports a kubelet listens on, on its node's IP inside the node's namespace.
const (
	KubeletPort        = 10250
	kubeletHealthzPort = 10248
)

// kernelTunables are the sysctls a kubelet (protectKernelDefaults false)
// otherwise sets on the host at start, and fails to start if it cannot. They
// are host-wide, not per network namespace: the runtime's mount namespace
// shows the kubelet files holding the values it wants instead.
var kernelTunables = map[string]string{
	"/proc/sys/vm/overcommit_memory": "1",
	"/proc/sys/kernel/panic":         "10",
	"/proc/sys/kernel/panic_on_oops": "1",
}

// KubeletRequirements reports what a cluster with a kubelet node needs and
// this host lacks: root, the binaries of build.sh (control plane, kube-proxy,
// kubelet, containerd), Debian's runc and CNI plugins, util-linux tools and
// mounted cgroup controllers. Tests skip with its message.
func KubeletRequirements(binDir string, cfg KubeletConfig) error {
	cfg.defaults()
	if os.Geteuid() != 0 {
		return errors.New("a kubelet node needs root (namespaces, cgroups, mounts); run as root, e.g. sudo -E go test")
	}
	var missing []string
	for _, b := range []string{"etcd", "kube-apiserver", "kube-controller-manager", "kube-proxy",
		"kubelet", "containerd", "containerd-shim-runc-v2", "ctr"} {
		if _, err := os.Stat(filepath.Join(binDir, b)); err != nil {
			missing = append(missing, filepath.Join(binDir, b)+" (run test/e2e/build.sh)")
		}
	}
	if _, err := os.Stat(cfg.Runc); err != nil {
		missing = append(missing, cfg.Runc+" (apt-get install runc)")
	}
	for _, p := range []string{"bridge", "host-local", "loopback"} {
		if _, err := os.Stat(filepath.Join(cfg.CNIBinDir, p)); err != nil {
			missing = append(missing, filepath.Join(cfg.CNIBinDir, p)+" (apt-get install containernetworking-plugins)")
		}
	}
	for _, t := range []string{"nsenter", "unshare", "mount"} {
		if _, err := exec.LookPath(t); err != nil {
			missing = append(missing, t+" (apt-get install util-linux mount)")
		}
	}
	if len(cgroupHierarchies()) == 0 {
		missing = append(missing, "cgroup v1 controllers under /sys/fs/cgroup")
	}
	if len(missing) > 0 {
		return fmt.Errorf("missing: %v", missing)
	}
	return nil
}

func (cfg *KubeletConfig) defaults() {
	if cfg.Runc == "" {
		cfg.Runc = defaultRunc
	}
	if cfg.CNIBinDir == "" {
		cfg.CNIBinDir = defaultCNIBinDir
	}
	if cfg.Verbosity == 0 {
		cfg.Verbosity = 2
	}
}

// CreateKubeletNode creates a Linux node as CreateNode does (namespace,
// uplink, bridge, routes, kube-proxy, kube-router), except that a real
// kubelet with containerd runs it: pods are created through the API with
// spec.nodeName set (or a scheduler) and the kubelet runs them from images
// imported with Kubelet.ImportImage. It returns when the kubelet reports the
// Node Ready; when containerd or the kubelet fails to start, the error names
// which and carries the tail of its log.
func (c *Cluster) CreateKubeletNode(ctx context.Context, name, podCIDR string, cfg KubeletConfig) (*Node, error) {
	cfg.defaults()
	if cfg.PauseBinary == "" {
		return nil, fmt.Errorf("node %s: KubeletConfig.PauseBinary is required", name)
	}
	if err := KubeletRequirements(c.cfg.BinDir, cfg); err != nil {
		return nil, fmt.Errorf("node %s: %w", name, err)
	}
	return c.createNode(ctx, name, Linux, podCIDR, func(ctx context.Context, n *Node) error {
		k := &Kubelet{
			Node:         n,
			Dir:          filepath.Join(c.cfg.WorkDir, "kubelet", n.Name),
			CgroupRoot:   "/" + kubeletCgroupPrefix(c.cfg.Prefix) + n.Name,
			SandboxImage: "xosprobe-e2e.local/pause:" + n.Name,
			c:            c,
			cfg:          cfg,
		}
		n.Kubelet = k
		return k.start(ctx)
	})
}

// kubeletCgroupPrefix starts the name of every kubelet's cgroup root on this
// host, so SweepKubelets finds them by name.
func kubeletCgroupPrefix(prefix string) string { return prefix + "-kubelet-" }

func (k *Kubelet) start(ctx context.Context) error {
	start := time.Now()
	// A crashed run's containers would hold this node's cgroup root.
	if removed, err := sweepKubeletCgroups(strings.TrimPrefix(k.CgroupRoot, "/")); err != nil {
		return err
	} else if len(removed) > 0 {
		k.c.log.Warn("swept a kubelet node's leftovers", "node", k.Node.Name, "removed", removed)
	}
	// Unix sockets take at most 107 bytes of path; the shim's is longer still.
	if len(k.ContainerdSocket())+len(".ttrpc") > 100 {
		return fmt.Errorf("containerd socket path %s is too long for a unix socket: use a shorter WorkDir", k.ContainerdSocket())
	}
	for _, d := range []string{"containerd/root", "containerd/state", "containerd/opt", "runc", "cni/net.d", "cni/ipam",
		"sysctl", "kubelet/root", "kubelet/pki", "pod-logs", "images"} {
		if err := os.MkdirAll(filepath.Join(k.Dir, d), 0o755); err != nil {
			return err
		}
	}
	if err := k.createCgroupRoot(); err != nil {
		return err
	}
	cni, err := k.cniConfig()
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(k.Dir, "cni", "net.d", "10-"+k.c.cfg.Prefix+".conflist"), []byte(cni), 0o644); err != nil {
		return err
	}
	if err := k.startContainerd(ctx); err != nil {
		return err
	}
	pause, err := os.ReadFile(k.cfg.PauseBinary)
	if err != nil {
		return fmt.Errorf("pause binary: %w", err)
	}
	pauseTar := filepath.Join(k.Dir, "images", "pause.oci.tar")
	if err := WriteImageFile(pauseTar, ImageSpec{
		Ref:        k.SandboxImage,
		Files:      []ImageFile{{Path: "/pause", Mode: 0o755, Data: pause}},
		Entrypoint: []string{"/pause"},
		User:       "65535",
	}); err != nil {
		return err
	}
	if err := k.ImportImage(ctx, pauseTar); err != nil {
		return err
	}
	if err := k.createNodeObject(ctx); err != nil {
		return err
	}
	if err := k.startKubelet(ctx); err != nil {
		return err
	}
	k.c.log.Info("kubelet node ready", "node", k.Node.Name, "cgroupRoot", k.CgroupRoot,
		"elapsed", time.Since(start).Round(time.Millisecond))
	return nil
}

// env is the runtime's and the kubelet's environment: containerd finds its
// shim on PATH, the kubelet mount and umount.
func (k *Kubelet) env() []string {
	return []string{
		"PATH=" + k.c.cfg.BinDir + ":/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		"HOME=" + k.Dir,
		"TMPDIR=" + filepath.Join(k.Dir, "containerd", "state"),
	}
}

// mountNS is the runtime's mount namespace, which the kubelet and ctr join.
func (k *Kubelet) mountNS() string {
	return fmt.Sprintf("/proc/%d/ns/mnt", k.Containerd.PID())
}

// createNodeObject creates the Node as the harness's nodes are labelled, with
// the pod CIDR the node's bridge and CNI use and no status: the kubelet
// adopts the object and reports status, addresses and capacity itself.
func (k *Kubelet) createNodeObject(ctx context.Context) error {
	cidr := k.Node.PodCIDR.Masked().String()
	node := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: k.Node.Name, Labels: map[string]string{
			corev1.LabelOSStable:   string(Linux),
			corev1.LabelArchStable: "amd64",
			corev1.LabelHostname:   k.Node.Name,
		}},
		Spec: corev1.NodeSpec{PodCIDR: cidr, PodCIDRs: []string{cidr}},
	}
	_, err := k.c.Client.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{})
	return err
}

// kubeletConfig renders the KubeletConfiguration. What this host needs:
// failCgroupV1 false and the cgroupfs driver (cgroup v1, no systemd), a
// cgroup root of the node's own, the host's kernel settings left alone (see
// kernelTunables), swap tolerated, eviction thresholds low enough that a
// full test disk does not evict the test. The apiserver authenticates with
// the cluster CA's client certificate (issueKubeletClientCert); any client the
// CA certified may use the kubelet API (authorization AlwaysAllow: the
// apiserver proxies exec and logs, nobody else reaches the node's address).
func (k *Kubelet) kubeletConfig(pki kubeletPKI) string {
	ip := k.Node.IP.String()
	return fmt.Sprintf(`apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
failCgroupV1: false
cgroupDriver: cgroupfs
cgroupRoot: %s
cgroupsPerQOS: true
containerRuntimeEndpoint: unix://%s
address: %s
port: %d
readOnlyPort: 0
healthzBindAddress: %s
healthzPort: %d
tlsCertFile: %s
tlsPrivateKeyFile: %s
rotateCertificates: false
serverTLSBootstrap: false
authentication:
  anonymous:
    enabled: false
  webhook:
    enabled: false
  x509:
    clientCAFile: %s
authorization:
  mode: AlwaysAllow
clusterDNS: [%s]
clusterDomain: %s
resolvConf: %s
podLogsDir: %s
failSwapOn: false
protectKernelDefaults: false
registerNode: true
staticPodPath: ""
maxPods: 110
serializeImagePulls: false
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard:
  memory.available: 50Mi
  nodefs.available: "1%%"
  nodefs.inodesFree: "1%%"
  imagefs.available: "1%%"
shutdownGracePeriod: 0s
shutdownGracePeriodCriticalPods: 0s
`, k.CgroupRoot, k.ContainerdSocket(), ip, KubeletPort, ip, kubeletHealthzPort, pki.servingCert, pki.servingKey,
		k.c.CP.PKI.CACert, DNSServiceIP, ClusterDomain, filepath.Join(k.Dir, "resolv.conf"), filepath.Join(k.Dir, "pod-logs"))
}

type kubeletPKI struct {
	clientCert, clientKey   string // system:node:<name>, group system:nodes
	servingCert, servingKey string // the node's IP
}

func (k *Kubelet) issueCertificates() (kubeletPKI, error) {
	dir := filepath.Join(k.Dir, "kubelet", "pki")
	var p kubeletPKI
	var err error
	p.clientCert, p.clientKey, err = k.c.CP.PKI.issue(dir, "kubelet-client", &x509.Certificate{
		Subject:     pkix.Name{CommonName: "system:node:" + k.Node.Name, Organization: []string{"system:nodes"}},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	})
	if err != nil {
		return p, err
	}
	p.servingCert, p.servingKey, err = k.c.CP.PKI.issue(dir, "kubelet-serving", &x509.Certificate{
		Subject:     pkix.Name{CommonName: k.Node.Name},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses: []net.IP{k.Node.IP.AsSlice()},
		DNSNames:    []string{k.Node.Name},
	})
	return p, err
}

func (k *Kubelet) startKubelet(ctx context.Context) error {
	pki, err := k.issueCertificates()
	if err != nil {
		return err
	}
	dir := filepath.Join(k.Dir, "kubelet")
	kubeconfig := filepath.Join(dir, "kubeconfig")
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["e2e"] = &clientcmdapi.Cluster{Server: k.c.CP.Server, CertificateAuthority: k.c.CP.PKI.CACert}
	cfg.AuthInfos["kubelet"] = &clientcmdapi.AuthInfo{ClientCertificate: pki.clientCert, ClientKey: pki.clientKey}
	cfg.Contexts["e2e"] = &clientcmdapi.Context{Cluster: "e2e", AuthInfo: "kubelet"}
	cfg.CurrentContext = "e2e"
	if err := clientcmd.WriteToFile(*cfg, kubeconfig); err != nil {
		return err
	}
	// The pods' resolv.conf: the kubelet adds clusterDNS and the search
	// list; the host's own resolver settings stay out of the cluster.
	if err := os.WriteFile(filepath.Join(k.Dir, "resolv.conf"), []byte("options ndots:5\n"), 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "config.yaml"), []byte(k.kubeletConfig(pki)), 0o644); err != nil {
		return err
	}
	argv := []string{
		"nsenter", "--net=" + netnsPath(k.Node.NetNS), "--mount=" + k.mountNS(), "--",
		filepath.Join(k.c.cfg.BinDir, "kubelet"),
		"--config=" + filepath.Join(dir, "config.yaml"),
		"--kubeconfig=" + kubeconfig,
		"--root-dir=" + filepath.Join(dir, "root"),
		"--cert-dir=" + filepath.Join(dir, "pki"),
		"--hostname-override=" + k.Node.Name,
		"--node-ip=" + k.Node.IP.String(),
		"--v=" + strconv.Itoa(k.cfg.Verbosity),
	}
	argv = append(argv, k.cfg.KubeletArgs...)
	p, err := startProcess("kubelet", filepath.Join(k.c.cfg.WorkDir, "logs", k.Node.Name, "kubelet.log"), "", k.env(), argv)
	if err != nil {
		return err
	}
	k.Node.procs.add(p)
	k.Process = p
	healthz := "http://" + net.JoinHostPort(k.Node.IP.String(), strconv.Itoa(kubeletHealthzPort)) + "/healthz"
	return waitFor(ctx, p, 2*time.Minute, "kubelet healthy and Node Ready", func(ctx context.Context) error {
		if done, err := k.Containerd.Exited(); done {
			return fmt.Errorf("containerd exited (%v); log tail:\n%s", err, k.Containerd.LogTail(3000))
		}
		if err := httpGetOK(ctx, healthz); err != nil {
			return err
		}
		node, err := k.c.Client.CoreV1().Nodes().Get(ctx, k.Node.Name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		return kubeletNodeReady(node)
	})
}

// kubeletNodeReady says whether the kubelet (not the harness) reports node
// Ready: its version in the node info, a containerd runtime, Ready true.
func kubeletNodeReady(node *corev1.Node) error {
	info := node.Status.NodeInfo
	if info.KubeletVersion == "" || !strings.HasPrefix(info.ContainerRuntimeVersion, "containerd://") {
		return fmt.Errorf("node %s: no kubelet has reported its status yet (kubelet %q, runtime %q)",
			node.Name, info.KubeletVersion, info.ContainerRuntimeVersion)
	}
	for _, c := range node.Status.Conditions {
		if c.Type == corev1.NodeReady {
			if c.Status != corev1.ConditionTrue {
				return fmt.Errorf("node %s: Ready %s: %s: %s", node.Name, c.Status, c.Reason, c.Message)
			}
			return nil
		}
	}
	return fmt.Errorf("node %s: no Ready condition yet", node.Name)
}

// Stop stops the kubelet, kills every container of the node (the processes
// in its cgroup root), stops containerd and its shims and removes the cgroup
// root. Containers outlive a kubelet and a runtime by design, so stopping
// the processes alone would leave them running. The runtime's mounts lived
// in its own mount namespace and vanish with the last of these processes.
// Safe to call more than once.
func (k *Kubelet) Stop() error {
	var errs []error
	if k.Process != nil {
		errs = append(errs, k.Process.Stop())
		k.Node.procs.remove(k.Process)
	}
	_, err := sweepKubeletCgroups(strings.TrimPrefix(k.CgroupRoot, "/"))
	errs = append(errs, err)
	if k.Containerd != nil {
		errs = append(errs, k.Containerd.Stop())
		k.Node.procs.remove(k.Containerd)
	}
	killPIDs(shimPIDs(k.ContainerdSocket()))
	return errors.Join(errs...)
}

// SweepKubelets removes what kubelet nodes of clusters with this prefix may
// have left on the host: their containers (every process in a cgroup root
// named <prefix>-kubelet-*) and the cgroup roots. Shims and runtimes run in
// node network namespaces, where Sweep finds them.
func SweepKubelets(prefix string) ([]string, error) {
	return sweepKubeletCgroups(kubeletCgroupPrefix(prefix) + "*")
}

// shimPIDs finds the containerd-shim-runc-v2 processes serving the
// containerd at address (their command line names it).
func shimPIDs(address string) []int {
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	var pids []int
	for _, f := range procs {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		args := strings.Split(strings.TrimRight(string(b), "\x00"), "\x00")
		if len(args) == 0 || filepath.Base(args[0]) != "containerd-shim-runc-v2" {
			continue
		}
		if i := slices.Index(args, "-address"); i >= 0 && i+1 < len(args) && args[i+1] == address {
			if pid, err := strconv.Atoi(filepath.Base(filepath.Dir(f))); err == nil {
				pids = append(pids, pid)
			}
		}
	}
	return pids
}

// cgroupHierarchies lists the mounted cgroup hierarchies: each v1
// controller's directory and the (empty, on these hosts) cgroup2 one.
func cgroupHierarchies() []string {
	b, err := os.ReadFile("/proc/self/mounts")
	if err != nil {
		return nil
	}
	var dirs []string
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) > 2 && (f[2] == "cgroup" || f[2] == "cgroup2") {
			dirs = append(dirs, f[1])
		}
	}
	return dirs
}

// createCgroupRoot makes the node's cgroup root in every hierarchy: the
// kubelet refuses a --cgroup-root that does not exist. A new v1 cpuset
// starts with no CPUs and memory nodes; it gets its parent's.
func (k *Kubelet) createCgroupRoot() error {
	for _, h := range cgroupHierarchies() {
		d := filepath.Join(h, k.CgroupRoot)
		if err := os.MkdirAll(d, 0o755); err != nil {
			return fmt.Errorf("cgroup root %s: %w", d, err)
		}
		for _, f := range []string{"cpuset.cpus", "cpuset.mems"} {
			v, err := os.ReadFile(filepath.Join(h, f))
			if err != nil {
				continue // not the cpuset hierarchy
			}
			if err := os.WriteFile(filepath.Join(d, f), v, 0o644); err != nil {
				return fmt.Errorf("cgroup root %s: %s: %w", d, f, err)
			}
		}
	}
	return nil
}

// sweepKubeletCgroups kills every process in the cgroup roots matching
// pattern (a glob of top-level cgroup names) in every hierarchy, then removes
// the cgroups, deepest first.
func sweepKubeletCgroups(pattern string) ([]string, error) {
	var roots []string
	for _, h := range cgroupHierarchies() {
		m, _ := filepath.Glob(filepath.Join(h, pattern))
		roots = append(roots, m...)
	}
	if len(roots) == 0 {
		return nil, nil
	}
	var removed []string
	// A container's process may fork while we kill: repeat until the
	// cgroups are empty.
	for range 50 {
		pids := cgroupPIDs(roots)
		if len(pids) == 0 {
			break
		}
		killPIDs(pids)
		removed = append(removed, fmt.Sprintf("%d container processes", len(pids)))
	}
	var errs []error
	for _, r := range roots {
		var dirs []string
		_ = filepath.WalkDir(r, func(path string, d os.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				dirs = append(dirs, path)
			}
			return nil
		})
		for i := len(dirs) - 1; i >= 0; i-- {
			if err := rmdirCgroup(dirs[i]); err != nil {
				errs = append(errs, err)
			}
		}
		removed = append(removed, "cgroup "+r)
	}
	return removed, errors.Join(errs...)
}

// cgroupPIDs lists the live processes in the cgroups under roots. Zombies
// are left out: they hold nothing but their cgroup, until their parent
// (a shim) reaps them.
func cgroupPIDs(roots []string) []int {
	seen := map[int]bool{}
	var pids []int
	for _, r := range roots {
		_ = filepath.WalkDir(r, func(path string, d os.DirEntry, err error) error {
			if err != nil || d.IsDir() || d.Name() != "cgroup.procs" {
				return nil
			}
			b, _ := os.ReadFile(path)
			for _, f := range strings.Fields(string(b)) {
				pid, err := strconv.Atoi(f)
				if err != nil || seen[pid] || pid == os.Getpid() || isZombie(pid) {
					continue
				}
				seen[pid] = true
				pids = append(pids, pid)
			}
			return nil
		})
	}
	return pids
}

func isZombie(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true // gone
	}
	i := strings.LastIndexByte(string(b), ')')
	return i >= 0 && len(b) > i+2 && b[i+2] == 'Z'
}

// rmdirCgroup removes an empty cgroup; one whose last process is still
// exiting is busy for a moment.
func rmdirCgroup(dir string) error {
	var err error
	for range 50 {
		if err = syscall.Rmdir(dir); err == nil || errors.Is(err, syscall.ENOENT) {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("remove cgroup %s: %w", dir, err)
}

// upperHalf returns the first and last assignable address of the upper half
// of prefix (an IPv4 /30 or larger): the range host-local hands to a kubelet
// node's pods.
func upperHalf(prefix netip.Prefix) (first, last netip.Addr, err error) {
	if !prefix.Addr().Is4() || prefix.Bits() > 29 {
		return first, last, fmt.Errorf("pod CIDR %s: want an IPv4 prefix of /29 or larger", prefix)
	}
	size := 1 << (32 - prefix.Bits())
	base := prefix.Masked().Addr()
	return addrAdd(base, size/2), addrAdd(base, size-2), nil
}

// kubeletClientCN is the identity kube-apiserver presents to kubelets.
const kubeletClientCN = "kube-apiserver-kubelet-client"

// issueKubeletClientCert makes the client certificate kube-apiserver
// presents to real kubelets (see apiServerArgs), before it starts: so the
// first kubelet node needs no apiserver restart.
func (cp *ControlPlane) issueKubeletClientCert() error {
	var err error
	cp.PKI.KubeletClientCert, cp.PKI.KubeletClientKey, err = cp.PKI.issue(cp.PKI.Dir, "apiserver-kubelet-client", &x509.Certificate{
		Subject:     pkix.Name{CommonName: kubeletClientCN, Organization: []string{"system:masters"}},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	})
	return err
}

// issue signs a certificate from tmpl with the cluster CA and writes it and
// a new key to dir/name.crt and dir/name.key.
func (p *PKI) issue(dir, name string, tmpl *x509.Certificate) (cert, key string, err error) {
	caCert, caKey, err := p.loadCA()
	if err != nil {
		return "", "", err
	}
	cert, key = filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key")
	k, err := newKey(key)
	if err != nil {
		return "", "", err
	}
	now := time.Now().Add(-time.Hour)
	tmpl.SerialNumber = serial()
	tmpl.NotBefore, tmpl.NotAfter = now, now.Add(7*24*time.Hour)
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	if _, err := writeCert(cert, tmpl, caCert, k.Public(), caKey); err != nil {
		return "", "", err
	}
	return cert, key, nil
}

func (p *PKI) loadCA() (*x509.Certificate, crypto.Signer, error) {
	certPEM, err := os.ReadFile(p.CACert)
	if err != nil {
		return nil, nil, err
	}
	b, _ := pem.Decode(certPEM)
	if b == nil {
		return nil, nil, fmt.Errorf("%s: no PEM block", p.CACert)
	}
	cert, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", p.CACert, err)
	}
	keyPEM, err := os.ReadFile(p.CAKey)
	if err != nil {
		return nil, nil, err
	}
	if b, _ = pem.Decode(keyPEM); b == nil {
		return nil, nil, fmt.Errorf("%s: no PEM block", p.CAKey)
	}
	key, err := x509.ParsePKCS8PrivateKey(b.Bytes)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", p.CAKey, err)
	}
	signer, ok := key.(crypto.Signer)
	if !ok {
		return nil, nil, fmt.Errorf("%s: %T is not a signing key", p.CAKey, key)
	}
	return cert, signer, nil
}

// ContainerPIDs lists the live processes of the node's containers (every
// process in its cgroup root: sandboxes' pause and workloads), for tests
// that read what the runtime enforced from /proc.
func (k *Kubelet) ContainerPIDs() []int {
	var roots []string
	for _, h := range cgroupHierarchies() {
		if d := filepath.Join(h, k.CgroupRoot); dirExists(d) {
			roots = append(roots, d)
		}
	}
	return cgroupPIDs(roots)
}

func dirExists(d string) bool {
	st, err := os.Stat(d)
	return err == nil && st.IsDir()
}

// PinContainers sets the CPU affinity of every thread of the node's
// containers now running (taskset list, e.g. "0"), so the Linux side of a
// measurement runs on CPUs of its own as Config.CPUs places harness pods.
// The cgroup root's cpuset cannot do it: the kubelet writes every CPU of the
// machine into the cpusets it makes below, which a narrower parent refuses.
// Threads started later inherit their creator's affinity; containers started
// later are not pinned.
func (k *Kubelet) PinContainers(ctx context.Context, cpus string) (int, error) {
	pids := k.ContainerPIDs()
	var errs []error
	for _, pid := range pids {
		if _, err := run(ctx, "taskset", "-a", "-p", "-c", cpus, strconv.Itoa(pid)); err != nil && !isZombie(pid) {
			errs = append(errs, fmt.Errorf("pin pid %d to CPUs %s: %w", pid, cpus, err))
		}
	}
	return len(pids), errors.Join(errs...)
}
