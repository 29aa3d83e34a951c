package cluster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"sync"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"
)

// The cluster's address plan. Every range lives only inside namespaces the
// harness creates (and is blackholed on the host), so no test packet can leave
// the machine.
var (
	// NodeNetwork is the underlay: the host bridge and one address per node.
	NodeNetwork = netip.MustParsePrefix("10.240.0.0/24")
	// HostIP is the host's address on the underlay; kube-apiserver listens
	// here so nodes and pods reach it.
	HostIP = netip.MustParseAddr("10.240.0.1")
	// PodNetwork is the cluster CIDR; node i gets 10.244.i.0/24.
	PodNetwork = netip.MustParsePrefix("10.244.0.0/16")
	// ServiceNetwork is the service-cluster-ip-range.
	ServiceNetwork      = netip.MustParsePrefix("10.96.0.0/16")
	KubernetesServiceIP = netip.MustParseAddr("10.96.0.1")
	DNSServiceIP        = netip.MustParseAddr("10.96.0.10")
)

// ClusterDomain is the DNS domain CoreDNS serves.
const ClusterDomain = "cluster.local"

// DefaultPrefix names everything the harness creates on the host.
const DefaultPrefix = "xne2e"

// Config configures a Cluster.
type Config struct {
	// BinDir holds the binaries build.sh makes (required).
	BinDir string
	// WorkDir receives certificates, etcd data, kubeconfigs and one log file
	// per process (required). The caller owns it; Teardown leaves it in place
	// so logs survive a failure.
	WorkDir string
	// Prefix names host objects (default DefaultPrefix). Sweep and Leftovers
	// take the same prefix. Only one cluster runs per host at a time, whatever
	// the prefix: the address plan is fixed. Start waits for the host lock.
	Prefix string
	// NetworkPolicy starts kube-router's network policy controller on every
	// Linux node; Windows nodes never get one.
	NetworkPolicy bool
	// Workloads runs kube-scheduler and the workload controllers, so
	// DaemonSets and Deployments get pods as in a cluster (see
	// ControlPlane.Workloads); kubelet nodes run them, and on Windows nodes
	// whoever plays their kubelet (AdoptPod).
	Workloads bool
	// WineTemplate is the Wine prefix copied (as an overlay) for each Windows
	// pod that runs a .exe. Default: $WINEPREFIX, else ~/.wine.
	WineTemplate string
	// CPUs maps an OS to the CPUs (a taskset list, e.g. "1") the pods of its
	// nodes run on, so each side's pods have CPUs of their own, as on
	// separate machines, instead of every pod of the box sharing every CPU.
	// An OS without an entry runs its pods anywhere.
	CPUs   map[OS]string
	Logger *slog.Logger
}

// Cluster is a control plane plus nodes and pods made of network namespaces.
type Cluster struct {
	cfg    Config
	log    *slog.Logger
	CP     *ControlPlane
	Client kubernetes.Interface

	mu    sync.Mutex
	nodes []*Node
	pods  map[string]*Pod // by namespace/name
	lock  *os.File
}

// New checks cfg and returns a Cluster that has not touched the host yet.
func New(cfg Config) (*Cluster, error) {
	if cfg.BinDir == "" || cfg.WorkDir == "" {
		return nil, errors.New("cluster: BinDir and WorkDir are required")
	}
	if cfg.Prefix == "" {
		cfg.Prefix = DefaultPrefix
	}
	if len(cfg.Prefix) > 8 {
		return nil, errors.New("cluster: Prefix longer than 8 bytes leaves no room in 15-byte interface names")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.WineTemplate == "" {
		cfg.WineTemplate = os.Getenv("WINEPREFIX")
		if cfg.WineTemplate == "" {
			home, _ := os.UserHomeDir()
			cfg.WineTemplate = filepath.Join(home, ".wine")
		}
	}
	return &Cluster{cfg: cfg, log: cfg.Logger, pods: map[string]*Pod{}}, nil
}

// Requirements reports why a cluster cannot run here: not root, a missing
// binary in binDir or a missing host tool. Tests skip with its message.
func Requirements(binDir string, networkPolicy bool) error {
	var missing []string
	if os.Geteuid() != 0 {
		return errors.New("the e2e cluster needs root (network namespaces, iptables); run as root, e.g. sudo -E go test")
	}
	bins := []string{"etcd", "kube-apiserver", "kube-controller-manager", "kube-proxy", "coredns"}
	tools := []string{"ip", "iptables", "iptables-save", "iptables-restore", "mount", "umount", "sh"}
	if networkPolicy {
		bins = append(bins, "kube-router")
		tools = append(tools, "ipset")
	}
	for _, b := range bins {
		if _, err := os.Stat(filepath.Join(binDir, b)); err != nil {
			missing = append(missing, filepath.Join(binDir, b)+" (run test/e2e/build.sh)")
		}
	}
	for _, t := range tools {
		if _, err := exec.LookPath(t); err != nil {
			missing = append(missing, t+" (apt-get install iproute2 iptables ipset)")
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("missing: %v", missing)
	}
	return nil
}

// WorkDir returns Config.WorkDir: certificates, kubeconfigs, logs/.
func (c *Cluster) WorkDir() string { return c.cfg.WorkDir }

// Prefix returns the name prefix of the cluster's host objects.
func (c *Cluster) Prefix() string { return c.cfg.Prefix }

// Start takes the host lock, sweeps what a crashed run left, creates the host
// network and starts the control plane. Call Teardown afterwards even when
// Start fails.
func (c *Cluster) Start(ctx context.Context) error {
	start := time.Now()
	if err := c.takeLock(ctx); err != nil {
		return err
	}
	removed, err := Sweep(c.cfg.Prefix)
	if len(removed) > 0 {
		c.log.Warn("swept leftovers of an earlier run", "removed", removed)
	}
	if err != nil {
		return fmt.Errorf("sweep: %w", err)
	}
	if err := setupHost(ctx, c.cfg.Prefix); err != nil {
		return fmt.Errorf("host network: %w", err)
	}
	c.CP = &ControlPlane{BinDir: c.cfg.BinDir, BindAddress: HostIP, PIDDir: pidDir(c.cfg.Prefix), Workloads: c.cfg.Workloads, Logger: c.log}
	if err := c.CP.Start(ctx, c.cfg.WorkDir); err != nil {
		return err
	}
	c.Client = c.CP.Client
	if err := c.publishAPIServerEndpoint(ctx); err != nil {
		return err
	}
	c.log.Info("cluster started", "elapsed", time.Since(start).Round(time.Millisecond))
	return nil
}

// LockPath is the file whose lock serializes clusters on this host, whatever
// their prefix; it exists while a cluster runs.
const LockPath = "/run/xosprobe-e2e.lock"

// takeLock serializes clusters on this host: the address plan is fixed, and a
// second run's Sweep would tear down the first. Teardown removes the file
// while holding the lock, so a waiter that then gets the lock on the unlinked
// file checks that the path still names its file and retries if not.
func (c *Cluster) takeLock(ctx context.Context) error {
	logged := false
	for {
		f, err := os.OpenFile(LockPath, os.O_CREATE|os.O_RDWR, 0o644)
		if err != nil {
			return err
		}
		if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err == nil {
			var held, now syscall.Stat_t
			if syscall.Fstat(int(f.Fd()), &held) == nil && syscall.Stat(LockPath, &now) == nil && held.Ino == now.Ino {
				c.lock = f
				return nil
			}
		}
		f.Close()
		if !logged {
			c.log.Info("waiting for another e2e cluster on this host to finish", "lock", LockPath)
			logged = true
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for the host lock %s: %w", LockPath, ctx.Err())
		case <-time.After(time.Second):
		}
	}
}

// publishAPIServerEndpoint points the kubernetes Service at the apiserver,
// which --endpoint-reconciler-type=none leaves to the harness, so in-cluster
// clients in pods (KUBERNETES_SERVICE_HOST=10.96.0.1) work through kube-proxy.
func (c *Cluster) publishAPIServerEndpoint(ctx context.Context) error {
	port := int32(c.CP.apiPort)
	slice := &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{
			Name:      "kubernetes",
			Namespace: metav1.NamespaceDefault,
			Labels: map[string]string{
				discoveryv1.LabelServiceName: "kubernetes",
				discoveryv1.LabelManagedBy:   "xosprobe-e2e",
			},
		},
		AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints:   []discoveryv1.Endpoint{{Addresses: []string{HostIP.String()}, Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)}}},
		Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("https"), Port: &port, Protocol: ptr.To(corev1.ProtocolTCP)}},
	}
	// The apiserver creates the Service itself shortly after it is ready.
	return waitFor(ctx, nil, 30*time.Second, "kubernetes EndpointSlice", func(ctx context.Context) error {
		_, err := c.Client.DiscoveryV1().EndpointSlices(metav1.NamespaceDefault).Create(ctx, slice, metav1.CreateOptions{})
		if apierrors.IsAlreadyExists(err) {
			return nil
		}
		return err
	})
}

// Teardown stops every process, then removes every host object by prefix
// (Sweep), so it cleans up after a partial Start or a failed test alike. It is
// safe to call more than once.
func (c *Cluster) Teardown() error {
	start := time.Now()
	var errs []error
	c.mu.Lock()
	pods := make([]*Pod, 0, len(c.pods))
	for _, p := range c.pods {
		pods = append(pods, p)
	}
	nodes := c.nodes
	c.pods, c.nodes = map[string]*Pod{}, nil
	c.mu.Unlock()
	sort.Slice(pods, func(i, j int) bool { return pods[i].key() < pods[j].key() })
	for _, p := range pods {
		errs = append(errs, p.procs.stopAll())
	}
	for _, n := range nodes {
		if n.Kubelet != nil {
			// Before the node's other processes: containers outlive them.
			errs = append(errs, n.Kubelet.Stop())
		}
		errs = append(errs, n.procs.stopAll())
	}
	if c.CP != nil {
		errs = append(errs, c.CP.Stop())
	}
	// Without the lock this run never touched the host (another run holds
	// it): sweeping would tear that one down.
	if c.lock != nil {
		removed, err := Sweep(c.cfg.Prefix)
		errs = append(errs, err)
		c.log.Debug("teardown swept", "removed", removed)
		_ = os.Remove(LockPath)
		c.lock.Close() // releases the flock
		c.lock = nil
	}
	c.log.Info("cluster torn down", "elapsed", time.Since(start).Round(time.Millisecond))
	return errors.Join(errs...)
}

func httpGetOK(ctx context.Context, url string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return nil
}
