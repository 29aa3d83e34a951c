package netpol

import (
	"fmt"
	"math/rand/v2"
	"net"
	"testing"

	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
)

// gen builds random but valid clusters from a small vocabulary, so that selectors,
// blocks and ports collide often enough to exercise every path.
type gen struct{ r *rand.Rand }

type cluster struct {
	nss  []*corev1.Namespace
	pods []*corev1.Pod
	nps  []*networkingv1.NetworkPolicy
}

var (
	genNamespaces = []string{"n0", "n1", "n2"}
	genPorts      = []int32{53, 80, 443, 8080}
	genExternal   = []string{"192.0.2.1", "10.0.9.9", "10.0.1.200"}
)

func (g gen) pick(xs ...string) string { return xs[g.r.IntN(len(xs))] }

func (g gen) labels() map[string]string {
	l := map[string]string{}
	if g.r.IntN(4) > 0 {
		l["app"] = g.pick("a", "b", "c")
	}
	if g.r.IntN(2) == 0 {
		l["tier"] = g.pick("front", "back")
	}
	return l
}

func (g gen) selector() *metav1.LabelSelector {
	s := &metav1.LabelSelector{}
	switch g.r.IntN(4) {
	case 0: // empty: everything
	case 1:
		s.MatchLabels = map[string]string{g.pick("app", "tier", "team"): g.pick("a", "b", "front", "x")}
	default:
		key := g.pick("app", "tier", "team", "kubernetes.io/metadata.name")
		ops := []metav1.LabelSelectorOperator{metav1.LabelSelectorOpIn, metav1.LabelSelectorOpNotIn, metav1.LabelSelectorOpExists, metav1.LabelSelectorOpDoesNotExist}
		op := ops[g.r.IntN(len(ops))]
		req := metav1.LabelSelectorRequirement{Key: key, Operator: op}
		if op == metav1.LabelSelectorOpIn || op == metav1.LabelSelectorOpNotIn {
			req.Values = []string{g.pick("a", "b", "c", "front", "x", "n1")}
			if g.r.IntN(2) == 0 {
				req.Values = append(req.Values, g.pick("back", "y", "n2"))
			}
		}
		s.MatchExpressions = []metav1.LabelSelectorRequirement{req}
	}
	return s
}

func (g gen) peer() networkingv1.NetworkPolicyPeer {
	switch g.r.IntN(4) {
	case 0:
		return networkingv1.NetworkPolicyPeer{PodSelector: g.selector()}
	case 1:
		return networkingv1.NetworkPolicyPeer{NamespaceSelector: g.selector()}
	case 2:
		return networkingv1.NetworkPolicyPeer{PodSelector: g.selector(), NamespaceSelector: g.selector()}
	default:
		excepts := map[string][]string{
			"10.0.0.0/16":  {"10.0.1.0/24", "10.0.0.1/32"},
			"10.0.1.0/24":  {"10.0.1.1/32", "10.0.1.2/31"},
			"192.0.2.0/24": {"192.0.2.0/28"},
			"0.0.0.0/0":    {"10.0.2.0/24", "192.0.2.1/32"},
		}
		b := &networkingv1.IPBlock{CIDR: g.pick("10.0.0.0/16", "10.0.1.0/24", "192.0.2.0/24", "0.0.0.0/0")}
		if g.r.IntN(2) == 0 {
			b.Except = []string{g.pick(excepts[b.CIDR]...)}
		}
		return networkingv1.NetworkPolicyPeer{IPBlock: b}
	}
}

func (g gen) port() networkingv1.NetworkPolicyPort {
	var p networkingv1.NetworkPolicyPort
	if g.r.IntN(3) > 0 {
		p.Protocol = ptr.To(corev1.Protocol(g.pick("TCP", "TCP", "UDP", "SCTP")))
	}
	switch g.r.IntN(4) {
	case 0: // any port
	case 1:
		p.Port = ptr.To(intstr.FromInt32(genPorts[g.r.IntN(len(genPorts))]))
	case 2:
		first := genPorts[g.r.IntN(len(genPorts))]
		p.Port = ptr.To(intstr.FromInt32(first))
		p.EndPort = ptr.To(first + int32(g.r.IntN(500)))
	default:
		p.Port = ptr.To(intstr.FromString(g.pick("http", "dns", "metrics")))
	}
	return p
}

func (g gen) rule() ([]networkingv1.NetworkPolicyPeer, []networkingv1.NetworkPolicyPort) {
	var peers []networkingv1.NetworkPolicyPeer
	var ports []networkingv1.NetworkPolicyPort
	for range g.r.IntN(3) {
		peers = append(peers, g.peer())
	}
	for range g.r.IntN(3) {
		ports = append(ports, g.port())
	}
	return peers, ports
}

func (g gen) ingressRule() networkingv1.NetworkPolicyIngressRule {
	peers, ports := g.rule()
	return networkingv1.NetworkPolicyIngressRule{From: peers, Ports: ports}
}

func (g gen) egressRule() networkingv1.NetworkPolicyEgressRule {
	peers, ports := g.rule()
	return networkingv1.NetworkPolicyEgressRule{To: peers, Ports: ports}
}

func (g gen) policy(i int) *networkingv1.NetworkPolicy {
	np := &networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: g.pick(genNamespaces...), Name: fmt.Sprintf("p%d", i)}}
	np.Spec.PodSelector = *g.selector()
	switch g.r.IntN(4) {
	case 0: // defaulted
	case 1:
		np.Spec.PolicyTypes = []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}
	case 2:
		np.Spec.PolicyTypes = []networkingv1.PolicyType{networkingv1.PolicyTypeEgress}
	default:
		np.Spec.PolicyTypes = []networkingv1.PolicyType{networkingv1.PolicyTypeIngress, networkingv1.PolicyTypeEgress}
	}
	for range g.r.IntN(3) {
		np.Spec.Ingress = append(np.Spec.Ingress, g.ingressRule())
	}
	for range g.r.IntN(3) {
		np.Spec.Egress = append(np.Spec.Egress, g.egressRule())
	}
	return np
}

func (g gen) cluster() cluster {
	var c cluster
	for i, n := range genNamespaces {
		l := map[string]string{}
		if g.r.IntN(3) > 0 {
			l["team"] = g.pick("x", "y")
		}
		c.nss = append(c.nss, mkNS(n, l))
		for j := range 1 + g.r.IntN(3) {
			var ports []corev1.ContainerPort
			if g.r.IntN(2) == 0 {
				ports = append(ports, corev1.ContainerPort{Name: "http", ContainerPort: genPorts[1+g.r.IntN(3)], Protocol: corev1.ProtocolTCP})
			}
			if g.r.IntN(3) == 0 {
				ports = append(ports, corev1.ContainerPort{Name: "dns", ContainerPort: 53, Protocol: corev1.Protocol(g.pick("UDP", "TCP"))})
			}
			c.pods = append(c.pods, mkPod(n, fmt.Sprintf("p%d", j), g.labels(), []string{fmt.Sprintf("10.0.%d.%d", i, j+1)}, ports...))
		}
	}
	for i := range g.r.IntN(6) {
		c.nps = append(c.nps, g.policy(i))
	}
	return c
}

// seeds is how many random clusters a property test tries; -short tries fewer.
func seeds(n uint64) uint64 {
	if testing.Short() {
		return n / 10
	}
	return n
}

type verdictKey struct {
	from  string
	to    PodRef
	port  int32
	proto corev1.Protocol
}

// verdicts evaluates every pod and external source against every pod on a few
// ports and protocols.
func verdicts(t *testing.T, c cluster) map[verdictKey]*Answer {
	t.Helper()
	e, err := New(c.nss, c.pods, c.nps)
	require.NoError(t, err)
	out := map[verdictKey]*Answer{}
	// Every answer is also checked against the fast path.
	eval := func(q Query) *Answer {
		a, err := e.Evaluate(q)
		require.NoError(t, err)
		v, err := e.Verdict(q)
		require.NoError(t, err)
		require.Equal(t, a.Verdict, v, "Verdict disagrees with Evaluate for %+v\n%s", q, a.Text())
		return a
	}
	for _, dst := range c.pods {
		to := PodRef{dst.Namespace, dst.Name}
		for _, port := range genPorts {
			for _, proto := range []corev1.Protocol{corev1.ProtocolTCP, corev1.ProtocolUDP} {
				for _, src := range c.pods {
					a := eval(Query{From: PodRef{src.Namespace, src.Name}, To: to, Port: Port{Number: port}, Protocol: proto})
					out[verdictKey{src.Namespace + "/" + src.Name, to, port, proto}] = a
				}
				for _, ip := range genExternal {
					a := eval(Query{FromIP: mustAddr(t, ip), To: to, Port: Port{Number: port}, Protocol: proto})
					out[verdictKey{ip, to, port, proto}] = a
				}
			}
		}
	}
	return out
}

// explicitTypes makes the API's policyTypes defaulting explicit, as the API server
// stores it.
func explicitTypes(np *networkingv1.NetworkPolicy) {
	if len(np.Spec.PolicyTypes) == 0 {
		np.Spec.PolicyTypes = []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}
		if len(np.Spec.Egress) > 0 {
			np.Spec.PolicyTypes = append(np.Spec.PolicyTypes, networkingv1.PolicyTypeEgress)
		}
	}
}

// Adding a rule to a policy can only widen what it allows. This holds for policies
// as stored by the API server, i.e. with policyTypes defaulted: adding the first
// egress rule to a policy without policyTypes would also add Egress to its types
// (see TestAddingFirstEgressRuleCanDeny).
func TestPropertyAddingRuleNeverDenies(t *testing.T) {
	t.Parallel()
	for seed := range seeds(150) {
		g := gen{rand.New(rand.NewPCG(seed, 1))}
		c := g.cluster()
		if len(c.nps) == 0 {
			continue
		}
		for _, np := range c.nps {
			explicitTypes(np)
		}
		before := verdicts(t, c)

		victim := c.nps[g.r.IntN(len(c.nps))]
		if g.r.IntN(2) == 0 {
			victim.Spec.Ingress = append(victim.Spec.Ingress, g.ingressRule())
		} else {
			victim.Spec.Egress = append(victim.Spec.Egress, g.egressRule())
		}
		after := verdicts(t, c)
		for k, a := range before {
			if a.Verdict == Allow && after[k].Verdict != Allow {
				t.Fatalf("seed %d: adding a rule to %s/%s turned %v from ALLOW into DENY:\n%s", seed, victim.Namespace, victim.Name, k, after[k].Text())
			}
		}
	}
}

func TestAddingFirstEgressRuleCanDeny(t *testing.T) {
	nss, pods := world()
	np := pol(t, "a", "p", `{podSelector: {}, ingress: [{}]}`)
	e, err := New(nss, pods, []*networkingv1.NetworkPolicy{np})
	require.NoError(t, err)
	q := Query{From: PodRef{"a", "x"}, To: PodRef{"b", "x"}, Port: Port{Number: 80}}
	a, err := e.Evaluate(q)
	require.NoError(t, err)
	require.Equal(t, Allow, a.Verdict)

	np.Spec.Egress = []networkingv1.NetworkPolicyEgressRule{{Ports: []networkingv1.NetworkPolicyPort{{Port: ptr.To(intstr.FromInt32(443))}}}}
	e, err = New(nss, pods, []*networkingv1.NetworkPolicy{np})
	require.NoError(t, err)
	a, err = e.Evaluate(q)
	require.NoError(t, err)
	require.Equal(t, Deny, a.Verdict, "the egress rule makes the defaulted policyTypes include Egress")
}

// A pod that no policy selects for ingress accepts everything: every source, every
// port. Which pods are unselected is worked out here from the API objects, not by
// the evaluator.
func TestPropertyUnselectedPodIsReachable(t *testing.T) {
	t.Parallel()
	checked := 0
	for seed := range seeds(200) {
		g := gen{rand.New(rand.NewPCG(seed, 2))}
		c := g.cluster()
		unselected := map[PodRef]bool{}
		for _, p := range c.pods {
			unselected[PodRef{p.Namespace, p.Name}] = !selectedForIngress(t, c.nps, p)
		}
		for k, a := range verdicts(t, c) {
			if !unselected[k.to] {
				continue
			}
			checked++
			if !a.Ingress.Allowed || !a.Ingress.Unrestricted() {
				t.Fatalf("seed %d: %v: pod selected by no ingress policy is not reachable:\n%s", seed, k, a.Text())
			}
			if a.Egress == nil && a.Verdict != Allow {
				t.Fatalf("seed %d: %v: external source denied to an unselected pod:\n%s", seed, k, a.Text())
			}
		}
	}
	require.Greater(t, checked, int(seeds(200))*3, "the generator should produce unselected pods")
}

func selectedForIngress(t *testing.T, nps []*networkingv1.NetworkPolicy, p *corev1.Pod) bool {
	for _, np := range nps {
		if np.Namespace != p.Namespace {
			continue
		}
		ingress := len(np.Spec.PolicyTypes) == 0
		for _, pt := range np.Spec.PolicyTypes {
			ingress = ingress || pt == networkingv1.PolicyTypeIngress
		}
		sel, err := metav1.LabelSelectorAsSelector(&np.Spec.PodSelector)
		require.NoError(t, err)
		if ingress && sel.Matches(labels.Set(p.Labels)) {
			return true
		}
	}
	return false
}

// TestAgainstOracle compares the indexed evaluator with a literal reading of the
// API documentation that works directly on the API objects.
func TestAgainstOracle(t *testing.T) {
	t.Parallel()
	for seed := range seeds(250) {
		g := gen{rand.New(rand.NewPCG(seed, 3))}
		c := g.cluster()
		o := newOracle(t, c)
		for k, a := range verdicts(t, c) {
			want := o.allowed(k)
			if (a.Verdict == Allow) != want {
				t.Fatalf("seed %d: %v: evaluator says %s, oracle says allowed=%v\n%s", seed, k, a.Verdict, want, a.Text())
			}
		}
	}
}

type oracle struct {
	t    *testing.T
	c    cluster
	nsOf map[string]*corev1.Namespace
	pods map[string]*corev1.Pod
	sels map[*metav1.LabelSelector]labels.Selector // parsing dominated under -race
}

func newOracle(t *testing.T, c cluster) *oracle {
	o := &oracle{t: t, c: c, nsOf: map[string]*corev1.Namespace{}, pods: map[string]*corev1.Pod{}, sels: map[*metav1.LabelSelector]labels.Selector{}}
	for _, n := range c.nss {
		o.nsOf[n.Name] = n
	}
	for _, p := range c.pods {
		o.pods[p.Namespace+"/"+p.Name] = p
	}
	return o
}

func (o *oracle) allowed(k verdictKey) bool {
	dst := o.pods[k.to.String()]
	src, isPod := o.pods[k.from]
	srcIP := k.from
	if isPod {
		srcIP = src.Status.PodIP
		if !o.side(src, dst, dst.Status.PodIP, dst, k, true) {
			return false
		}
	} else {
		src = nil
	}
	return o.side(dst, src, srcIP, dst, k, false)
}

// side: is traffic between subject and other allowed by subject's policies for
// egress (subject is the source) or ingress?
func (o *oracle) side(subject, other *corev1.Pod, otherIP string, dst *corev1.Pod, k verdictKey, egress bool) bool {
	isolated := false
	for _, np := range o.c.nps {
		if np.Namespace != subject.Namespace || !o.sel(&np.Spec.PodSelector, subject.Labels) {
			continue
		}
		types := np.Spec.PolicyTypes
		if len(types) == 0 {
			types = []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}
			if len(np.Spec.Egress) > 0 {
				types = append(types, networkingv1.PolicyTypeEgress)
			}
		}
		want := networkingv1.PolicyTypeIngress
		if egress {
			want = networkingv1.PolicyTypeEgress
		}
		applies := false
		for _, ty := range types {
			applies = applies || ty == want
		}
		if !applies {
			continue
		}
		isolated = true
		type rule struct {
			peers []networkingv1.NetworkPolicyPeer
			ports []networkingv1.NetworkPolicyPort
		}
		var rules []rule
		if egress {
			for _, r := range np.Spec.Egress {
				rules = append(rules, rule{r.To, r.Ports})
			}
		} else {
			for _, r := range np.Spec.Ingress {
				rules = append(rules, rule{r.From, r.Ports})
			}
		}
		for _, r := range rules {
			peerOK := len(r.peers) == 0
			for _, p := range r.peers {
				peerOK = peerOK || o.peer(np, p, other, otherIP)
			}
			portOK := len(r.ports) == 0
			for _, p := range r.ports {
				portOK = portOK || o.port(p, dst, k)
			}
			if peerOK && portOK {
				return true
			}
		}
	}
	return !isolated
}

func (o *oracle) sel(s *metav1.LabelSelector, l map[string]string) bool {
	sel, ok := o.sels[s]
	if !ok {
		var err error
		sel, err = metav1.LabelSelectorAsSelector(s)
		require.NoError(o.t, err)
		o.sels[s] = sel
	}
	return sel.Matches(labels.Set(l))
}

func (o *oracle) peer(np *networkingv1.NetworkPolicy, p networkingv1.NetworkPolicyPeer, other *corev1.Pod, ip string) bool {
	if p.IPBlock != nil {
		_, cidr, err := net.ParseCIDR(p.IPBlock.CIDR)
		require.NoError(o.t, err)
		addr := net.ParseIP(ip)
		if !cidr.Contains(addr) {
			return false
		}
		for _, e := range p.IPBlock.Except {
			_, ex, err := net.ParseCIDR(e)
			require.NoError(o.t, err)
			if ex.Contains(addr) {
				return false
			}
		}
		return true
	}
	if other == nil {
		return false
	}
	if p.NamespaceSelector != nil {
		nsLabels := map[string]string{"kubernetes.io/metadata.name": other.Namespace}
		for k, v := range o.nsOf[other.Namespace].Labels {
			nsLabels[k] = v
		}
		if !o.sel(p.NamespaceSelector, nsLabels) {
			return false
		}
	} else if other.Namespace != np.Namespace {
		return false
	}
	return p.PodSelector == nil || o.sel(p.PodSelector, other.Labels)
}

func (o *oracle) port(p networkingv1.NetworkPolicyPort, dst *corev1.Pod, k verdictKey) bool {
	proto := corev1.ProtocolTCP
	if p.Protocol != nil {
		proto = *p.Protocol
	}
	if proto != k.proto {
		return false
	}
	if p.Port == nil {
		return true
	}
	if p.Port.Type == intstr.String {
		for _, c := range dst.Spec.Containers {
			for _, cp := range c.Ports {
				if cp.Name == p.Port.StrVal && cp.Protocol == proto && cp.ContainerPort == k.port {
					return true
				}
			}
		}
		return false
	}
	end := p.Port.IntVal
	if p.EndPort != nil {
		end = *p.EndPort
	}
	return p.Port.IntVal <= k.port && k.port <= end
}
