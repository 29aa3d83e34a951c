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
}

// DirectionResult is one side of the decision: the source pod's egress or the
// destination pod's ingress.
type DirectionResult struct {
	Direction Direction `json:"direction"`
	// Pod is the pod whose policies were consulted.
	Pod     PodRef `json:"pod"`
	Allowed bool   `json:"allowed"`
	// Selecting lists every policy that selects Pod for Direction. Empty means
	// the pod is unrestricted in this direction.
	Selecting []SelectingPolicy `json:"selecting"`
	// Matches lists every rule that allows the traffic, in policy name order.
	// Empty with a non-empty Selecting means the traffic is denied.
	Matches []RuleMatch `json:"matches"`
}

// Unrestricted reports whether no policy selects the pod for this direction.
func (d *DirectionResult) Unrestricted() bool { return len(d.Selecting) == 0 }

// SelectingPolicy is a policy that selects the pod for a direction, with the number
// of rules it has for that direction (0 means it only isolates the pod).
type SelectingPolicy struct {
	Policy PolicyRef `json:"policy"`
	Rules  int       `json:"rules"`
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
