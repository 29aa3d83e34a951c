package discovery

import (
	"maps"
	"runtime"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
)

// Peer is one node that runs a probe-able agent.
type Peer struct {
	Node string
	// OS is the node's kubernetes.io/os label, lower-cased (see the package
	// doc for the fallbacks).
	OS string
	// Zone is the node's topology.kubernetes.io/zone label; may be empty.
	Zone string
	// Pod is the agent pod's name; it lives in the agent namespace.
	Pod string
	// IP is the pod's primary IP (status.podIP).
	IP string
	// Ready is always true in Snapshot.Peers. For Snapshot.Self it says
	// whether this agent's own pod is running, ready and not terminating.
	Ready bool
}

// Excluded is an agent on another node that is not a peer, and why. Such
// agents are starting, going away, or on a node being emptied: their failures
// would be lifecycle, not network, so they are not probed at all (rather than
// probed with their failures labelled) and only counted.
type Excluded struct {
	Node string
	// OS is as for Peer; empty when neither the Node nor the pod says.
	OS     string
	Pod    string
	Reason string // one of the Excluded* reasons
}

// Why an agent is not a peer: bounded values, the `reason` label of
// xosprobe_peers_excluded.
const (
	ExcludedNotReady     = "not_ready"     // not Running, or its Ready condition is not True
	ExcludedTerminating  = "terminating"   // deletionTimestamp set
	ExcludedNoIP         = "no_ip"         // running without a pod IP
	ExcludedNodeCordoned = "node_cordoned" // spec.unschedulable or the node.kubernetes.io/unschedulable taint
	ExcludedNodeDraining = "node_draining" // a node autoscaler's taint: the node is about to be removed
	ExcludedNodeUnknown  = "node_unknown"  // the pod's Node is not (or no longer) in the cache
)

// Taints node autoscalers set on a node they are about to remove.
var drainingTaints = []string{
	"ToBeDeletedByClusterAutoscaler", // cluster-autoscaler
	"karpenter.sh/disrupted",         // Karpenter v1
	"karpenter.sh/disruption",        // Karpenter before v1
}

// ServiceEndpoint is one per-OS probe Service, resolved from the caches.
type ServiceEndpoint struct {
	OS        string
	Name      string
	Namespace string
	// FQDN is name.namespace.svc.<cluster domain>, without a trailing dot.
	FQDN string
	// ClusterIP is empty for a headless Service.
	ClusterIP string
	// Port is the port named "http", else the first one; 0 if there is none.
	Port int32
	// ReadyEndpoints counts distinct ready endpoints over the Service's
	// EndpointSlices. A pod listed in several slices (dual-stack, or during a
	// slice rebalance) counts once.
	ReadyEndpoints int
}

// Snapshot is a consistent view of the peers and probe Services.
//
// A Snapshot is shared by every caller of Discovery.Snapshot and must be
// treated as read-only; Clone gives a private copy.
type Snapshot struct {
	// Self is this agent: node and pod from Config, OS, zone, IP and readiness
	// from the caches once they have them.
	Self Peer
	// Peers has one entry per other node with a probe-able agent, sorted by
	// node name.
	Peers []Peer
	// Excluded has one entry per other node whose agent is not probed, sorted
	// by node name. A node with a probe-able agent is never listed, even
	// while a second agent pod on it starts (a surge update).
	Excluded []Excluded
	// Services holds the probe Services that exist, keyed by OS. A configured
	// Service that does not exist has no entry.
	Services map[string]ServiceEndpoint
	// Generation is 0 before the caches have synced and grows by one each
	// time Self, Peers or Services change.
	Generation uint64
}

// Clone returns a deep copy of s.
func (s Snapshot) Clone() Snapshot {
	s.Peers = slices.Clone(s.Peers)
	s.Excluded = slices.Clone(s.Excluded)
	s.Services = maps.Clone(s.Services)
	return s
}

// sameContent reports whether s and o differ only in Generation.
func (s Snapshot) sameContent(o Snapshot) bool {
	return s.Self == o.Self && slices.Equal(s.Peers, o.Peers) && slices.Equal(s.Excluded, o.Excluded) &&
		maps.Equal(s.Services, o.Services)
}

// source is the read side of the informer caches. The Discovery implements it
// with listers; tests with plain maps.
type source interface {
	// agentPods returns the pods in the agent namespace that match the selector.
	agentPods() []*corev1.Pod
	// agentPod returns one pod of agentPods, or nil.
	agentPod(name string) *corev1.Pod
	node(name string) *corev1.Node
	service(name string) *corev1.Service
	endpointSlices(service string) []*discoveryv1.EndpointSlice
}

// report is what a build noticed besides the Snapshot, for logging.
type report struct {
	selfPodCached   bool
	selfNodeCached  bool
	missingServices []string
	// podsOnUnknownNodes counts probe-able pods whose Node is not cached.
	podsOnUnknownNodes int
}

// build computes a Snapshot (without Generation) from the caches. It keeps no
// state between calls, so a relist or a missed event can never leave a stale
// peer behind: the next build sees exactly what the caches hold.
func build(cfg *Config, src source) (Snapshot, report) {
	var rep report

	// One pod per node. During a DaemonSet surge update a node briefly has
	// two ready agents; the newer one is the one that stays.
	chosen := make(map[string]*corev1.Pod)
	// The newest agent pod of each node that has none probe-able: it says
	// why the node's agent is excluded. Unscheduled pods belong to no node.
	unprobeable := make(map[string]*corev1.Pod)
	for _, p := range src.agentPods() {
		if p.Spec.NodeName == cfg.NodeName || p.Spec.NodeName == "" {
			continue
		}
		pick := chosen
		if !probeable(p) {
			pick = unprobeable
		}
		if cur, ok := pick[p.Spec.NodeName]; !ok || newer(p, cur) {
			pick[p.Spec.NodeName] = p
		}
	}
	var excluded []Excluded
	for name, p := range unprobeable {
		if _, ok := chosen[name]; ok {
			continue
		}
		osName := podOS(p)
		if n := src.node(name); n != nil {
			osName = osOf(n, p)
		}
		excluded = append(excluded, Excluded{Node: name, OS: osName, Pod: p.Name, Reason: podExclusion(p)})
	}
	peers := make([]Peer, 0, len(chosen))
	for name, p := range chosen {
		n := src.node(name)
		if n == nil {
			// Not yet in the cache, or the node is gone and the pod awaits
			// garbage collection: in both cases it is not a peer.
			rep.podsOnUnknownNodes++
			excluded = append(excluded, Excluded{Node: name, OS: podOS(p), Pod: p.Name, Reason: ExcludedNodeUnknown})
			continue
		}
		if reason := nodeExclusion(n); reason != "" {
			excluded = append(excluded, Excluded{Node: name, OS: osOf(n, p), Pod: p.Name, Reason: reason})
			continue
		}
		peers = append(peers, Peer{
			Node:  name,
			OS:    osOf(n, p),
			Zone:  n.Labels[corev1.LabelTopologyZone],
			Pod:   p.Name,
			IP:    p.Status.PodIP,
			Ready: true,
		})
	}
	slices.SortFunc(peers, func(a, b Peer) int { return strings.Compare(a.Node, b.Node) })
	slices.SortFunc(excluded, func(a, b Excluded) int { return strings.Compare(a.Node, b.Node) })

	self := Peer{Node: cfg.NodeName, Pod: cfg.PodName, IP: cfg.PodIP}
	own := src.agentPod(cfg.PodName)
	if own != nil {
		rep.selfPodCached = true
		if own.Status.PodIP != "" {
			self.IP = own.Status.PodIP
		}
		self.Ready = probeable(own)
	}
	if n := src.node(cfg.NodeName); n != nil {
		rep.selfNodeCached = true
		self.OS = osOf(n, own)
		self.Zone = n.Labels[corev1.LabelTopologyZone]
	} else {
		self.OS = podOS(own)
	}
	if self.OS == "" {
		// The binary is built per OS and the DaemonSets select on it, so
		// this is the same answer the label will give.
		self.OS = runtime.GOOS
	}

	svcs := make(map[string]ServiceEndpoint, len(cfg.Services))
	for _, osName := range slices.Sorted(maps.Keys(cfg.Services)) {
		name := cfg.Services[osName]
		s := src.service(name)
		if s == nil {
			rep.missingServices = append(rep.missingServices, name)
			continue
		}
		ip := s.Spec.ClusterIP
		if ip == corev1.ClusterIPNone {
			ip = ""
		}
		svcs[osName] = ServiceEndpoint{
			OS:             osName,
			Name:           name,
			Namespace:      cfg.Namespace,
			FQDN:           name + "." + cfg.Namespace + ".svc." + cfg.ClusterDomain,
			ClusterIP:      ip,
			Port:           servicePort(s.Spec.Ports),
			ReadyEndpoints: readyEndpoints(name, src.endpointSlices(name)),
		}
	}

	return Snapshot{Self: self, Peers: peers, Excluded: excluded, Services: svcs}, rep
}

// probeable reports whether a peer can be probed at p: running, ready, with an
// IP, on a node, and not terminating (a terminating pod is still Ready until
// its containers stop, but will be gone within its grace period).
func probeable(p *corev1.Pod) bool {
	return p.DeletionTimestamp == nil &&
		p.Status.Phase == corev1.PodRunning &&
		p.Status.PodIP != "" &&
		p.Spec.NodeName != "" &&
		podReady(p)
}

// podExclusion says why p is not probeable.
func podExclusion(p *corev1.Pod) string {
	switch {
	case p.DeletionTimestamp != nil:
		return ExcludedTerminating
	case p.Status.Phase != corev1.PodRunning:
		return ExcludedNotReady
	case p.Status.PodIP == "":
		return ExcludedNoIP
	}
	return ExcludedNotReady
}

// nodeExclusion says why the agent of n is not probed though it is ready,
// or "". A cordoned or draining node is being emptied (an upgrade, a
// scale-in, maintenance): it may stop at any moment, and its failures then
// are the operator's plan, not a network fault.
func nodeExclusion(n *corev1.Node) string {
	cordoned := n.Spec.Unschedulable
	for _, t := range n.Spec.Taints {
		if slices.Contains(drainingTaints, t.Key) {
			return ExcludedNodeDraining
		}
		cordoned = cordoned || t.Key == corev1.TaintNodeUnschedulable
	}
	if cordoned {
		return ExcludedNodeCordoned
	}
	return ""
}

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// newer reports whether a was created after b; names break ties so the
// choice does not depend on cache order.
func newer(a, b *corev1.Pod) bool {
	if !a.CreationTimestamp.Equal(&b.CreationTimestamp) {
		return b.CreationTimestamp.Before(&a.CreationTimestamp)
	}
	return a.Name > b.Name
}

// osOf is the node's kubernetes.io/os label, or what the pod says if the node
// lacks the label (a node registered without it cannot run our DaemonSets
// anyway, but the pod still knows where it was meant to run).
func osOf(n *corev1.Node, p *corev1.Pod) string {
	if os := strings.ToLower(n.Labels[corev1.LabelOSStable]); os != "" {
		return os
	}
	return podOS(p)
}

// podOS is spec.os.name, else the kubernetes.io/os nodeSelector; p may be nil.
func podOS(p *corev1.Pod) string {
	if p == nil {
		return ""
	}
	if p.Spec.OS != nil && p.Spec.OS.Name != "" {
		return strings.ToLower(string(p.Spec.OS.Name))
	}
	return strings.ToLower(p.Spec.NodeSelector[corev1.LabelOSStable])
}

func servicePort(ports []corev1.ServicePort) int32 {
	for _, p := range ports {
		if p.Name == "http" {
			return p.Port
		}
	}
	if len(ports) > 0 {
		return ports[0].Port
	}
	return 0
}

// readyEndpoints counts the distinct ready endpoints of service. A nil Ready
// condition means ready (EndpointSlice API); a terminating endpoint is not ready.
func readyEndpoints(service string, eps []*discoveryv1.EndpointSlice) int {
	seen := make(map[string]struct{})
	for _, s := range eps {
		// The informer is already filtered by this label; checking again keeps
		// a slice that was relabelled from being counted for the wrong Service.
		if s.Labels[discoveryv1.LabelServiceName] != service {
			continue
		}
		for _, ep := range s.Endpoints {
			if ep.Conditions.Ready != nil && !*ep.Conditions.Ready {
				continue
			}
			if k := endpointKey(ep); k != "" {
				seen[k] = struct{}{}
			}
		}
	}
	return len(seen)
}

// endpointKey identifies the backend behind an endpoint: its target (the pod)
// when set, so the IPv4 and IPv6 slices of a dual-stack Service agree, else
// its first address.
func endpointKey(ep discoveryv1.Endpoint) string {
	if r := ep.TargetRef; r != nil && r.Name != "" {
		return "ref/" + r.Kind + "/" + r.Namespace + "/" + r.Name
	}
	if len(ep.Addresses) > 0 {
		return "addr/" + ep.Addresses[0]
	}
	return ""
}
