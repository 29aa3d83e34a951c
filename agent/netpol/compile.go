package netpol

import (
	"net"
	"net/netip"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	metav1validation "k8s.io/apimachinery/pkg/apis/meta/v1/validation"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
	netutils "k8s.io/utils/net"
)

// This file turns API objects into the precompiled forms queries use: selectors are
// parsed once, CIDRs become netip.Prefix, defaults are resolved. The same code
// validates, so the loader and New reject exactly the same things; the loader asks
// for strict IP/CIDR syntax (what the API server accepts on create today) while
// objects from a live cluster may carry the legacy forms it still stores.

const defaultNamespace = "default"

type namespace struct {
	name   string
	labels labels.Set
}

type pod struct {
	ref         PodRef
	ns          *namespace
	labels      labels.Set
	ips         []netip.Addr // status.podIP first
	namedPorts  map[portKey][]int32
	hostNetwork bool
}

type portKey struct {
	name  string
	proto corev1.Protocol
}

type policy struct {
	ref      PolicyRef
	selector labels.Selector
	ingress  bool // policyTypes (after defaulting) include Ingress
	egress   bool
	rules    [2][]rule // indexed by dirIndex
}

type rule struct {
	peers []peer // empty: all peers
	ports []port // empty: all ports
}

type peer struct {
	podSel labels.Selector // nil: not set
	nsSel  labels.Selector // nil: not set
	block  *ipBlock
	text   string
}

type ipBlock struct {
	cidr   netip.Prefix
	except []netip.Prefix
}

type port struct {
	proto corev1.Protocol
	any   bool   // no port: every port of proto
	name  string // named port, resolved on the destination pod
	first int32
	last  int32 // == first unless endPort is set
	text  string
}

const (
	dirEgress  = 0
	dirIngress = 1
)

func dirIndex(d Direction) int {
	if d == Egress {
		return dirEgress
	}
	return dirIngress
}

func nsOrDefault(ns string) string {
	if ns == "" {
		return defaultNamespace
	}
	return ns
}

func compileNamespace(n *corev1.Namespace) *namespace {
	return newNamespace(n.Name, n.Labels)
}

// newNamespace copies the labels and adds kubernetes.io/metadata.name, which the API
// server sets (and forces) on every namespace.
func newNamespace(name string, l map[string]string) *namespace {
	set := make(labels.Set, len(l)+1)
	for k, v := range l {
		set[k] = v
	}
	set[corev1.LabelMetadataName] = name
	return &namespace{name: name, labels: set}
}

func compilePod(p *corev1.Pod, strict bool) (*pod, field.ErrorList) {
	var errs field.ErrorList
	out := &pod{
		ref:         PodRef{Namespace: nsOrDefault(p.Namespace), Name: p.Name},
		labels:      labels.Set(p.Labels),
		hostNetwork: p.Spec.HostNetwork,
	}
	if p.Name == "" {
		errs = append(errs, field.Required(field.NewPath("metadata", "name"), ""))
	}

	status := field.NewPath("status")
	podIP := p.Status.PodIP
	if podIP == "" && len(p.Status.PodIPs) > 0 {
		podIP = p.Status.PodIPs[0].IP
	}
	// A pod that runs (or, hand-written, says nothing of its phase) must have an
	// address; pending and finished pods in a cluster dump legitimately have none.
	phase := p.Status.Phase
	if podIP == "" && strict && (phase == "" || phase == corev1.PodRunning) {
		errs = append(errs, field.Required(status.Child("podIP"),
			"the evaluator needs the pod's IP to match ipBlock peers; set status.podIP"))
	}
	if podIP != "" {
		if a, fe := parseIP(status.Child("podIP"), podIP, strict); fe != nil {
			errs = append(errs, fe)
		} else {
			out.ips = append(out.ips, a)
		}
	}
	for i, pip := range p.Status.PodIPs {
		path := status.Child("podIPs").Index(i).Child("ip")
		a, fe := parseIP(path, pip.IP, strict)
		if fe != nil {
			errs = append(errs, fe)
			continue
		}
		if i == 0 && p.Status.PodIP != "" && len(out.ips) > 0 && a != out.ips[0] {
			errs = append(errs, field.Invalid(path, pip.IP, "must match status.podIP"))
		}
		if !containsAddr(out.ips, a) {
			out.ips = append(out.ips, a)
		}
	}

	addPorts := func(c *corev1.Container, path *field.Path) {
		for i, cp := range c.Ports {
			proto := cp.Protocol
			if proto == "" {
				proto = corev1.ProtocolTCP
			}
			if !validProtocol(proto) {
				errs = append(errs, unsupportedProtocol(path.Child("ports").Index(i).Child("protocol"), proto))
				continue
			}
			if cp.Name == "" {
				continue
			}
			if out.namedPorts == nil {
				out.namedPorts = make(map[portKey][]int32)
			}
			k := portKey{name: cp.Name, proto: proto}
			out.namedPorts[k] = append(out.namedPorts[k], cp.ContainerPort)
		}
	}
	spec := field.NewPath("spec")
	for i := range p.Spec.Containers {
		addPorts(&p.Spec.Containers[i], spec.Child("containers").Index(i))
	}
	// Sidecars (restartable init containers) serve traffic like regular containers;
	// upstream's named-port lookup for Services includes them after the containers.
	for i := range p.Spec.InitContainers {
		c := &p.Spec.InitContainers[i]
		if c.RestartPolicy != nil && *c.RestartPolicy == corev1.ContainerRestartPolicyAlways {
			addPorts(c, spec.Child("initContainers").Index(i))
		}
	}
	return out, errs
}

func containsAddr(as []netip.Addr, a netip.Addr) bool {
	for _, x := range as {
		if x == a {
			return true
		}
	}
	return false
}

func compilePolicy(np *networkingv1.NetworkPolicy, strict bool) (*policy, field.ErrorList) {
	var errs field.ErrorList
	out := &policy{ref: PolicyRef{Namespace: nsOrDefault(np.Namespace), Name: np.Name}}
	if np.Name == "" {
		errs = append(errs, field.Required(field.NewPath("metadata", "name"), ""))
	}
	spec := field.NewPath("spec")
	var fe field.ErrorList
	out.selector, fe = compileSelector(&np.Spec.PodSelector, spec.Child("podSelector"))
	errs = append(errs, fe...)

	types := np.Spec.PolicyTypes
	if len(types) == 0 {
		// API defaulting: every policy affects ingress; egress only when it has
		// egress rules. An empty `egress: []` therefore does not isolate egress.
		out.ingress = true
		out.egress = len(np.Spec.Egress) > 0
	} else if len(types) > 2 {
		errs = append(errs, field.Invalid(spec.Child("policyTypes"), types, "may not specify more than two policyTypes"))
	}
	for i, t := range types {
		switch t {
		case networkingv1.PolicyTypeIngress:
			out.ingress = true
		case networkingv1.PolicyTypeEgress:
			out.egress = true
		default:
			errs = append(errs, field.NotSupported(spec.Child("policyTypes").Index(i), t,
				[]string{string(networkingv1.PolicyTypeIngress), string(networkingv1.PolicyTypeEgress)}))
		}
	}

	for i := range np.Spec.Ingress {
		r := &np.Spec.Ingress[i]
		path := spec.Child("ingress").Index(i)
		cr, fe := compileRule(r.From, r.Ports, path.Child("from"), path.Child("ports"), strict)
		errs = append(errs, fe...)
		out.rules[dirIngress] = append(out.rules[dirIngress], cr)
	}
	for i := range np.Spec.Egress {
		r := &np.Spec.Egress[i]
		path := spec.Child("egress").Index(i)
		cr, fe := compileRule(r.To, r.Ports, path.Child("to"), path.Child("ports"), strict)
		errs = append(errs, fe...)
		out.rules[dirEgress] = append(out.rules[dirEgress], cr)
	}
	return out, errs
}

func compileRule(peers []networkingv1.NetworkPolicyPeer, ports []networkingv1.NetworkPolicyPort, peersPath, portsPath *field.Path, strict bool) (rule, field.ErrorList) {
	var errs field.ErrorList
	var r rule
	for j := range peers {
		p, fe := compilePeer(&peers[j], peersPath.Index(j), strict)
		errs = append(errs, fe...)
		r.peers = append(r.peers, p)
	}
	for k := range ports {
		p, fe := compilePort(&ports[k], portsPath.Index(k))
		errs = append(errs, fe...)
		r.ports = append(r.ports, p)
	}
	return r, errs
}

func compilePeer(np *networkingv1.NetworkPolicyPeer, path *field.Path, strict bool) (peer, field.ErrorList) {
	var errs field.ErrorList
	var p peer
	set := 0
	var parts []string
	if np.PodSelector != nil {
		set++
		var fe field.ErrorList
		p.podSel, fe = compileSelector(np.PodSelector, path.Child("podSelector"))
		errs = append(errs, fe...)
	}
	if np.NamespaceSelector != nil {
		set++
		var fe field.ErrorList
		p.nsSel, fe = compileSelector(np.NamespaceSelector, path.Child("namespaceSelector"))
		errs = append(errs, fe...)
	}
	if np.IPBlock != nil {
		set++
		var fe field.ErrorList
		p.block, fe = compileIPBlock(np.IPBlock, path.Child("ipBlock"), strict)
		errs = append(errs, fe...)
	}
	switch {
	case set == 0:
		errs = append(errs, field.Required(path, "must specify a peer"))
	case set > 1 && np.IPBlock != nil:
		errs = append(errs, field.Forbidden(path, "may not specify both ipBlock and another peer"))
	}
	if len(errs) > 0 {
		return peer{}, errs
	}
	if p.nsSel != nil {
		parts = append(parts, "namespaceSelector "+selectorText(p.nsSel))
	}
	if p.podSel != nil {
		s := "podSelector " + selectorText(p.podSel)
		if p.nsSel == nil {
			s += " (policy namespace)"
		}
		parts = append(parts, s)
	}
	if p.block != nil {
		s := "ipBlock " + np.IPBlock.CIDR
		if len(np.IPBlock.Except) > 0 {
			s += " except " + strings.Join(np.IPBlock.Except, ",")
		}
		parts = append(parts, s)
	}
	p.text = strings.Join(parts, " AND ")
	return p, nil
}

func selectorText(s labels.Selector) string {
	if s.Empty() {
		return "{} (all)"
	}
	return "{" + s.String() + "}"
}

// compileSelector validates like the API server, then compiles once so that queries
// only match.
func compileSelector(ls *metav1.LabelSelector, path *field.Path) (labels.Selector, field.ErrorList) {
	errs := metav1validation.ValidateLabelSelector(ls, metav1validation.LabelSelectorValidationOptions{}, path)
	if len(errs) > 0 {
		return nil, errs
	}
	sel, err := metav1.LabelSelectorAsSelector(ls)
	if err != nil {
		return nil, field.ErrorList{field.Invalid(path, ls.String(), err.Error())}
	}
	return sel, nil
}

func compileIPBlock(b *networkingv1.IPBlock, path *field.Path, strict bool) (*ipBlock, field.ErrorList) {
	if b.CIDR == "" {
		return nil, field.ErrorList{field.Required(path.Child("cidr"), "")}
	}
	cidr, fe := parseCIDR(path.Child("cidr"), b.CIDR, strict)
	if fe != nil {
		return nil, field.ErrorList{fe}
	}
	var errs field.ErrorList
	out := &ipBlock{cidr: cidr}
	for i, e := range b.Except {
		ep := path.Child("except").Index(i)
		ex, fe := parseCIDR(ep, e, strict)
		if fe != nil {
			errs = append(errs, fe)
			continue
		}
		// Same rule as API validation: inside cidr and strictly longer.
		if ex.Addr().Is4() != cidr.Addr().Is4() || !cidr.Contains(ex.Addr()) || ex.Bits() <= cidr.Bits() {
			errs = append(errs, field.Invalid(ep, e, "must be a strict subset of `cidr`"))
			continue
		}
		out.except = append(out.except, ex)
	}
	return out, errs
}

func (b *ipBlock) contains(a netip.Addr) bool {
	if !a.IsValid() || !b.cidr.Contains(a) {
		return false
	}
	for _, e := range b.except {
		if e.Contains(a) {
			return false
		}
	}
	return true
}

func validProtocol(p corev1.Protocol) bool {
	return p == corev1.ProtocolTCP || p == corev1.ProtocolUDP || p == corev1.ProtocolSCTP
}

func unsupportedProtocol(path *field.Path, p corev1.Protocol) *field.Error {
	return field.NotSupported(path, p, []string{string(corev1.ProtocolTCP), string(corev1.ProtocolUDP), string(corev1.ProtocolSCTP)})
}

func compilePort(np *networkingv1.NetworkPolicyPort, path *field.Path) (port, field.ErrorList) {
	var errs field.ErrorList
	p := port{proto: corev1.ProtocolTCP}
	if np.Protocol != nil {
		p.proto = *np.Protocol
		if !validProtocol(p.proto) {
			errs = append(errs, unsupportedProtocol(path.Child("protocol"), p.proto))
		}
	}
	switch {
	case np.Port == nil:
		p.any = true
		if np.EndPort != nil {
			errs = append(errs, field.Invalid(path.Child("endPort"), *np.EndPort, "may not be specified when `port` is not specified"))
		}
		p.text = string(p.proto) + "/any"
	case np.Port.Type == intstr.Int:
		p.first, p.last = np.Port.IntVal, np.Port.IntVal
		for _, msg := range validation.IsValidPortNum(int(p.first)) {
			errs = append(errs, field.Invalid(path.Child("port"), p.first, msg))
		}
		p.text = string(p.proto) + "/" + strconv.Itoa(int(p.first))
		if np.EndPort != nil {
			p.last = *np.EndPort
			if p.last < p.first {
				errs = append(errs, field.Invalid(path.Child("endPort"), p.last, "must be greater than or equal to `port`"))
			}
			for _, msg := range validation.IsValidPortNum(int(p.last)) {
				errs = append(errs, field.Invalid(path.Child("endPort"), p.last, msg))
			}
			p.text += "-" + strconv.Itoa(int(p.last))
		}
	default:
		p.name = np.Port.StrVal
		for _, msg := range validation.IsValidPortName(p.name) {
			errs = append(errs, field.Invalid(path.Child("port"), p.name, msg))
		}
		if np.EndPort != nil {
			errs = append(errs, field.Invalid(path.Child("endPort"), *np.EndPort, "may not be specified when `port` is non-numeric"))
		}
		p.text = string(p.proto) + "/" + p.name
	}
	return p, errs
}

// parseIP accepts what the API server may have stored (legacy leading zeros,
// IPv4-mapped IPv6); strict additionally rejects what it refuses on create today.
func parseIP(path *field.Path, s string, strict bool) (netip.Addr, *field.Error) {
	if strict {
		if errs := validation.IsValidIPForLegacyField(path, s, true, nil); len(errs) > 0 {
			return netip.Addr{}, errs[0]
		}
	}
	ip := netutils.ParseIPSloppy(s)
	if ip == nil {
		return netip.Addr{}, field.Invalid(path, s, "must be a valid IP address (e.g. 10.9.8.7 or 2001:db8::ffff)")
	}
	a, _ := netip.AddrFromSlice(ip)
	return a.Unmap(), nil
}

// parseCIDR is lenient like parseIP unless strict: host bits are masked off, as the
// API's own parser does for legacy values.
func parseCIDR(path *field.Path, s string, strict bool) (netip.Prefix, *field.Error) {
	if strict {
		if errs := validation.IsValidCIDRForLegacyField(path, s, true, nil); len(errs) > 0 {
			return netip.Prefix{}, errs[0]
		}
	}
	_, ipnet, err := netutils.ParseCIDRSloppy(s)
	if err != nil {
		return netip.Prefix{}, field.Invalid(path, s, "must be a valid CIDR value (e.g. 10.9.8.0/24 or 2001:db8::/64)")
	}
	return prefixFromIPNet(ipnet), nil
}

func prefixFromIPNet(n *net.IPNet) netip.Prefix {
	a, _ := netip.AddrFromSlice(n.IP)
	bits, _ := n.Mask.Size()
	if a.Is4In6() && bits >= 96 {
		a, bits = a.Unmap(), bits-96
	} else if a.Is4() && len(n.Mask) == net.IPv6len {
		bits -= 96
	}
	return netip.PrefixFrom(a, bits).Masked()
}
