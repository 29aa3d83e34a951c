package netpol

import (
	"net/netip"
	"strconv"

	corev1 "k8s.io/api/core/v1"
)

// PodRef names a pod.
type PodRef struct {
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
}

func (r PodRef) String() string { return r.Namespace + "/" + r.Name }

// IsZero reports whether r names no pod.
func (r PodRef) IsZero() bool { return r.Namespace == "" && r.Name == "" }

// Port is a destination port, given either by number or by the name of a container
// port on the destination pod.
type Port struct {
	Number int32  `json:"number,omitempty"`
	Name   string `json:"name,omitempty"`
}

func (p Port) String() string {
	if p.Name != "" {
		return p.Name
	}
	return strconv.Itoa(int(p.Number))
}

// Query asks whether traffic from From (a pod) or FromIP (an address outside the
// cluster) to the pod To on Port/Protocol is allowed. Exactly one of From and FromIP
// is set. An empty Protocol means TCP.
type Query struct {
	From     PodRef
	FromIP   netip.Addr
	To       PodRef
	Port     Port
	Protocol corev1.Protocol
}

// Verdict is the answer to a Query.
type Verdict string

const (
	Allow Verdict = "ALLOW"
	Deny  Verdict = "DENY"
	// Unknown is the honest answer when something that decides the traffic
	// cannot be seen: a policy kind this package does not model, a domainNames
	// peer, or same-priority cluster policies that disagree.
	Unknown Verdict = "UNKNOWN"
)

// Direction is the side of the connection a policy rule applies to.
type Direction string

const (
	Egress  Direction = "egress"
	Ingress Direction = "ingress"
)

// PolicyRef names a NetworkPolicy.
type PolicyRef struct {
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
}

func (r PolicyRef) String() string { return r.Namespace + "/" + r.Name }

// Endpoint is one end of the queried connection.
type Endpoint struct {
	// Pod is empty for an external source.
	Pod PodRef `json:"pod,omitzero"`
	// IP is the address ipBlock peers were matched against; invalid (empty in
	// JSON) when the pod has no IP.
	IP netip.Addr `json:"ip,omitzero"`
}

func (e Endpoint) String() string {
	var s string
	if e.Pod.IsZero() {
		s = "ip " + e.IP.String()
	} else {
		s = "pod " + e.Pod.String()
		if e.IP.IsValid() {
			s += " (" + e.IP.String() + ")"
		}
	}
	return s
}

// Answer is the verdict with the reasons for it.
type Answer struct {
	Verdict     Verdict         `json:"verdict"`
	Source      Endpoint        `json:"source"`
	Destination Endpoint        `json:"destination"`
	Protocol    corev1.Protocol `json:"protocol"`
	// Port is the destination port number; PortName is set when the query named it.
	Port     int32  `json:"port"`
	PortName string `json:"portName,omitempty"`
	// Egress is the source pod's side; nil for an external source, which no
	// policy can restrict.
	Egress  *DirectionResult `json:"egress,omitempty"`
	Ingress *DirectionResult `json:"ingress"`
	// Notes are caveats where the API leaves behaviour to the network plugin.
	Notes []string `json:"notes,omitempty"`
	// Modelled is what the modelled policies (NetworkPolicy and the
	// policy.networking.k8s.io kinds) alone decide. It differs from Verdict
	// only when Unmodelled makes Verdict UNKNOWN.
	Modelled Verdict `json:"modelledVerdict"`
	// Unmodelled lists the enforcing policy objects of kinds this package does
	// not model that apply to the source's or the destination's namespace (or
	// to every pod, when cluster-scoped); any makes Verdict UNKNOWN.
	Unmodelled []ForeignPolicy `json:"unmodelled,omitempty"`
	// NotEnforcing lists unmodelled objects that were found and ignored because
	// they enforce nothing (staged policies, Calico tiers).
	NotEnforcing []ForeignPolicy `json:"notEnforcing,omitempty"`
}

// DirectionResult is one side of the decision: the source pod's egress or the
// destination pod's ingress.
type DirectionResult struct {
	Direction Direction `json:"direction"`
	// Pod is the pod whose policies were consulted.
	Pod PodRef `json:"pod"`
	// Allowed is Verdict == ALLOW.
	Allowed bool    `json:"allowed"`
	Verdict Verdict `json:"verdict"`
	// DecidedBy is the layer that decided, following the rules that certainly
	// match: the Admin tier, NetworkPolicy, the Baseline tier, or Default (no
	// policy of any layer has a say: allowed).
	DecidedBy Layer `json:"decidedBy"`
	// Cluster lists, in evaluation order, the rules of cluster policies
	// (ClusterNetworkPolicy, AdminNetworkPolicy, BaselineAdminNetworkPolicy)
	// that match or may match this traffic: the deciding ones and the Pass
	// rules that handed it on.
	Cluster []ClusterRuleMatch `json:"cluster,omitempty"`
	// Uncertain says why Verdict is UNKNOWN when the modelled policies
	// themselves cannot decide.
	Uncertain []string `json:"uncertain,omitempty"`
	// Selecting lists every NetworkPolicy that selects Pod for Direction, when
	// evaluation reached the NetworkPolicy layer. Empty means no NetworkPolicy
	// restricts the pod in this direction.
	Selecting []SelectingPolicy `json:"selecting"`
	// Matches lists every rule that allows the traffic, in policy name order.
	// Empty with a non-empty Selecting means the traffic is denied.
	Matches []RuleMatch `json:"matches"`
}

// Unrestricted reports whether no policy of any layer has a say on this
// direction.
func (d *DirectionResult) Unrestricted() bool { return d.DecidedBy == LayerDefault }

// Layer is a stage of policy evaluation, in the order the API defines.
type Layer string

const (
	LayerAdmin         Layer = "AdminTier"
	LayerNetworkPolicy Layer = "NetworkPolicy"
	LayerBaseline      Layer = "BaselineTier"
	LayerDefault       Layer = "Default"
)

// SelectingPolicy is a policy that selects the pod for a direction, with the number
// of rules it has for that direction (0 means it only isolates the pod).
type SelectingPolicy struct {
	Policy PolicyRef `json:"policy"`
	Rules  int       `json:"rules"`
	// Misses says, for each rule, why it does not match this traffic; set
	// when no rule of the policy matches.
	Misses []RuleMiss `json:"misses,omitempty"`
}

// RuleMiss is why one NetworkPolicy rule does not match: its peers (Peers is
// set) or its ports (Ports is set) exclude the traffic.
type RuleMiss struct {
	Rule  int    `json:"rule"`
	Peers string `json:"peers,omitempty"`
	Ports string `json:"ports,omitempty"`
}

// ClusterPolicyRef names a cluster-scoped policy of policy.networking.k8s.io.
type ClusterPolicyRef struct {
	// Kind is ClusterNetworkPolicy, AdminNetworkPolicy or BaselineAdminNetworkPolicy.
	Kind string `json:"kind"`
	Name string `json:"name"`
}

func (r ClusterPolicyRef) String() string { return r.Kind + "/" + r.Name }

// ClusterRuleMatch is a rule of a cluster policy that matches (or, with
// Uncertain set, may match) the traffic. Peer is the index of the matching peer.
type ClusterRuleMatch struct {
	Policy    ClusterPolicyRef `json:"policy"`
	Tier      Layer            `json:"tier"`
	Priority  *int32           `json:"priority,omitempty"` // nil for BaselineAdminNetworkPolicy
	Direction Direction        `json:"direction"`
	Rule      int              `json:"rule"`
	RuleName  string           `json:"ruleName,omitempty"`
	// Action is as the object writes it: Accept, Allow, Deny or Pass.
	Action   string `json:"action"`
	Peer     int    `json:"peer"`
	PeerText string `json:"peerText"`
	PortText string `json:"portText"`
	// Uncertain says why the match cannot be decided from the objects.
	Uncertain string `json:"uncertain,omitempty"`
}

// ForeignPolicy is a policy object of a kind this package does not model.
type ForeignPolicy struct {
	Group string `json:"group"`
	Kind  string `json:"kind"`
	// Namespace is empty for cluster-scoped objects, which apply to every pod.
	Namespace string `json:"namespace,omitempty"`
	// Name is empty when the objects of the kind could not be listed: then
	// any of them may exist, and Reason says why they could not be seen.
	Name   string `json:"name,omitempty"`
	Reason string `json:"reason,omitempty"`
}

func (f ForeignPolicy) String() string {
	s := f.Kind
	if f.Group != "" {
		s += "." + f.Group
	}
	switch {
	case f.Name == "":
		s += " (objects not visible)"
	case f.Namespace != "":
		s += " " + f.Namespace + "/" + f.Name
	default:
		s += " " + f.Name
	}
	if f.Reason != "" {
		s += ": " + f.Reason
	}
	return s
}

// RuleMatch identifies the rule, peer and port entry that allowed the traffic.
// Peer is -1 when the rule has no peers (all peers); Port is -1 when it has no
// ports (all ports). PeerText and PortText describe those entries for humans.
type RuleMatch struct {
	Policy    PolicyRef `json:"policy"`
	Direction Direction `json:"direction"`
	Rule      int       `json:"rule"`
	Peer      int       `json:"peer"`
	Port      int       `json:"port"`
	PeerText  string    `json:"peerText"`
	PortText  string    `json:"portText"`
}
