// Package netpol evaluates Kubernetes network policies: networking.k8s.io/v1
// NetworkPolicy and the cluster policies of sigs.k8s.io/network-policy-api. Given a
// snapshot of Namespaces, Pods, policies (and optionally Nodes) it says whether traffic from a pod
// (or from an IP outside the cluster) to a destination pod on a port is allowed, and
// which policies and rules decided it. The netpol-allow and netpol-deny checks take
// their expected verdict from here, and `xosprobe policy explain` prints it.
//
// The semantics are those of the v1 API, not of any one network plugin:
//
//   - A policy selects pods in its own namespace only (an empty podSelector selects
//     all of them). A pod that no policy selects for a direction is unrestricted in
//     that direction; once selected, traffic passes only if at least one rule of at
//     least one selecting policy allows it. Rules and policies are a union: nothing
//     denies explicitly.
//   - Traffic between two pods needs both the source's egress and the destination's
//     ingress. Traffic from an external IP is judged by the destination's ingress
//     only, and only ipBlock peers (or rules without peers) can match it.
//   - policyTypes defaults as the API server defaults it: Ingress always, plus Egress
//     when spec.egress has rules. Port protocols default to TCP, namespaces carry the
//     kubernetes.io/metadata.name label the API server adds.
//   - ipBlock peers are matched against pod IPs too. For a dual-stack pod the address
//     of the family the connection uses is the one matched (see Evaluate).
//   - Named ports are resolved against the destination pod's container ports (regular
//     containers and restartable init containers, i.e. sidecars), in egress rules as
//     in ingress rules.
//
// Cluster policies (ClusterNetworkPolicy v1alpha2/v1beta1, AdminNetworkPolicy and
// BaselineAdminNetworkPolicy v1alpha1) are evaluated per direction in the order the
// API defines: the Admin tier (CNP tier Admin and ANP, one priority scale, lower
// first; within a policy the first matching rule; Accept/Allow and Deny are final,
// Pass hands on), then NetworkPolicy (final for a pod it selects), then the Baseline
// tier (CNP tier Baseline, then the BANP, which the API does not order against
// them), then the default: allowed. Host-network pods are neither subjects nor
// namespaces/pods peers. The API lets an implementation apply either of two
// same-priority policies that match: when they disagree the answer is UNKNOWN. So is
// a rule whose match the objects cannot decide (domainNames peers; nodes peers
// without Node objects; networks peers for a pod without an IP) when it could
// change the outcome. A peer with no field this package knows (a newer CRD) fails
// closed as the API says: it matches nothing in an Accept rule and turns a Deny or
// Pass rule into a Deny of everything.
//
// Policy objects of kinds this package does not model (ForeignKind: Calico,
// Cilium, Antrea, any other *NetworkPolicy kind) are inputs too: one that applies to
// the source's or the destination's namespace, or a cluster-scoped one, makes the
// verdict UNKNOWN; Answer.Modelled keeps what the modelled policies alone decide.
// Staged policies and tiers enforce nothing and are only listed (Answer.NotEnforcing).
//
// What the API leaves to the implementation is not modelled: traffic from the pod's
// own node is always allowed by the spec but is not a query this package answers, and
// hostNetwork pods get the same treatment as other pods (Answer.Notes says so when one
// is involved, because plugins differ there).
//
// Building the index (New, FromLister, Snapshot.Evaluator) is separate from querying.
// Evaluator.Evaluate returns the verdict with its explanation (Answer.Text, and
// Answer.WriteJSON, render it); Evaluator.Verdict is the allocation-free fast path.
// An Evaluator is immutable, so queries are safe for concurrent use; to follow a
// changing cluster, build a new Evaluator (tens of milliseconds for 10,000 pods) and
// swap it in.
//
// Load reads objects files (YAML or JSON, as kubectl writes them) for
// `xosprobe policy explain`; ParseQuery parses its NS/POD, IP and PORT[/PROTO]
// arguments.
package netpol
