package netpol

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"sort"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"sigs.k8s.io/network-policy-api/apis/v1alpha1"
	"sigs.k8s.io/network-policy-api/apis/v1alpha2"
	"sigs.k8s.io/network-policy-api/apis/v1beta1"
)

// This file compiles and evaluates the cluster-scoped policies of
// sigs.k8s.io/network-policy-api: ClusterNetworkPolicy (v1alpha2, v1beta1) and
// its predecessors AdminNetworkPolicy and BaselineAdminNetworkPolicy (v1alpha1).
// All three become one form: a tier, a priority, a subject and ordered rules
// with an effect.

const (
	kindCNP  = "ClusterNetworkPolicy"
	kindANP  = "AdminNetworkPolicy"
	kindBANP = "BaselineAdminNetworkPolicy"

	maxPriority = 1000
	maxRules    = 25
)

type effect uint8

const (
	effAllow effect = iota + 1
	effDeny
	effPass
)

type clusterPolicy struct {
	ref      ClusterPolicyRef
	tier     Layer
	priority int32
	// hasPriority is false for a BaselineAdminNetworkPolicy, which has none.
	hasPriority bool
	subjNS      labels.Selector
	subjPod     labels.Selector // nil: every pod of the selected namespaces
	rules       [2][]clusterRule
}

type clusterRule struct {
	index  int
	name   string
	action string // as written
	effect effect
	peers  []clusterPeer
	ports  []clusterPort // empty: every port
}

type clusterPeer struct {
	nsSel    labels.Selector // namespaces and pods peers
	podSel   labels.Selector // pods peers only
	nodeSel  labels.Selector
	networks []netip.Prefix
	domains  []string
	// failClosed marks a peer with no field this package knows (a newer CRD):
	// the API says to treat it as matching nothing in an Accept rule and as
	// matching everything in Deny and Pass rules, which become Deny.
	failClosed bool
	text       string
}

type clusterPort struct {
	proto corev1.Protocol // empty for a named port: the container port's protocol
	any   bool            // every port of proto
	name  string
	first int32
	last  int32
	text  string
}

// ClusterNetworkPolicyFromV1beta1 converts a v1beta1 ClusterNetworkPolicy to the
// v1alpha2 form the evaluator compiles; the two versions have the same schema.
func ClusterNetworkPolicyFromV1beta1(in *v1beta1.ClusterNetworkPolicy) (*v1alpha2.ClusterNetworkPolicy, error) {
	b, err := json.Marshal(in)
	if err != nil {
		return nil, err
	}
	out := &v1alpha2.ClusterNetworkPolicy{}
	if err := json.Unmarshal(b, out); err != nil {
		return nil, fmt.Errorf("ClusterNetworkPolicy %s: %w", in.Name, err)
	}
	out.APIVersion = v1alpha2.GroupVersion.String()
	return out, nil
}

func compileCNP(in *v1alpha2.ClusterNetworkPolicy, strict bool) (*clusterPolicy, field.ErrorList) {
	var errs field.ErrorList
	spec := field.NewPath("spec")
	out := &clusterPolicy{ref: ClusterPolicyRef{Kind: kindCNP, Name: in.Name}, priority: in.Spec.Priority, hasPriority: true}
	if in.Name == "" {
		errs = append(errs, field.Required(field.NewPath("metadata", "name"), ""))
	}
	switch in.Spec.Tier {
	case v1alpha2.AdminTier:
		out.tier = LayerAdmin
	case v1alpha2.BaselineTier:
		out.tier = LayerBaseline
	default:
		errs = append(errs, field.NotSupported(spec.Child("tier"), in.Spec.Tier, []string{string(v1alpha2.AdminTier), string(v1alpha2.BaselineTier)}))
	}
	errs = append(errs, checkPriority(spec.Child("priority"), in.Spec.Priority)...)
	var fe field.ErrorList
	out.subjNS, out.subjPod, fe = compileSubject(in.Spec.Subject.Namespaces, podSelectors(in.Spec.Subject.Pods), spec.Child("subject"))
	errs = append(errs, fe...)

	actions := map[string]effect{
		string(v1alpha2.ClusterNetworkPolicyRuleActionAccept): effAllow,
		string(v1alpha2.ClusterNetworkPolicyRuleActionDeny):   effDeny,
		string(v1alpha2.ClusterNetworkPolicyRuleActionPass):   effPass,
	}
	errs = append(errs, maxItems(spec.Child("ingress"), len(in.Spec.Ingress))...)
	for i, r := range in.Spec.Ingress {
		path := spec.Child("ingress").Index(i)
		cr, fe := compileClusterRule(i, r.Name, string(r.Action), actions, path)
		errs = append(errs, fe...)
		peers := path.Child("from")
		if len(r.From) == 0 {
			errs = append(errs, field.Required(peers, "must have at least one peer"))
		}
		for j, p := range r.From {
			cp, fe := compileClusterPeer(p.Namespaces, podSelectors(p.Pods), nil, nil, nil, peers.Index(j), strict)
			errs = append(errs, fe...)
			cr.peers = append(cr.peers, cp)
		}
		cr.ports, fe = compileProtocols(r.Protocols, path.Child("protocols"))
		errs = append(errs, fe...)
		out.rules[dirIngress] = append(out.rules[dirIngress], cr)
	}
	errs = append(errs, maxItems(spec.Child("egress"), len(in.Spec.Egress))...)
	for i, r := range in.Spec.Egress {
		path := spec.Child("egress").Index(i)
		cr, fe := compileClusterRule(i, r.Name, string(r.Action), actions, path)
		errs = append(errs, fe...)
		peers := path.Child("to")
		if len(r.To) == 0 {
			errs = append(errs, field.Required(peers, "must have at least one peer"))
		}
		for j, p := range r.To {
			nets := make([]string, len(p.Networks))
			for k, n := range p.Networks {
				nets[k] = string(n)
			}
			doms := make([]string, len(p.DomainNames))
			for k, d := range p.DomainNames {
				doms[k] = string(d)
			}
			cp, fe := compileClusterPeer(p.Namespaces, podSelectors(p.Pods), p.Nodes, nets, doms, peers.Index(j), strict)
			errs = append(errs, fe...)
			cr.peers = append(cr.peers, cp)
		}
		cr.ports, fe = compileProtocols(r.Protocols, path.Child("protocols"))
		errs = append(errs, fe...)
		errs = append(errs, checkEgressRule(&cr, path)...)
		out.rules[dirEgress] = append(out.rules[dirEgress], cr)
	}
	failClosed(out)
	return out, errs
}

func compileANP(in *v1alpha1.AdminNetworkPolicy, strict bool) (*clusterPolicy, field.ErrorList) {
	actions := map[string]effect{
		string(v1alpha1.AdminNetworkPolicyRuleActionAllow): effAllow,
		string(v1alpha1.AdminNetworkPolicyRuleActionDeny):  effDeny,
		string(v1alpha1.AdminNetworkPolicyRuleActionPass):  effPass,
	}
	out := &clusterPolicy{ref: ClusterPolicyRef{Kind: kindANP, Name: in.Name}, tier: LayerAdmin, priority: in.Spec.Priority, hasPriority: true}
	errs := checkPriority(field.NewPath("spec", "priority"), in.Spec.Priority)
	ingress := make([]v1alpha1Rule, len(in.Spec.Ingress))
	for i, r := range in.Spec.Ingress {
		ingress[i] = v1alpha1Rule{name: r.Name, action: string(r.Action), ports: r.Ports}
		for _, p := range r.From {
			ingress[i].peers = append(ingress[i].peers, v1alpha1.AdminNetworkPolicyEgressPeer{Namespaces: p.Namespaces, Pods: p.Pods})
		}
	}
	egress := make([]v1alpha1Rule, len(in.Spec.Egress))
	for i, r := range in.Spec.Egress {
		egress[i] = v1alpha1Rule{name: r.Name, action: string(r.Action), ports: r.Ports, peers: r.To}
	}
	errs = append(errs, compileV1alpha1(out, in.Name, &in.Spec.Subject, ingress, egress, actions, strict)...)
	return out, errs
}

func compileBANP(in *v1alpha1.BaselineAdminNetworkPolicy, strict bool) (*clusterPolicy, field.ErrorList) {
	actions := map[string]effect{
		string(v1alpha1.BaselineAdminNetworkPolicyRuleActionAllow): effAllow,
		string(v1alpha1.BaselineAdminNetworkPolicyRuleActionDeny):  effDeny,
	}
	out := &clusterPolicy{ref: ClusterPolicyRef{Kind: kindBANP, Name: in.Name}, tier: LayerBaseline}
	var errs field.ErrorList
	if in.Name != "" && in.Name != "default" {
		errs = append(errs, field.Invalid(field.NewPath("metadata", "name"), in.Name, `the only BaselineAdminNetworkPolicy is named "default"`))
	}
	ingress := make([]v1alpha1Rule, len(in.Spec.Ingress))
	for i, r := range in.Spec.Ingress {
		ingress[i] = v1alpha1Rule{name: r.Name, action: string(r.Action), ports: r.Ports}
		for _, p := range r.From {
			ingress[i].peers = append(ingress[i].peers, v1alpha1.AdminNetworkPolicyEgressPeer{Namespaces: p.Namespaces, Pods: p.Pods})
		}
	}
	egress := make([]v1alpha1Rule, len(in.Spec.Egress))
	for i, r := range in.Spec.Egress {
		egress[i] = v1alpha1Rule{name: r.Name, action: string(r.Action), ports: r.Ports}
		for _, p := range r.To {
			egress[i].peers = append(egress[i].peers, v1alpha1.AdminNetworkPolicyEgressPeer{Namespaces: p.Namespaces, Pods: p.Pods, Nodes: p.Nodes, Networks: p.Networks})
		}
	}
	errs = append(errs, compileV1alpha1(out, in.Name, &in.Spec.Subject, ingress, egress, actions, strict)...)
	return out, errs
}

// v1alpha1Rule is an ANP or BANP rule of either direction; ingress peers use
// only Namespaces and Pods.
type v1alpha1Rule struct {
	name, action string
	peers        []v1alpha1.AdminNetworkPolicyEgressPeer
	ports        *[]v1alpha1.AdminNetworkPolicyPort
}

func compileV1alpha1(out *clusterPolicy, name string, subj *v1alpha1.AdminNetworkPolicySubject, ingress, egress []v1alpha1Rule, actions map[string]effect, strict bool) field.ErrorList {
	var errs field.ErrorList
	spec := field.NewPath("spec")
	if name == "" {
		errs = append(errs, field.Required(field.NewPath("metadata", "name"), ""))
	}
	var pods *[2]*metav1.LabelSelector
	if subj.Pods != nil {
		pods = &[2]*metav1.LabelSelector{&subj.Pods.NamespaceSelector, &subj.Pods.PodSelector}
	}
	var fe field.ErrorList
	out.subjNS, out.subjPod, fe = compileSubject(subj.Namespaces, pods, spec.Child("subject"))
	errs = append(errs, fe...)
	for di, rules := range [2][]v1alpha1Rule{dirEgress: egress, dirIngress: ingress} {
		dir, peersName := "egress", "to"
		if di == dirIngress {
			dir, peersName = "ingress", "from"
		}
		errs = append(errs, maxItems(spec.Child(dir), len(rules))...)
		for i, r := range rules {
			path := spec.Child(dir).Index(i)
			cr, fe := compileClusterRule(i, r.name, r.action, actions, path)
			errs = append(errs, fe...)
			if len(r.peers) == 0 {
				errs = append(errs, field.Required(path.Child(peersName), "must have at least one peer"))
			}
			for j, p := range r.peers {
				nets := make([]string, len(p.Networks))
				for k, n := range p.Networks {
					nets[k] = string(n)
				}
				doms := make([]string, len(p.DomainNames))
				for k, d := range p.DomainNames {
					doms[k] = string(d)
				}
				var pp *[2]*metav1.LabelSelector
				if p.Pods != nil {
					pp = &[2]*metav1.LabelSelector{&p.Pods.NamespaceSelector, &p.Pods.PodSelector}
				}
				cp, fe := compileClusterPeer(p.Namespaces, pp, p.Nodes, nets, doms, path.Child(peersName).Index(j), strict)
				errs = append(errs, fe...)
				cr.peers = append(cr.peers, cp)
			}
			if r.ports != nil {
				cr.ports, fe = compileV1alpha1Ports(*r.ports, path.Child("ports"))
				errs = append(errs, fe...)
			}
			if di == dirEgress {
				errs = append(errs, checkEgressRule(&cr, path)...)
			}
			out.rules[di] = append(out.rules[di], cr)
		}
	}
	failClosed(out)
	return errs
}

func podSelectors(p *v1alpha2.NamespacedPod) *[2]*metav1.LabelSelector {
	if p == nil {
		return nil
	}
	return &[2]*metav1.LabelSelector{&p.NamespaceSelector, &p.PodSelector}
}

func checkPriority(path *field.Path, p int32) field.ErrorList {
	if p < 0 || p > maxPriority {
		return field.ErrorList{field.Invalid(path, p, "must be between 0 and 1000")}
	}
	return nil
}

func maxItems(path *field.Path, n int) field.ErrorList {
	if n > maxRules {
		return field.ErrorList{field.TooMany(path, n, maxRules)}
	}
	return nil
}

func compileSubject(ns *metav1.LabelSelector, pods *[2]*metav1.LabelSelector, path *field.Path) (labels.Selector, labels.Selector, field.ErrorList) {
	switch {
	case ns != nil && pods != nil:
		return nil, nil, field.ErrorList{field.Forbidden(path, "exactly one of namespaces and pods must be set")}
	case ns != nil:
		sel, errs := compileSelector(ns, path.Child("namespaces"))
		return sel, nil, errs
	case pods != nil:
		nsSel, errs := compileSelector(pods[0], path.Child("pods", "namespaceSelector"))
		podSel, fe := compileSelector(pods[1], path.Child("pods", "podSelector"))
		return nsSel, podSel, append(errs, fe...)
	}
	return nil, nil, field.ErrorList{field.Required(path, "exactly one of namespaces and pods must be set")}
}

func compileClusterRule(i int, name, action string, actions map[string]effect, path *field.Path) (clusterRule, field.ErrorList) {
	var errs field.ErrorList
	r := clusterRule{index: i, name: name, action: action, effect: actions[action]}
	if r.effect == 0 {
		allowed := make([]string, 0, len(actions))
		for a := range actions {
			allowed = append(allowed, a)
		}
		sort.Strings(allowed)
		errs = append(errs, field.NotSupported(path.Child("action"), action, allowed))
	}
	if len(name) > 100 {
		errs = append(errs, field.TooLong(path.Child("name"), name, 100))
	}
	return r, errs
}

func compileClusterPeer(ns *metav1.LabelSelector, pods *[2]*metav1.LabelSelector, nodes *metav1.LabelSelector, networks, domains []string, path *field.Path, strict bool) (clusterPeer, field.ErrorList) {
	var errs, fe field.ErrorList
	var p clusterPeer
	set := 0
	if ns != nil {
		set++
		p.nsSel, fe = compileSelector(ns, path.Child("namespaces"))
		errs = append(errs, fe...)
		if fe == nil {
			p.text = "namespaces " + selectorText(p.nsSel)
		}
	}
	if pods != nil {
		set++
		p.nsSel, fe = compileSelector(pods[0], path.Child("pods", "namespaceSelector"))
		errs = append(errs, fe...)
		var fe2 field.ErrorList
		p.podSel, fe2 = compileSelector(pods[1], path.Child("pods", "podSelector"))
		errs = append(errs, fe2...)
		if fe == nil && fe2 == nil {
			p.text = "pods namespaceSelector " + selectorText(p.nsSel) + " podSelector " + selectorText(p.podSel)
		}
	}
	if nodes != nil {
		set++
		p.nodeSel, fe = compileSelector(nodes, path.Child("nodes"))
		errs = append(errs, fe...)
		if fe == nil {
			p.text = "nodes " + selectorText(p.nodeSel)
		}
	}
	if len(networks) > 0 {
		set++
		if len(networks) > maxRules {
			errs = append(errs, field.TooMany(path.Child("networks"), len(networks), maxRules))
		}
		for i, n := range networks {
			np := path.Child("networks").Index(i)
			pfx, fe := parseCIDR(np, n, strict)
			if fe != nil {
				errs = append(errs, fe)
				continue
			}
			if raw, err := netip.ParsePrefix(n); strict && err == nil && raw != raw.Masked() {
				errs = append(errs, field.Invalid(np, n, "must be a masked CIDR (no host bits set)"))
				continue
			}
			p.networks = append(p.networks, pfx)
		}
		p.text = "networks " + strings.Join(networks, ",")
	}
	if len(domains) > 0 {
		set++
		for i, d := range domains {
			name := strings.TrimPrefix(d, "*.")
			if msgs := validation.IsDNS1123Subdomain(name); len(msgs) > 0 || !strings.Contains(name, ".") && d != name {
				errs = append(errs, field.Invalid(path.Child("domainNames").Index(i), d, "must be a domain name, optionally with a leading *."))
			}
		}
		p.domains = domains
		p.text = "domainNames " + strings.Join(domains, ",")
	}
	switch {
	case set == 0 && strict:
		errs = append(errs, field.Required(path, "exactly one of the peer's fields must be set"))
	case set == 0:
		p.failClosed = true
		p.text = "a peer with no field this evaluator knows (fail closed)"
	case set > 1:
		errs = append(errs, field.Forbidden(path, "exactly one of the peer's fields must be set"))
	}
	return p, errs
}

// checkEgressRule applies the CRDs' cross-field rules: domainNames only in
// Accept/Allow rules, named ports only toward pods.
func checkEgressRule(r *clusterRule, path *field.Path) field.ErrorList {
	var errs field.ErrorList
	named := false
	for _, pt := range r.ports {
		named = named || pt.name != ""
	}
	for j, p := range r.peers {
		if len(p.domains) > 0 && r.effect != effAllow {
			errs = append(errs, field.Forbidden(path.Child("to").Index(j).Child("domainNames"), "domainNames peers are only allowed in rules that accept traffic"))
		}
		if named && (len(p.networks) > 0 || p.nodeSel != nil || len(p.domains) > 0) {
			errs = append(errs, field.Forbidden(path.Child("to").Index(j), "networks, nodes and domainNames peers cannot be combined with named ports"))
		}
	}
	return errs
}

// failClosed rewrites rules holding a peer with no known field as the API
// asks: an Accept/Allow rule drops the peer (it matches nothing), a Deny or
// Pass rule becomes a Deny of everything.
func failClosed(cp *clusterPolicy) {
	for di := range cp.rules {
		for i := range cp.rules[di] {
			r := &cp.rules[di][i]
			for _, p := range r.peers {
				if !p.failClosed {
					continue
				}
				if r.effect != effAllow {
					r.effect = effDeny
					r.ports = nil
				}
				break
			}
		}
	}
}

func compileProtocols(ps []v1alpha2.ClusterNetworkPolicyProtocol, path *field.Path) ([]clusterPort, field.ErrorList) {
	var errs field.ErrorList
	var out []clusterPort
	for i, p := range ps {
		pp := path.Index(i)
		set := 0
		add := func(proto corev1.Protocol, dp *v1alpha2.Port, child string) {
			set++
			cp := clusterPort{proto: proto}
			switch {
			case dp == nil:
				cp.any = true
				cp.text = string(proto) + "/any"
			case dp.Range != nil && dp.Number != 0:
				errs = append(errs, field.Forbidden(pp.Child(child, "destinationPort"), "exactly one of number and range must be set"))
			case dp.Range != nil:
				cp.first, cp.last = dp.Range.Start, dp.Range.End
				errs = append(errs, checkRange(pp.Child(child, "destinationPort", "range"), cp.first, cp.last)...)
				cp.text = string(proto) + "/" + strconv.Itoa(int(cp.first)) + "-" + strconv.Itoa(int(cp.last))
			default:
				cp.first, cp.last = dp.Number, dp.Number
				for _, msg := range validation.IsValidPortNum(int(dp.Number)) {
					errs = append(errs, field.Invalid(pp.Child(child, "destinationPort", "number"), dp.Number, msg))
				}
				cp.text = string(proto) + "/" + strconv.Itoa(int(cp.first))
			}
			out = append(out, cp)
		}
		if p.TCP != nil {
			add(corev1.ProtocolTCP, p.TCP.DestinationPort, "tcp")
		}
		if p.UDP != nil {
			add(corev1.ProtocolUDP, p.UDP.DestinationPort, "udp")
		}
		if p.SCTP != nil {
			add(corev1.ProtocolSCTP, p.SCTP.DestinationPort, "sctp")
		}
		if p.DestinationNamedPort != "" {
			set++
			for _, msg := range validation.IsValidPortName(p.DestinationNamedPort) {
				errs = append(errs, field.Invalid(pp.Child("destinationNamedPort"), p.DestinationNamedPort, msg))
			}
			out = append(out, clusterPort{name: p.DestinationNamedPort, text: "named port " + p.DestinationNamedPort})
		}
		if set != 1 {
			errs = append(errs, field.Invalid(pp, set, "exactly one of tcp, udp, sctp and destinationNamedPort must be set"))
		}
	}
	return out, errs
}

func compileV1alpha1Ports(ps []v1alpha1.AdminNetworkPolicyPort, path *field.Path) ([]clusterPort, field.ErrorList) {
	var errs field.ErrorList
	out := []clusterPort{}
	for i, p := range ps {
		pp := path.Index(i)
		set := 0
		if p.PortNumber != nil {
			set++
			cp := clusterPort{proto: p.PortNumber.Protocol, first: p.PortNumber.Port, last: p.PortNumber.Port}
			if !validProtocol(cp.proto) {
				errs = append(errs, unsupportedProtocol(pp.Child("portNumber", "protocol"), cp.proto))
			}
			for _, msg := range validation.IsValidPortNum(int(cp.first)) {
				errs = append(errs, field.Invalid(pp.Child("portNumber", "port"), cp.first, msg))
			}
			cp.text = string(cp.proto) + "/" + strconv.Itoa(int(cp.first))
			out = append(out, cp)
		}
		if p.NamedPort != nil {
			set++
			for _, msg := range validation.IsValidPortName(*p.NamedPort) {
				errs = append(errs, field.Invalid(pp.Child("namedPort"), *p.NamedPort, msg))
			}
			out = append(out, clusterPort{name: *p.NamedPort, text: "named port " + *p.NamedPort})
		}
		if p.PortRange != nil {
			set++
			cp := clusterPort{proto: p.PortRange.Protocol, first: p.PortRange.Start, last: p.PortRange.End}
			if cp.proto == "" {
				cp.proto = corev1.ProtocolTCP
			}
			if !validProtocol(cp.proto) {
				errs = append(errs, unsupportedProtocol(pp.Child("portRange", "protocol"), cp.proto))
			}
			errs = append(errs, checkRange(pp.Child("portRange"), cp.first, cp.last)...)
			cp.text = string(cp.proto) + "/" + strconv.Itoa(int(cp.first)) + "-" + strconv.Itoa(int(cp.last))
			out = append(out, cp)
		}
		if set != 1 {
			errs = append(errs, field.Invalid(pp, set, "exactly one of portNumber, namedPort and portRange must be set"))
		}
	}
	if len(out) == 0 {
		// `ports: []` written explicitly: like an absent list, every port.
		return nil, errs
	}
	return out, errs
}

func checkRange(path *field.Path, start, end int32) field.ErrorList {
	var errs field.ErrorList
	for _, msg := range validation.IsValidPortNum(int(start)) {
		errs = append(errs, field.Invalid(path.Child("start"), start, msg))
	}
	for _, msg := range validation.IsValidPortNum(int(end)) {
		errs = append(errs, field.Invalid(path.Child("end"), end, msg))
	}
	if start >= end {
		errs = append(errs, field.Invalid(path, fmt.Sprintf("%d-%d", start, end), "start must be less than end"))
	}
	return errs
}

// match is the outcome of matching a rule: no, yes, or maybe when it depends on
// something the objects do not show.
type match uint8

const (
	matchNo match = iota
	matchYes
	matchMaybe
)

// node is what nodes peers need of a Node: its labels and addresses.
type node struct {
	name   string
	labels labels.Set
	ips    []netip.Addr
}

// matchPeer matches the other end of the connection (other is nil for an
// address outside the cluster) against one peer.
func (e *Evaluator) matchClusterPeer(p *clusterPeer, other *pod, ip netip.Addr) (match, string) {
	switch {
	case p.failClosed:
		return matchYes, ""
	case p.nsSel != nil:
		// Host-network pods are not included in namespaces and pods peers.
		if other == nil || other.hostNetwork || !p.nsSel.Matches(other.ns.labels) {
			return matchNo, ""
		}
		if p.podSel != nil && !p.podSel.Matches(other.labels) {
			return matchNo, ""
		}
		return matchYes, ""
	case p.nodeSel != nil:
		if !ip.IsValid() {
			return matchNo, ""
		}
		if e.nodes == nil {
			if other != nil && !other.hostNetwork {
				return matchNo, "" // a pod's own address is never a node's
			}
			return matchMaybe, "nodes peer and no Node objects given: cannot tell whether " + ip.String() + " is a matching node's address"
		}
		for _, n := range e.nodesByIP[ip] {
			if p.nodeSel.Matches(n.labels) {
				return matchYes, ""
			}
		}
		return matchNo, ""
	case len(p.networks) > 0:
		if !ip.IsValid() && other != nil {
			return matchMaybe, "networks peer and pod " + other.ref.String() + " has no IP of this family yet"
		}
		for _, n := range p.networks {
			if ip.IsValid() && n.Contains(ip) {
				return matchYes, ""
			}
		}
		return matchNo, ""
	case len(p.domains) > 0:
		return matchMaybe, "domainNames peer " + strings.Join(p.domains, ",") + ": whether they resolve to " + endpointWords(other, ip) + " cannot be seen in the objects"
	}
	return matchNo, ""
}

func endpointWords(p *pod, ip netip.Addr) string {
	if p != nil {
		return "pod " + p.ref.String()
	}
	return ip.String()
}

func (pt *clusterPort) matches(dst *pod, num int32, proto corev1.Protocol) bool {
	if pt.name != "" {
		for _, n := range dst.namedPorts[portKey{name: pt.name, proto: proto}] {
			if n == num {
				return true
			}
		}
		return false
	}
	if pt.proto != proto {
		return false
	}
	return pt.any || pt.first <= num && num <= pt.last
}

// selects reports whether the policy's subject includes the pod; host-network
// pods are never subjects.
func (cp *clusterPolicy) selects(p *pod) bool {
	if p.hostNetwork || !cp.subjNS.Matches(p.ns.labels) {
		return false
	}
	return cp.subjPod == nil || cp.subjPod.Matches(p.labels)
}

// tierOutcome is what one tier says about a direction: the rules that match or
// may match, in evaluation order, and whether evaluation may continue to the
// next layer without any of them deciding.
type tierOutcome struct {
	rules    []ClusterRuleMatch
	effects  []effect // parallel to rules
	definite int      // index in rules of the rule that certainly matched; -1: none
	// conflict names same-priority policies that certainly match with
	// different effects.
	conflict string
}

// evalTier runs the policies of one tier for subject's direction d. Policies
// are grouped by priority (lower first); within a policy the first matching
// rule counts. The API lets an implementation pick any of several
// same-priority policies that match, so all of a group's matches are kept.
func (e *Evaluator) evalTier(policies []*clusterPolicy, d Direction, subject, other, dst *pod, otherIP netip.Addr, num int32, proto corev1.Protocol) tierOutcome {
	di := dirIndex(d)
	out := tierOutcome{definite: -1}
	for start := 0; start < len(policies); {
		end := start + 1
		for end < len(policies) && policies[end].hasPriority && policies[start].hasPriority && policies[end].priority == policies[start].priority {
			end++
		}
		groupDefinite := -1
		for _, cp := range policies[start:end] {
			if len(cp.rules[di]) == 0 || !cp.selects(subject) {
				continue
			}
			for i := range cp.rules[di] {
				r := &cp.rules[di][i]
				if !r.matchPorts(dst, num, proto) {
					continue
				}
				m, why, peer := e.matchClusterRule(r, other, otherIP)
				if m == matchNo {
					continue
				}
				out.rules = append(out.rules, cp.ruleMatch(r, d, peer, why))
				out.effects = append(out.effects, r.effect)
				if m == matchYes {
					if groupDefinite < 0 {
						groupDefinite = len(out.rules) - 1
					} else if out.effects[groupDefinite] != r.effect && out.conflict == "" {
						first := out.rules[groupDefinite]
						out.conflict = fmt.Sprintf("%s and %s have the same priority %d and disagree (%s, %s): the API lets the implementation apply either",
							first.Policy, cp.ref, cp.priority, first.Action, r.action)
					}
					break
				}
			}
		}
		if groupDefinite >= 0 {
			out.definite = groupDefinite
			return out
		}
		start = end
	}
	return out
}

func (r *clusterRule) matchPorts(dst *pod, num int32, proto corev1.Protocol) bool {
	if len(r.ports) == 0 {
		return true
	}
	for k := range r.ports {
		if r.ports[k].matches(dst, num, proto) {
			return true
		}
	}
	return false
}

// matchClusterRule returns the best match of the rule's peers with the index of
// the peer behind it.
func (e *Evaluator) matchClusterRule(r *clusterRule, other *pod, ip netip.Addr) (match, string, int) {
	best, why, idx := matchNo, "", 0
	for j := range r.peers {
		p := &r.peers[j]
		if p.failClosed && r.effect == effAllow {
			continue
		}
		m, w := e.matchClusterPeer(p, other, ip)
		if m == matchYes {
			return matchYes, "", j
		}
		if m == matchMaybe && best == matchNo {
			best, why, idx = m, w, j
		}
	}
	return best, why, idx
}

func (cp *clusterPolicy) ruleMatch(r *clusterRule, d Direction, peer int, why string) ClusterRuleMatch {
	m := ClusterRuleMatch{
		Policy: cp.ref, Tier: cp.tier, Direction: d, Rule: r.index, RuleName: r.name,
		Action: r.action, Peer: peer, PeerText: r.peers[peer].text, PortText: "all ports",
		Uncertain: why,
	}
	if cp.hasPriority {
		p := cp.priority
		m.Priority = &p
	}
	if r.effect == effDeny && r.action != string(v1alpha2.ClusterNetworkPolicyRuleActionDeny) {
		m.Action = "Deny (fail closed: was " + r.action + ")"
	}
	if len(r.ports) > 0 {
		texts := make([]string, len(r.ports))
		for i, pt := range r.ports {
			texts[i] = pt.text
		}
		m.PortText = strings.Join(texts, ", ")
	}
	return m
}

// sortClusterPolicies orders a tier for evaluation: by priority, then kind and
// name so that same-priority groups list deterministically. A
// BaselineAdminNetworkPolicy, which has no priority, comes after the baseline
// ClusterNetworkPolicies: the API orders neither kind against the other.
func sortClusterPolicies(ps []*clusterPolicy) {
	sort.Slice(ps, func(i, j int) bool {
		a, b := ps[i], ps[j]
		if a.hasPriority != b.hasPriority {
			return a.hasPriority
		}
		if a.priority != b.priority {
			return a.priority < b.priority
		}
		if a.ref.Kind != b.ref.Kind {
			return a.ref.Kind < b.ref.Kind
		}
		return a.ref.Name < b.ref.Name
	})
}

func compileNode(n *corev1.Node) *node {
	out := &node{name: n.Name, labels: labels.Set(n.Labels)}
	for _, a := range n.Status.Addresses {
		if a.Type != corev1.NodeInternalIP && a.Type != corev1.NodeExternalIP {
			continue
		}
		if ip, err := netip.ParseAddr(a.Address); err == nil && !containsAddr(out.ips, ip.Unmap()) {
			out.ips = append(out.ips, ip.Unmap())
		}
	}
	return out
}
