package cluster

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// OS is a node's operating system, the value of the kubernetes.io/os label.
type OS string

// The operating systems a node can claim.
const (
	Linux   OS = "linux"
	Windows OS = "windows"
)

// Node is a network namespace that plays one Kubernetes node. Its eth0 sits on
// the host's underlay bridge with IP; its bridge cbr0 holds Gateway, the first
// address of PodCIDR, and every pod of the node is a veth port of cbr0. Nodes
// route each other's pod CIDRs over the underlay (like flannel's host-gw), so
// pod traffic between nodes crosses each node's own iptables, where that
// node's kube-proxy and (Linux only) kube-router put their rules. The host
// never forwards.
//
// Windows nodes run kube-proxy too, standing in for the HNS load balancer
// that gives Windows pods Service VIPs; they never run a NetworkPolicy
// enforcer.
type Node struct {
	Name    string
	OS      OS
	IP      netip.Addr   // address on the underlay, the Node's InternalIP
	PodCIDR netip.Prefix // e.g. 10.244.1.0/24
	Gateway netip.Addr   // cbr0's address, pods' default gateway
	NetNS   string

	KubeProxy  *Process
	KubeRouter *Process // nil unless Linux and Config.NetworkPolicy
	// Kubelet is the node's real kubelet and container runtime; nil when
	// the harness plays the kubelet (see CreateKubeletNode).
	Kubelet *Kubelet

	c     *Cluster
	index int
	procs processSet

	mu       sync.Mutex
	nextHost netip.Addr
	nextVeth int
}

// CreateNode creates node name: namespace, uplink, pod bridge, routes to and
// from the other nodes, the Node object with a Ready status, kube-proxy and,
// for a Linux node in a cluster with NetworkPolicy, kube-router. podCIDR may be
// empty: node i (from 1) gets 10.244.i.0/24.
func (c *Cluster) CreateNode(ctx context.Context, name string, nodeOS OS, podCIDR string) (*Node, error) {
	return c.createNode(ctx, name, nodeOS, podCIDR, nil)
}

// createNode is CreateNode; a non-nil register replaces the harness's Node
// object and status (a real kubelet registers its node) and runs before
// kube-proxy and kube-router start.
func (c *Cluster) createNode(ctx context.Context, name string, nodeOS OS, podCIDR string, register func(context.Context, *Node) error) (*Node, error) {
	if nodeOS != Linux && nodeOS != Windows {
		return nil, fmt.Errorf("node %s: unknown OS %q", name, nodeOS)
	}
	c.mu.Lock()
	index := len(c.nodes) + 1
	others := append([]*Node(nil), c.nodes...)
	c.mu.Unlock()
	if index > 200 {
		return nil, errors.New("too many nodes for the /24 underlay")
	}
	n := &Node{Name: name, OS: nodeOS, c: c, index: index, NetNS: c.cfg.Prefix + "-node-" + name}
	n.IP = addrAdd(NodeNetwork.Addr(), 10+index)
	if podCIDR == "" {
		n.PodCIDR = netip.PrefixFrom(addrAdd(PodNetwork.Addr(), index<<8), 24)
	} else {
		var err error
		if n.PodCIDR, err = netip.ParsePrefix(podCIDR); err != nil {
			return nil, fmt.Errorf("node %s: %w", name, err)
		}
		if !PodNetwork.Contains(n.PodCIDR.Addr()) || n.PodCIDR.Bits() < PodNetwork.Bits() {
			return nil, fmt.Errorf("node %s: pod CIDR %s is not inside %s", name, n.PodCIDR, PodNetwork)
		}
	}
	n.Gateway = n.PodCIDR.Masked().Addr().Next()
	n.nextHost = n.Gateway.Next()
	start := time.Now()

	if err := n.createNetwork(ctx, others); err != nil {
		return nil, fmt.Errorf("node %s: %w", name, err)
	}
	// Registered before the object and the agents exist, so Teardown stops
	// whatever of them started.
	c.mu.Lock()
	c.nodes = append(c.nodes, n)
	c.mu.Unlock()
	if register == nil {
		register = func(ctx context.Context, n *Node) error { return n.createObject(ctx) }
	}
	if err := register(ctx, n); err != nil {
		return nil, fmt.Errorf("node %s: %w", name, err)
	}
	if err := n.startKubeProxy(ctx); err != nil {
		return nil, fmt.Errorf("node %s: %w", name, err)
	}
	if nodeOS == Linux && c.cfg.NetworkPolicy {
		if err := n.startKubeRouter(ctx); err != nil {
			return nil, fmt.Errorf("node %s: %w", name, err)
		}
	}
	c.log.Info("node ready", "node", name, "os", nodeOS, "ip", n.IP, "podCIDR", n.PodCIDR,
		"elapsed", time.Since(start).Round(time.Millisecond))
	return n, nil
}

// Nodes returns the nodes in creation order.
func (c *Cluster) Nodes() []*Node {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]*Node(nil), c.nodes...)
}

func (n *Node) createNetwork(ctx context.Context, others []*Node) error {
	p := n.c.cfg.Prefix
	uplink := fmt.Sprintf("%s-n%d", p, n.index)
	ns := n.NetNS
	cmds := [][]string{
		{"ip", "netns", "add", ns},
		{"ip", "link", "add", uplink, "type", "veth", "peer", "name", "eth0", "netns", ns},
		{"ip", "link", "set", uplink, "master", bridgeName(p), "up"},
		{"ip", "-n", ns, "link", "set", "lo", "up"},
		{"ip", "-n", ns, "addr", "add", n.IP.String() + "/" + strconv.Itoa(NodeNetwork.Bits()), "dev", "eth0"},
		{"ip", "-n", ns, "link", "set", "eth0", "up"},
		{"ip", "-n", ns, "link", "add", "cbr0", "type", "bridge"},
		{"ip", "-n", ns, "addr", "add", n.Gateway.String() + "/" + strconv.Itoa(n.PodCIDR.Bits()), "dev", "cbr0"},
		{"ip", "-n", ns, "link", "set", "cbr0", "up"},
		// The host reaches pods (tests probe them from there) without
		// forwarding anything itself.
		{"ip", "route", "add", n.PodCIDR.Masked().String(), "via", n.IP.String(), "proto", routeProto},
	}
	for _, o := range others {
		cmds = append(cmds,
			[]string{"ip", "-n", ns, "route", "add", o.PodCIDR.Masked().String(), "via", o.IP.String()},
			[]string{"ip", "-n", o.NetNS, "route", "add", n.PodCIDR.Masked().String(), "via", n.IP.String()},
		)
	}
	if err := runAll(ctx, cmds...); err != nil {
		return err
	}
	// The node forwards between its pods and the underlay, and its bridged
	// pod-to-pod frames pass its iptables (br_netfilter), which is what
	// kube-proxy's DNAT and kube-router's filters need for same-node traffic.
	return setSysctls(ctx, ns, map[string]string{
		"net.ipv4.ip_forward":                 "1",
		"net.bridge.bridge-nf-call-iptables":  "1",
		"net.ipv4.conf.all.rp_filter":         "0",
		"net.ipv4.conf.default.rp_filter":     "0",
		"net.bridge.bridge-nf-call-ip6tables": "1",
	})
}

func (n *Node) createObject(ctx context.Context) error {
	labels := map[string]string{
		corev1.LabelOSStable:   string(n.OS),
		corev1.LabelArchStable: "amd64",
		corev1.LabelHostname:   n.Name,
	}
	osImage, kernel := "Debian GNU/Linux 12 (bookworm)", "6.1.0"
	if n.OS == Windows {
		labels[corev1.LabelWindowsBuild] = "10.0.20348" // Windows Server 2022 (ltsc2022)
		osImage, kernel = "Windows Server 2022 Datacenter", "10.0.20348.2227"
	}
	cidr := n.PodCIDR.Masked().String()
	node := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: n.Name, Labels: labels},
		Spec:       corev1.NodeSpec{PodCIDR: cidr, PodCIDRs: []string{cidr}},
	}
	created, err := n.c.Client.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{})
	if err != nil {
		return err
	}
	now := metav1.Now()
	capacity := corev1.ResourceList{
		corev1.ResourceCPU:    resource.MustParse("2"),
		corev1.ResourceMemory: resource.MustParse("8Gi"),
		corev1.ResourcePods:   resource.MustParse("110"),
	}
	created.Status = corev1.NodeStatus{
		Capacity:    capacity,
		Allocatable: capacity,
		Phase:       corev1.NodeRunning,
		Conditions: []corev1.NodeCondition{{
			Type: corev1.NodeReady, Status: corev1.ConditionTrue, Reason: "KubeletReady",
			Message: "xosprobe e2e harness", LastHeartbeatTime: now, LastTransitionTime: now,
		}},
		Addresses: []corev1.NodeAddress{
			{Type: corev1.NodeInternalIP, Address: n.IP.String()},
			{Type: corev1.NodeHostName, Address: n.Name},
		},
		NodeInfo: corev1.NodeSystemInfo{
			OperatingSystem: string(n.OS), Architecture: "amd64", OSImage: osImage, KernelVersion: kernel,
			KubeletVersion: "v1.37.2", ContainerRuntimeVersion: "xosprobe-e2e://0",
		},
	}
	_, err = n.c.Client.CoreV1().Nodes().UpdateStatus(ctx, created, metav1.UpdateOptions{})
	return err
}

// startAgent runs a per-node agent inside the node's namespace.
func (n *Node) startAgent(name string, argv []string) (*Process, error) {
	argv = append([]string{"ip", "netns", "exec", n.NetNS}, argv...)
	logPath := filepath.Join(n.c.cfg.WorkDir, "logs", n.Name, name+".log")
	p, err := startProcess(name, logPath, "", os.Environ(), argv)
	if err != nil {
		return nil, err
	}
	n.procs.add(p)
	return p, nil
}

const kubeProxyHealthzPort = "10256"

func (n *Node) startKubeProxy(ctx context.Context) error {
	ip := n.IP.String()
	p, err := n.startAgent("kube-proxy", []string{
		filepath.Join(n.c.cfg.BinDir, "kube-proxy"),
		"--kubeconfig=" + n.c.CP.Kubeconfig,
		"--hostname-override=" + n.Name,
		"--proxy-mode=iptables",
		"--cluster-cidr=" + PodNetwork.String(),
		"--bind-address=" + ip,
		"--healthz-bind-address=" + ip + ":" + kubeProxyHealthzPort,
		"--metrics-bind-address=" + ip + ":10249",
		"--nodeport-addresses=primary",
		// nf_conntrack_max and its hash size are host-wide (writable only
		// from the initial namespace) and the module is built in: zero
		// tells kube-proxy to leave conntrack sizing and timeouts alone.
		"--conntrack-max-per-core=0",
		"--conntrack-tcp-timeout-established=0",
		"--conntrack-tcp-timeout-close-wait=0",
		// Rules follow Service and EndpointSlice changes within ~100 ms
		// instead of the default 1 s; tests wait on them.
		"--iptables-min-sync-period=100ms",
	})
	if err != nil {
		return err
	}
	n.KubeProxy = p
	url := "http://" + ip + ":" + kubeProxyHealthzPort + "/healthz"
	return waitFor(ctx, p, time.Minute, "kube-proxy healthy", func(ctx context.Context) error {
		return httpGetOK(ctx, url)
	})
}

const kubeRouterHealthPort = "20244"

func (n *Node) startKubeRouter(ctx context.Context) error {
	p, err := n.startAgent("kube-router", []string{
		filepath.Join(n.c.cfg.BinDir, "kube-router"),
		"--kubeconfig=" + n.c.CP.Kubeconfig,
		"--hostname-override=" + n.Name,
		// Only the network policy controller: routing is the harness's
		// (host-gw routes), Services are kube-proxy's.
		"--run-firewall=true", "--run-router=false", "--run-service-proxy=false",
		"--service-cluster-ip-range=" + ServiceNetwork.String(),
		"--health-port=" + kubeRouterHealthPort,
		"--enable-ipv6=false",
	})
	if err != nil {
		return err
	}
	n.KubeRouter = p
	url := "http://" + n.IP.String() + ":" + kubeRouterHealthPort + "/healthz"
	return waitFor(ctx, p, time.Minute, "kube-router healthy", func(ctx context.Context) error {
		return httpGetOK(ctx, url)
	})
}

// allocIP hands out the node's next pod address.
func (n *Node) allocIP() (netip.Addr, string, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	ip := n.nextHost
	last := addrAdd(n.PodCIDR.Masked().Addr(), (1<<(32-n.PodCIDR.Bits()))-2)
	if !n.PodCIDR.Contains(ip) || last.Less(ip) {
		return netip.Addr{}, "", fmt.Errorf("node %s: pod CIDR %s exhausted", n.Name, n.PodCIDR)
	}
	n.nextHost = ip.Next()
	n.nextVeth++
	return ip, "vp" + strconv.Itoa(n.nextVeth), nil
}

// addrAdd returns the IPv4 address d past a.
func addrAdd(a netip.Addr, d int) netip.Addr {
	b := a.As4()
	v := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
	v += uint32(d)
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}
