package netpol

import "strings"

// Policy APIs this package does not model. Their objects are still inputs: an
// enforcing one that applies to a pair makes the verdict UNKNOWN rather than a
// guess that ignores it.

const (
	groupNetworking       = "networking.k8s.io"
	groupPolicyNetworking = "policy.networking.k8s.io"
)

// ForeignKind reports whether objects of group/kind are network policies this
// package does not model and, when they are, whether they enforce anything:
// notEnforcing is empty for an enforcing kind and otherwise says why the kind
// is ignored. The modelled kinds (networking.k8s.io NetworkPolicy and the
// policy.networking.k8s.io kinds) are not foreign.
//
// Known kinds: Calico (projectcalico.org, crd.projectcalico.org), Cilium
// (cilium.io) and Antrea (crd.antrea.io). Any other kind whose name contains
// "NetworkPolicy" is taken for a policy too, because missing one would make a
// verdict wrong while counting one only makes it unknown.
func ForeignKind(group, kind string) (isPolicy bool, notEnforcing string) {
	switch group {
	case "extensions":
		// The retired home of NetworkPolicy: the loader rejects its apiVersion.
		if kind == "NetworkPolicy" {
			return false, ""
		}
	case groupNetworking:
		if kind == "NetworkPolicy" {
			return false, ""
		}
	case groupPolicyNetworking:
		switch kind {
		case kindCNP, kindANP, kindBANP:
			return false, ""
		}
	case "projectcalico.org", "crd.projectcalico.org", "crd.antrea.io":
		if kind == "Tier" {
			return true, "a tier orders policies and enforces nothing by itself"
		}
	case "cilium.io":
		// Cilium's audit mode is set on the agent or the endpoint, not on a
		// policy object, so a Cilium policy counts as enforcing.
		switch kind {
		case "CiliumNetworkPolicy", "CiliumClusterwideNetworkPolicy":
			return true, ""
		}
	}
	if !strings.Contains(kind, "NetworkPolicy") {
		return false, ""
	}
	if strings.HasPrefix(kind, "Staged") {
		return true, "a staged policy reports what it would do and enforces nothing"
	}
	return true, ""
}

// foreignFor returns the enforcing foreign objects that apply to traffic
// between pods of namespaces srcNS (empty for an external source) and dstNS.
func (e *Evaluator) foreignFor(srcNS, dstNS string) []ForeignPolicy {
	var out []ForeignPolicy
	for _, f := range e.foreign {
		if f.Namespace == "" || f.Namespace == dstNS || (srcNS != "" && f.Namespace == srcNS) {
			out = append(out, f)
		}
	}
	return out
}

func (e *Evaluator) notEnforcingFor(srcNS, dstNS string) []ForeignPolicy {
	var out []ForeignPolicy
	for _, f := range e.ignored {
		if f.Namespace == "" || f.Namespace == dstNS || (srcNS != "" && f.Namespace == srcNS) {
			out = append(out, f)
		}
	}
	return out
}
