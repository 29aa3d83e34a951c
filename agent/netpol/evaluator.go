package netpol

import (
	"errors"
	"fmt"
	"net/netip"
	"sort"
	"strconv"
	"strings"
	"sync"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"sigs.k8s.io/network-policy-api/apis/v1alpha1"
	"sigs.k8s.io/network-policy-api/apis/v1alpha2"
)

// Evaluator answers Queries over one snapshot of Namespaces, Pods and
// NetworkPolicies. It is immutable once built, so Evaluate may be called from many
// goroutines.
type Evaluator struct {
	namespaces map[string]*namespace
	pods       map[PodRef]*pod
	// podsByIP finds the pod behind an address so an "external" source that is
	// really a pod is refused rather than misjudged.
	podsByIP map[netip.Addr]*pod
	// policies holds each namespace's policies sorted by name: a query only looks
	// at the source's and the destination's namespaces.
	policies map[string][]*policy
	// admin and baseline are the cluster policies of each tier in evaluation
	// order.
	admin, baseline []*clusterPolicy
	// nodes is nil when no Node objects were given; nodesByIP resolves nodes
	// peers.
	nodes     map[string]*node
	nodesByIP map[netip.Addr][]*node
	// foreign are the enforcing policies of unmodelled kinds, ignored the
	// non-enforcing ones.
	foreign, ignored []ForeignPolicy
}

// Lister is what an Evaluator is built from; informer listers satisfy it with a thin
// adapter (List(labels.Everything())).
type Lister interface {
	ListNamespaces() ([]*corev1.Namespace, error)
	ListPods() ([]*corev1.Pod, error)
	ListNetworkPolicies() ([]*networkingv1.NetworkPolicy, error)
	// ListClusterInputs returns the cluster policies, the Nodes their nodes
	// peers need, and the unmodelled policy objects (and kinds that could not
	// be listed, as ForeignPolicy entries without a name).
	ListClusterInputs() (ClusterInputs, error)
}

// ClusterInputs are the inputs beyond NetworkPolicy.
type ClusterInputs struct {
	// Nodes resolve nodes peers. Nil means Node objects were not given: a
	// nodes peer that could match an address is then uncertain.
	Nodes []*corev1.Node
	// ClusterNetworkPolicies of v1beta1 convert with
	// ClusterNetworkPolicyFromV1beta1.
	ClusterNetworkPolicies       []*v1alpha2.ClusterNetworkPolicy
	AdminNetworkPolicies         []*v1alpha1.AdminNetworkPolicy
	BaselineAdminNetworkPolicies []*v1alpha1.BaselineAdminNetworkPolicy
	// Foreign are policy objects of kinds this package does not model (see
	// ForeignKind); an entry without a name stands for a kind whose objects
	// could not be listed.
	Foreign []ForeignPolicy
}

// Inputs are everything an Evaluator is built from.
type Inputs struct {
	Namespaces      []*corev1.Namespace
	Pods            []*corev1.Pod
	NetworkPolicies []*networkingv1.NetworkPolicy
	ClusterInputs
}

// FromLister builds an Evaluator from whatever l lists now.
func FromLister(l Lister) (*Evaluator, error) {
	nss, err := l.ListNamespaces()
	if err != nil {
		return nil, fmt.Errorf("list namespaces: %w", err)
	}
	pods, err := l.ListPods()
	if err != nil {
		return nil, fmt.Errorf("list pods: %w", err)
	}
	nps, err := l.ListNetworkPolicies()
	if err != nil {
		return nil, fmt.Errorf("list network policies: %w", err)
	}
	ci, err := l.ListClusterInputs()
	if err != nil {
		return nil, fmt.Errorf("list cluster policies: %w", err)
	}
	return Build(Inputs{Namespaces: nss, Pods: pods, NetworkPolicies: nps, ClusterInputs: ci})
}

// ObjectError is a validation failure of one object.
type ObjectError struct {
	Kind      string // Namespace, Pod, NetworkPolicy or one of the cluster policy kinds
	Namespace string
	Name      string
	Errs      field.ErrorList
}

func (e *ObjectError) Error() string {
	name := e.Name
	if e.Namespace != "" {
		name = e.Namespace + "/" + e.Name
	}
	return fmt.Sprintf("%s %s: %s", e.Kind, name, e.Errs.ToAggregate().Error())
}

// New indexes the objects. It does not modify them. Objects from the API server are
// already defaulted; New applies the same defaults (policyTypes, TCP, namespace
// "default", the kubernetes.io/metadata.name namespace label) so hand-built objects
// mean the same. Invalid objects (malformed selectors, bad CIDRs, unknown protocols)
// are reported as *ObjectError, joined; New never skips one, because dropping a
// policy silently changes verdicts.
//
// Namespaces that pods or policies refer to but that are not in namespaces are
// assumed to exist with only the kubernetes.io/metadata.name label, which covers an
// informer cache that has not caught up yet. IPs and CIDRs may be in the legacy
// forms the API server still stores (leading zeros, host bits set).
//
// The Evaluator shares the pods' label maps rather than copying 10,000 of them:
// do not modify the objects afterwards (informer caches forbid it anyway).
func New(namespaces []*corev1.Namespace, pods []*corev1.Pod, policies []*networkingv1.NetworkPolicy) (*Evaluator, error) {
	return Build(Inputs{Namespaces: namespaces, Pods: pods, NetworkPolicies: policies})
}

// Build is New with every input: the cluster policies are validated like
// NetworkPolicies (an invalid one is an *ObjectError), and evaluated in the
// order the API defines (see the package documentation).
func Build(in Inputs) (*Evaluator, error) {
	return build(in, false)
}

func build(in Inputs, strict bool) (*Evaluator, error) {
	namespaces, pods, policies := in.Namespaces, in.Pods, in.NetworkPolicies
	e := &Evaluator{
		namespaces: make(map[string]*namespace, len(namespaces)),
		pods:       make(map[PodRef]*pod, len(pods)),
		podsByIP:   make(map[netip.Addr]*pod, len(pods)),
		policies:   make(map[string][]*policy),
	}
	var errs []error
	for _, n := range namespaces {
		if n == nil {
			continue
		}
		if n.Name == "" {
			errs = append(errs, &ObjectError{Kind: "Namespace", Errs: field.ErrorList{field.Required(field.NewPath("metadata", "name"), "")}})
			continue
		}
		e.namespaces[n.Name] = compileNamespace(n)
	}
	for _, p := range pods {
		if p == nil {
			continue
		}
		cp, fe := compilePod(p, strict)
		if len(fe) > 0 {
			errs = append(errs, &ObjectError{Kind: "Pod", Namespace: cp.ref.Namespace, Name: cp.ref.Name, Errs: fe})
			continue
		}
		cp.ns = e.namespace(cp.ref.Namespace)
		e.pods[cp.ref] = cp
		// Host-network pods share the node's address; terminal pods may have
		// handed theirs on. Neither identifies a pod by IP.
		if cp.hostNetwork || p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
			continue
		}
		for _, a := range cp.ips {
			e.podsByIP[a] = cp
		}
	}
	for _, np := range policies {
		if np == nil {
			continue
		}
		cp, fe := compilePolicy(np, strict)
		if len(fe) > 0 {
			errs = append(errs, &ObjectError{Kind: "NetworkPolicy", Namespace: cp.ref.Namespace, Name: cp.ref.Name, Errs: fe})
			continue
		}
		e.namespace(cp.ref.Namespace)
		e.policies[cp.ref.Namespace] = append(e.policies[cp.ref.Namespace], cp)
	}
	errs = append(errs, e.addClusterInputs(&in.ClusterInputs, strict)...)
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	for _, ps := range e.policies {
		sort.Slice(ps, func(i, j int) bool { return ps[i].ref.Name < ps[j].ref.Name })
	}
	return e, nil
}

func (e *Evaluator) addClusterInputs(in *ClusterInputs, strict bool) []error {
	var errs []error
	add := func(cp *clusterPolicy, fe field.ErrorList) {
		if len(fe) > 0 {
			errs = append(errs, &ObjectError{Kind: cp.ref.Kind, Name: cp.ref.Name, Errs: fe})
			return
		}
		if cp.tier == LayerAdmin {
			e.admin = append(e.admin, cp)
		} else {
			e.baseline = append(e.baseline, cp)
		}
	}
	for _, p := range in.ClusterNetworkPolicies {
		if p != nil {
			add(compileCNP(p, strict))
		}
	}
	for _, p := range in.AdminNetworkPolicies {
		if p != nil {
			add(compileANP(p, strict))
		}
	}
	for _, p := range in.BaselineAdminNetworkPolicies {
		if p != nil {
			add(compileBANP(p, strict))
		}
	}
	sortClusterPolicies(e.admin)
	sortClusterPolicies(e.baseline)
	if in.Nodes != nil {
		e.nodes = make(map[string]*node, len(in.Nodes))
		e.nodesByIP = make(map[netip.Addr][]*node, len(in.Nodes))
		for _, n := range in.Nodes {
			if n == nil {
				continue
			}
			cn := compileNode(n)
			e.nodes[cn.name] = cn
			for _, a := range cn.ips {
				e.nodesByIP[a] = append(e.nodesByIP[a], cn)
			}
		}
	}
	for _, f := range in.Foreign {
		if f.Kind == "" {
			errs = append(errs, fmt.Errorf("unmodelled policy %s: kind is empty", f))
			continue
		}
		if f.Name != "" {
			if _, notEnforcing := ForeignKind(f.Group, f.Kind); notEnforcing != "" {
				f.Reason = notEnforcing
				e.ignored = append(e.ignored, f)
				continue
			}
		}
		e.foreign = append(e.foreign, f)
	}
	return errs
}

func (e *Evaluator) namespace(name string) *namespace {
	n, ok := e.namespaces[name]
	if !ok {
		n = newNamespace(name, nil)
		e.namespaces[name] = n
	}
	return n
}

// ErrUnknownPod is returned (wrapped) when a query names a pod the snapshot lacks.
var ErrUnknownPod = errors.New("unknown pod")

// resolved is a query with its pods, addresses and port number looked up.
type resolved struct {
	src, dst     *pod // src is nil for an external source
	srcIP, dstIP netip.Addr
	num          int32
	proto        corev1.Protocol
}

func (e *Evaluator) resolve(q Query) (resolved, error) {
	var r resolved
	var ok bool
	if r.dst, ok = e.pods[q.To]; !ok {
		return r, fmt.Errorf("destination %w %s", ErrUnknownPod, q.To)
	}
	r.proto = q.Protocol
	if r.proto == "" {
		r.proto = corev1.ProtocolTCP
	}
	if !validProtocol(r.proto) {
		return r, fmt.Errorf("unsupported protocol %q: want TCP, UDP or SCTP", r.proto)
	}
	var err error
	if r.num, err = resolvePort(r.dst, q.Port, r.proto); err != nil {
		return r, err
	}
	switch {
	case !q.From.IsZero() && q.FromIP.IsValid():
		return r, errors.New("query has both a source pod and a source IP")
	case !q.From.IsZero():
		if r.src, ok = e.pods[q.From]; !ok {
			return r, fmt.Errorf("source %w %s", ErrUnknownPod, q.From)
		}
		if len(r.src.ips) > 0 {
			r.srcIP = r.src.ips[0]
		}
	case q.FromIP.IsValid():
		r.srcIP = q.FromIP.Unmap()
		if p, ok := e.podsByIP[r.srcIP]; ok {
			return r, fmt.Errorf("source IP %s belongs to pod %s: query from the pod instead", r.srcIP, p.ref)
		}
	default:
		return r, errors.New("query has no source: set a source pod or a source IP")
	}
	r.dstIP = addrOfFamily(r.dst.ips, r.srcIP)
	return r, nil
}

// Evaluate answers q with the reasons. Errors are about the query (unknown pod,
// unknown port name, bad protocol, an external IP that belongs to a pod), never
// about the verdict.
//
// For dual-stack pods the connection is assumed to use the source's primary address
// family (status.podIP); the destination address matched against ipBlock peers is
// the destination pod's address of that family.
func (e *Evaluator) Evaluate(q Query) (*Answer, error) {
	r, err := e.resolve(q)
	if err != nil {
		return nil, err
	}
	a := &Answer{
		Protocol:    r.proto,
		Port:        r.num,
		PortName:    q.Port.Name,
		Destination: Endpoint{Pod: r.dst.ref, IP: r.dstIP},
		Source:      Endpoint{IP: r.srcIP},
	}
	if r.src != nil {
		a.Source.Pod = r.src.ref
		a.Egress = e.direction(Egress, r.src, r.dst, r.dst, r.dstIP, r.num, r.proto)
	}
	a.Ingress = e.direction(Ingress, r.dst, r.src, r.dst, r.srcIP, r.num, r.proto)
	// A certain deny on either side blocks whatever the other side says.
	switch {
	case a.Ingress.Verdict == Deny || a.Egress != nil && a.Egress.Verdict == Deny:
		a.Modelled = Deny
	case a.Ingress.Verdict == Unknown || a.Egress != nil && a.Egress.Verdict == Unknown:
		a.Modelled = Unknown
	default:
		a.Modelled = Allow
	}
	a.Verdict = a.Modelled
	srcNS := ""
	if r.src != nil {
		srcNS = r.src.ref.Namespace
	}
	a.Unmodelled = e.foreignFor(srcNS, r.dst.ref.Namespace)
	a.NotEnforcing = e.notEnforcingFor(srcNS, r.dst.ref.Namespace)
	if len(a.Unmodelled) > 0 {
		a.Verdict = Unknown
	}
	a.Notes = notes(r.src, r.dst, r.srcIP, r.dstIP)
	return a, nil
}

// Verdict is Evaluate without the explanation: it stops at the first allowing rule
// and allocates nothing, for callers such as the agent that only need the expected
// outcome of many probes.
func (e *Evaluator) Verdict(q Query) (Verdict, error) {
	if len(e.admin) > 0 || len(e.baseline) > 0 || len(e.foreign) > 0 {
		a, err := e.Evaluate(q)
		if err != nil {
			return "", err
		}
		return a.Verdict, nil
	}
	r, err := e.resolve(q)
	if err != nil {
		return "", err
	}
	if r.src != nil {
		if selected, allowed := e.decide(Egress, r.src, r.dst, r.dst, r.dstIP, r.num, r.proto, nil); selected && !allowed {
			return Deny, nil
		}
	}
	if selected, allowed := e.decide(Ingress, r.dst, r.src, r.dst, r.srcIP, r.num, r.proto, nil); selected && !allowed {
		return Deny, nil
	}
	return Allow, nil
}

func notes(src, dst *pod, srcIP, dstIP netip.Addr) []string {
	var n []string
	if src != nil && src.hostNetwork {
		n = append(n, "source pod "+src.ref.String()+" uses the host network: plugins differ on whether policies apply to it")
	}
	if dst.hostNetwork {
		n = append(n, "destination pod "+dst.ref.String()+" uses the host network: plugins differ on whether policies apply to it")
	}
	if src != nil && !srcIP.IsValid() {
		n = append(n, "source pod "+src.ref.String()+" has no IP: ipBlock peers cannot match it")
	}
	if !dstIP.IsValid() {
		n = append(n, "destination pod "+dst.ref.String()+" has no IP of the source's address family: ipBlock peers cannot match it")
	}
	return n
}

// addrOfFamily picks the address of the same family as like, or the primary one.
func addrOfFamily(ips []netip.Addr, like netip.Addr) netip.Addr {
	if like.IsValid() {
		for _, a := range ips {
			if a.Is4() == like.Is4() {
				return a
			}
		}
		return netip.Addr{}
	}
	if len(ips) > 0 {
		return ips[0]
	}
	return netip.Addr{}
}

func resolvePort(dst *pod, p Port, proto corev1.Protocol) (int32, error) {
	if p.Name == "" {
		if p.Number < 1 || p.Number > 65535 {
			return 0, fmt.Errorf("port %d out of range 1-65535", p.Number)
		}
		return p.Number, nil
	}
	nums := dst.namedPorts[portKey{name: p.Name, proto: proto}]
	if len(nums) == 0 {
		return 0, fmt.Errorf("destination pod %s has no container port named %q with protocol %s", dst.ref, p.Name, proto)
	}
	// First declared wins, as in upstream's lookup of Service target ports.
	return nums[0], nil
}

// direction evaluates the policies of subject (the source for egress, the
// destination for ingress) against the other end: peerPod (nil for an external
// source) at peerIP. dst is always the destination, whose container ports resolve
// named ports in either direction.
// direction evaluates one side through the layers the API defines: the Admin
// tier (Allow/Accept and Deny are final, Pass hands on), NetworkPolicy (final
// for a pod it selects), the Baseline tier, and the default (allowed). Rules
// whose match cannot be decided (domainNames peers, nodes peers without Node
// objects) and same-priority policies that disagree make several outcomes
// possible; when they differ the direction is UNKNOWN.
func (e *Evaluator) direction(d Direction, subject, peerPod, dst *pod, peerIP netip.Addr, num int32, proto corev1.Protocol) *DirectionResult {
	res := &DirectionResult{Direction: d, Pod: subject.ref, Selecting: []SelectingPolicy{}, Matches: []RuleMatch{}}
	var allow, deny bool
	var uncertain []string
	// onPath follows the rules that certainly match; it names DecidedBy.
	onPath := true
	tier := func(layer Layer, ps []*clusterPolicy) (next bool) {
		t := e.evalTier(ps, d, subject, peerPod, dst, peerIP, num, proto)
		res.Cluster = append(res.Cluster, t.rules...)
		for i, eff := range t.effects {
			switch eff {
			case effAllow:
				allow = true
			case effDeny:
				deny = true
			case effPass:
				next = true
			}
			if t.rules[i].Uncertain != "" {
				uncertain = append(uncertain, t.rules[i].Policy.String()+" "+string(d)+" rule "+ruleLabel(t.rules[i])+": "+t.rules[i].Uncertain)
			}
		}
		if t.conflict != "" {
			uncertain = append(uncertain, t.conflict)
		}
		if t.definite < 0 {
			return true
		}
		if onPath && t.effects[t.definite] != effPass {
			res.DecidedBy, onPath = layer, false
		}
		return next || t.effects[t.definite] == effPass
	}
	if tier(LayerAdmin, e.admin) {
		// Collect into pooled scratch space and copy out once at the exact
		// size: with hundreds of selecting policies, growing the result slices
		// dominated.
		sc := scratchPool.Get().(*scratch)
		selected, allowed := e.decide(d, subject, peerPod, dst, peerIP, num, proto, sc)
		res.Selecting = make([]SelectingPolicy, len(sc.selecting))
		res.Matches = make([]RuleMatch, len(sc.matches))
		copy(res.Selecting, sc.selecting)
		copy(res.Matches, sc.matches)
		sc.release()
		switch {
		case selected:
			if allowed {
				allow = true
			} else {
				deny = true
			}
			if onPath {
				res.DecidedBy, onPath = LayerNetworkPolicy, false
			}
		case tier(LayerBaseline, e.baseline):
			allow = true
			if onPath {
				res.DecidedBy = LayerDefault
			}
		}
	}
	switch {
	case allow && deny:
		res.Verdict, res.Uncertain = Unknown, uncertain
	case deny:
		res.Verdict = Deny
	default:
		res.Verdict = Allow
	}
	res.Allowed = res.Verdict == Allow
	return res
}

func ruleLabel(m ClusterRuleMatch) string {
	s := strconv.Itoa(m.Rule)
	if m.RuleName != "" {
		s += " (" + m.RuleName + ")"
	}
	return s
}

// decide is the one implementation of the NetworkPolicy layer: whether any
// policy selects subject for d and, if so, whether a rule allows the traffic.
// With sc it records every selecting policy, every allowing rule and why the
// others miss; without, it returns at the first allowing rule.
func (e *Evaluator) decide(d Direction, subject, peerPod, dst *pod, peerIP netip.Addr, num int32, proto corev1.Protocol, sc *scratch) (selected, allowed bool) {
	di := dirIndex(d)
	for _, p := range e.policies[subject.ref.Namespace] {
		if (d == Egress && !p.egress) || (d == Ingress && !p.ingress) {
			continue
		}
		if !p.selector.Matches(subject.labels) {
			continue
		}
		selected = true
		var misses []RuleMiss
		matched := false
		for i := range p.rules[di] {
			r := &p.rules[di][i]
			pi, ok := r.matchPeer(p.ref.Namespace, peerPod, peerIP)
			if !ok {
				if sc != nil {
					misses = append(misses, RuleMiss{Rule: i, Peers: r.peersMiss(d)})
				}
				continue
			}
			ki, ok := r.matchPort(dst, num, proto)
			if !ok {
				if sc != nil {
					misses = append(misses, RuleMiss{Rule: i, Ports: r.portsMiss(num, proto)})
				}
				continue
			}
			if sc == nil {
				return true, true
			}
			matched = true
			allowed = true
			m := RuleMatch{Policy: p.ref, Direction: d, Rule: i, Peer: pi, Port: ki}
			m.PeerText, m.PortText = "all destinations", "all ports"
			if d == Ingress {
				m.PeerText = "all sources"
			}
			if pi >= 0 {
				m.PeerText = r.peers[pi].text
			}
			if ki >= 0 {
				m.PortText = r.ports[ki].text
			}
			sc.matches = append(sc.matches, m)
		}
		if sc != nil {
			sp := SelectingPolicy{Policy: p.ref, Rules: len(p.rules[di])}
			if !matched {
				sp.Misses = misses
			}
			sc.selecting = append(sc.selecting, sp)
		}
	}
	return selected, allowed
}

// peersMiss describes a rule whose peers do not include the other end.
func (r *rule) peersMiss(d Direction) string {
	word := "from"
	if d == Egress {
		word = "to"
	}
	texts := make([]string, len(r.peers))
	for j, p := range r.peers {
		texts[j] = word + "[" + strconv.Itoa(j) + "] " + p.text
	}
	return "no peer matches: " + strings.Join(texts, "; ")
}

// portsMiss describes a rule whose ports do not include the queried one.
func (r *rule) portsMiss(num int32, proto corev1.Protocol) string {
	texts := make([]string, len(r.ports))
	for k, p := range r.ports {
		texts[k] = p.text
	}
	return "ports " + strings.Join(texts, ", ") + " do not include " + string(proto) + "/" + strconv.Itoa(int(num))
}

type scratch struct {
	selecting []SelectingPolicy
	matches   []RuleMatch
}

var scratchPool = sync.Pool{New: func() any { return new(scratch) }}

func (s *scratch) release() {
	// Drop the string references so a pooled buffer does not pin an old snapshot.
	clear(s.selecting)
	clear(s.matches)
	s.selecting, s.matches = s.selecting[:0], s.matches[:0]
	scratchPool.Put(s)
}

// matchPeer returns the index of the first peer that matches, -1 for a rule without
// peers.
func (r *rule) matchPeer(policyNS string, p *pod, ip netip.Addr) (int, bool) {
	if len(r.peers) == 0 {
		return -1, true
	}
	for j := range r.peers {
		if r.peers[j].matches(policyNS, p, ip) {
			return j, true
		}
	}
	return 0, false
}

func (pr *peer) matches(policyNS string, p *pod, ip netip.Addr) bool {
	if pr.block != nil {
		return pr.block.contains(ip)
	}
	if p == nil {
		// Selectors pick pods; an external address is never one.
		return false
	}
	if pr.nsSel != nil {
		if !pr.nsSel.Matches(p.ns.labels) {
			return false
		}
	} else if p.ref.Namespace != policyNS {
		return false
	}
	return pr.podSel == nil || pr.podSel.Matches(p.labels)
}

// matchPort returns the index of the first port entry that matches, -1 for a rule
// without ports.
func (r *rule) matchPort(dst *pod, num int32, proto corev1.Protocol) (int, bool) {
	if len(r.ports) == 0 {
		return -1, true
	}
	for k := range r.ports {
		if r.ports[k].matches(dst, num, proto) {
			return k, true
		}
	}
	return 0, false
}

func (pt *port) matches(dst *pod, num int32, proto corev1.Protocol) bool {
	if pt.proto != proto {
		return false
	}
	switch {
	case pt.any:
		return true
	case pt.name != "":
		for _, n := range dst.namedPorts[portKey{name: pt.name, proto: proto}] {
			if n == num {
				return true
			}
		}
		return false
	default:
		return pt.first <= num && num <= pt.last
	}
}

// Pods lists the pods in the snapshot, sorted; handy for sweeping all pairs.
func (e *Evaluator) Pods() []PodRef {
	out := make([]PodRef, 0, len(e.pods))
	for r := range e.pods {
		out = append(out, r)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Namespace != out[j].Namespace {
			return out[i].Namespace < out[j].Namespace
		}
		return out[i].Name < out[j].Name
	})
	return out
}
