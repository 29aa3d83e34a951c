package agent

import (
	"fmt"
	"log/slog"
	"strings"

	corev1 "k8s.io/api/core/v1"

	"github.com/xosprobe/xosprobe/agent/discovery"
	"github.com/xosprobe/xosprobe/agent/netpol"
	"github.com/xosprobe/xosprobe/probe"
)

// KubeSource turns the informer-backed discovery snapshot into the agent's View.
// Every agent in a cluster listens on the same ports.
type KubeSource struct {
	D     *discovery.Discovery
	Ports Ports
}

func (k KubeSource) View() View {
	s := k.D.Snapshot()
	v := View{Synced: k.D.Synced()}
	add := func(p discovery.Peer) {
		v.Peers = append(v.Peers, PeerInfo{Node: p.Node, OS: p.OS, Zone: p.Zone, Pod: p.Pod, IP: p.IP, Ports: k.Ports})
	}
	if s.Self.Node != "" {
		add(s.Self)
	}
	for _, p := range s.Peers {
		add(p)
	}
	for _, e := range s.Excluded {
		v.Excluded = append(v.Excluded, ExcludedPeer{Node: e.Node, OS: e.OS, Reason: e.Reason})
	}
	for _, svc := range s.Services {
		v.Services = append(v.Services, ServiceInfo{OS: svc.OS, Name: svc.Name, FQDN: svc.FQDN, ClusterIP: svc.ClusterIP, Port: int(svc.Port)})
	}
	return v
}

func (k KubeSource) Changes() <-chan struct{} { return k.D.Changes() }

var _ netpol.Lister = (*discovery.Discovery)(nil)

// PolicyExpecter takes expectations from the NetworkPolicy evaluator over the
// informer caches, rebuilt for each recomputation of the job set (discovery
// coalesces policy, namespace and agent pod changes into one notification).
// When it cannot evaluate (a pod not cached yet, an invalid policy) it falls
// back to the declared expectation and says why.
type PolicyExpecter struct {
	D         *discovery.Discovery
	Namespace string
	SelfPod   string
	Log       *slog.Logger
}

func (e PolicyExpecter) Changes() <-chan struct{} { return e.D.PolicyChanges() }

func (e PolicyExpecter) Expectations() ExpectFunc {
	ev, buildErr := netpol.FromLister(e.D)
	if buildErr != nil {
		e.Log.Warn("NetworkPolicy evaluator unavailable; expecting the declared verdicts", "error", buildErr)
	}
	return func(dst PeerInfo, port int) (probe.Verdict, string) {
		err := buildErr
		if err == nil {
			var a *netpol.Answer
			a, err = ev.Evaluate(netpol.Query{
				From: netpol.PodRef{Namespace: e.Namespace, Name: e.SelfPod},
				To:   netpol.PodRef{Namespace: e.Namespace, Name: dst.Pod},
				Port: netpol.Port{Number: int32(port)}, Protocol: corev1.ProtocolTCP,
			})
			if err == nil {
				switch a.Verdict {
				case netpol.Allow:
					return probe.VerdictAllow, deciding(a)
				case netpol.Deny:
					return probe.VerdictDeny, deciding(a)
				default:
					return probe.VerdictUnknown, unknownWhy(a)
				}
			}
		}
		v, why := declared(dst, port)
		return v, why + " (evaluator: " + err.Error() + ")"
	}
}

// unknownWhy names what makes an expectation unknown: the unmodelled policy
// kinds and objects, or the modelled rules that cannot be decided, followed by
// what the modelled policies alone decide.
func unknownWhy(a *netpol.Answer) string {
	var parts []string
	if len(a.Unmodelled) > 0 {
		objs := make([]string, len(a.Unmodelled))
		for i, f := range a.Unmodelled {
			objs[i] = f.String()
		}
		parts = append(parts, "unmodelled policies: "+strings.Join(objs, ", "))
	}
	for _, d := range []*netpol.DirectionResult{a.Egress, a.Ingress} {
		if d != nil && len(d.Uncertain) > 0 {
			parts = append(parts, fmt.Sprintf("%s of %s: %s", d.Direction, d.Pod, strings.Join(d.Uncertain, "; ")))
		}
	}
	return "UNKNOWN: " + strings.Join(parts, "; ") + "; modelled policies alone: " + deciding(a)
}

// deciding names the policies behind an answer, for the mismatch log.
func deciding(a *netpol.Answer) string {
	var parts []string
	for _, d := range []*netpol.DirectionResult{a.Egress, a.Ingress} {
		if d == nil {
			continue
		}
		var cluster []string
		for _, c := range d.Cluster {
			s := fmt.Sprintf("%s rule %d %s", c.Policy, c.Rule, c.Action)
			if c.RuleName != "" {
				s = fmt.Sprintf("%s rule %d (%s) %s", c.Policy, c.Rule, c.RuleName, c.Action)
			}
			cluster = append(cluster, s)
		}
		switch {
		case d.DecidedBy == netpol.LayerAdmin || d.DecidedBy == netpol.LayerBaseline:
			parts = append(parts, fmt.Sprintf("%s of %s %s by %s", d.Direction, d.Pod, map[bool]string{true: "allowed", false: "denied"}[d.Allowed], strings.Join(cluster, ", then ")))
			continue
		case len(cluster) > 0:
			parts = append(parts, fmt.Sprintf("%s of %s passed on by %s", d.Direction, d.Pod, strings.Join(cluster, ", ")))
		}
		switch {
		case d.Unrestricted():
			parts = append(parts, fmt.Sprintf("%s of %s: no policy selects it", d.Direction, d.Pod))
		case d.Allowed:
			var rules []string
			for _, m := range d.Matches {
				rules = append(rules, fmt.Sprintf("%s rule %d", m.Policy.Name, m.Rule))
			}
			parts = append(parts, fmt.Sprintf("%s of %s allowed by %s", d.Direction, d.Pod, strings.Join(rules, ", ")))
		default:
			var pols []string
			for _, s := range d.Selecting {
				pols = append(pols, s.Policy.Name)
			}
			parts = append(parts, fmt.Sprintf("%s of %s isolated by %s and no rule allows it", d.Direction, d.Pod, strings.Join(pols, ", ")))
		}
	}
	return string(a.Modelled) + ": " + strings.Join(parts, "; ")
}
