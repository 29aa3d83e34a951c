package netpol

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/network-policy-api/apis/v1alpha1"
	"sigs.k8s.io/network-policy-api/apis/v1alpha2"
	"sigs.k8s.io/network-policy-api/apis/v1beta1"
	"sigs.k8s.io/yaml"
)

func cnp(t testing.TB, name, spec string) *v1alpha2.ClusterNetworkPolicy {
	t.Helper()
	p := &v1alpha2.ClusterNetworkPolicy{ObjectMeta: metav1.ObjectMeta{Name: name}}
	require.NoError(t, yaml.UnmarshalStrict([]byte(spec), &p.Spec), spec)
	return p
}

func anp(t testing.TB, name, spec string) *v1alpha1.AdminNetworkPolicy {
	t.Helper()
	p := &v1alpha1.AdminNetworkPolicy{ObjectMeta: metav1.ObjectMeta{Name: name}}
	require.NoError(t, yaml.UnmarshalStrict([]byte(spec), &p.Spec), spec)
	return p
}

func banp(t testing.TB, spec string) *v1alpha1.BaselineAdminNetworkPolicy {
	t.Helper()
	p := &v1alpha1.BaselineAdminNetworkPolicy{ObjectMeta: metav1.ObjectMeta{Name: "default"}}
	require.NoError(t, yaml.UnmarshalStrict([]byte(spec), &p.Spec), spec)
	return p
}

// Rules used across cases, in the conformance suite's spirit: a subject
// namespace, one peer, one port.
const (
	admitFromB = `{tier: Admin, priority: 10, subject: {namespaces: {matchLabels: {team: a}}},
		ingress: [{name: from-b, action: Accept, from: [{namespaces: {matchLabels: {team: b}}}]}]}`
	denyFromB80 = `{tier: Admin, priority: 10, subject: {namespaces: {matchLabels: {team: a}}},
		ingress: [{name: deny-b-80, action: Deny, from: [{namespaces: {matchLabels: {team: b}}}], protocols: [{tcp: {destinationPort: {number: 80}}}]}]}`
	passFromB = `{tier: Admin, priority: 10, subject: {namespaces: {matchLabels: {team: a}}},
		ingress: [{name: pass-b, action: Pass, from: [{namespaces: {matchLabels: {team: b}}}]}]}`
	baselineDenyAll = `{tier: Baseline, priority: 0, subject: {namespaces: {}},
		ingress: [{name: deny-all, action: Deny, from: [{namespaces: {}}]}]}`
	defaultDenyA = `{podSelector: {}}`
)

func TestClusterPolicySemantics(t *testing.T) {
	from := func(ns, name string) Query {
		return Query{From: PodRef{ns, name}}
	}
	type want struct {
		verdict  Verdict
		decided  Layer // of the direction named by dir
		dir      Direction
		deciding string // "Kind/name rule N action" of the first cluster rule, if any
	}
	cases := []struct {
		name  string
		in    func(t *testing.T) ClusterInputs
		nps   []string // "ns|spec"
		query Query
		to    PodRef
		port  Port
		proto corev1.Protocol
		want  want
	}{
		{
			name: "admin deny on the rule's port",
			in: func(t *testing.T) ClusterInputs {
				return ClusterInputs{ClusterNetworkPolicies: cnps(cnp(t, "deny-b", denyFromB80))}
			},
			query: from("b", "x"), to: PodRef{"a", "x"}, port: Port{Number: 80},
			want: want{Deny, LayerAdmin, Ingress, "ClusterNetworkPolicy/deny-b rule 0 Deny"},
		},
		{
			name: "admin deny leaves other ports to the default",
			in: func(t *testing.T) ClusterInputs {
				return ClusterInputs{ClusterNetworkPolicies: cnps(cnp(t, "deny-b", denyFromB80))}
			},
			query: from("b", "x"), to: PodRef{"a", "x"}, port: Port{Number: 53}, proto: corev1.ProtocolUDP,
			want: want{Allow, LayerDefault, Ingress, ""},
		},
		{
			name: "admin deny does not apply to other source namespaces",
			in: func(t *testing.T) ClusterInputs {
				return ClusterInputs{ClusterNetworkPolicies: cnps(cnp(t, "deny-b", denyFromB80))}
			},
			query: from("c", "w"), to: PodRef{"a", "x"}, port: Port{Number: 80},
			want: want{Allow, LayerDefault, Ingress, ""},
		},
		{
			name: "admin accept overrides a NetworkPolicy that isolates the pod",
			in: func(t *testing.T) ClusterInputs {
				return ClusterInputs{ClusterNetworkPolicies: cnps(cnp(t, "admit-b", admitFromB))}
			},
			nps:   []string{"a|" + defaultDenyA},
			query: from("b", "x"), to: PodRef{"a", "x"}, port: Port{Number: 80},
			want: want{Allow, LayerAdmin, Ingress, "ClusterNetworkPolicy/admit-b rule 0 Accept"},
		},
		{
			name: "pass hands over to NetworkPolicy",
			in: func(t *testing.T) ClusterInputs {
				return ClusterInputs{ClusterNetworkPolicies: cnps(cnp(t, "pass-b", passFromB), cnp(t, "baseline", baselineDenyAll))}
			},
			nps:   []string{"a|{podSelector: {}, ingress: [{from: [{namespaceSelector: {matchLabels: {team: b}}}]}]}"},
			query: from("b", "x"), to: PodRef{"a", "x"}, port: Port{Number: 80},
			want: want{Allow, LayerNetworkPolicy, Ingress, "ClusterNetworkPolicy/pass-b rule 0 Pass"},
		},
		{
			name: "pass with no NetworkPolicy reaches the baseline tier",
			in: func(t *testing.T) ClusterInputs {
				return ClusterInputs{ClusterNetworkPolicies: cnps(cnp(t, "pass-b", passFromB), cnp(t, "baseline", baselineDenyAll))}
			},
			query: from("b", "x"), to: PodRef{"a", "x"}, port: Port{Number: 80},
			want: want{Deny, LayerBaseline, Ingress, "ClusterNetworkPolicy/pass-b rule 0 Pass"},
		},
		{
			name: "pass with nothing after it is allowed by default",
			in: func(t *testing.T) ClusterInputs {
				return ClusterInputs{ClusterNetworkPolicies: cnps(cnp(t, "pass-b", passFromB))}
			},
			query: from("b", "x"), to: PodRef{"a", "x"}, port: Port{Number: 80},
			want: want{Allow, LayerDefault, Ingress, "ClusterNetworkPolicy/pass-b rule 0 Pass"},
		},
		{
			name: "a NetworkPolicy that selects the pod overrides the baseline",
			in: func(t *testing.T) ClusterInputs {
				return ClusterInputs{ClusterNetworkPolicies: cnps(cnp(t, "baseline", baselineDenyAll))}
			},
			nps:   []string{"a|{podSelector: {}, ingress: [{}]}"},
			query: from("b", "x"), to: PodRef{"a", "x"}, port: Port{Number: 80},
			want: want{Allow, LayerNetworkPolicy, Ingress, ""},
		},
		{
			name: "baseline deny applies where no NetworkPolicy selects",
			in: func(t *testing.T) ClusterInputs {
				return ClusterInputs{ClusterNetworkPolicies: cnps(cnp(t, "baseline", baselineDenyAll))}
			},
			query: from("b", "x"), to: PodRef{"a", "x"}, port: Port{Number: 80},
			want: want{Deny, LayerBaseline, Ingress, "ClusterNetworkPolicy/baseline rule 0 Deny"},
		},
		{
			name: "lower priority number wins",
			in: func(t *testing.T) ClusterInputs {
				return ClusterInputs{ClusterNetworkPolicies: cnps(
					cnp(t, "admit", strings.Replace(admitFromB, "priority: 10", "priority: 20", 1)),
					cnp(t, "deny", strings.Replace(denyFromB80, "priority: 10", "priority: 5", 1)))}
			},
			query: from("b", "x"), to: PodRef{"a", "x"}, port: Port{Number: 80},
			want: want{Deny, LayerAdmin, Ingress, "ClusterNetworkPolicy/deny rule 0 Deny"},
		},
		{
			name: "the earlier rule of a policy wins",
			in: func(t *testing.T) ClusterInputs {
				return ClusterInputs{ClusterNetworkPolicies: cnps(cnp(t, "ordered", `{tier: Admin, priority: 1, subject: {namespaces: {}},
					ingress: [{name: allow-x, action: Accept, from: [{pods: {namespaceSelector: {}, podSelector: {matchLabels: {app: x}}}}]},
					          {name: deny-all, action: Deny, from: [{namespaces: {}}]}]}`))}
			},
			query: from("b", "x"), to: PodRef{"a", "y"}, port: Port{Number: 8080},
			want: want{Allow, LayerAdmin, Ingress, "ClusterNetworkPolicy/ordered rule 0 Accept"},
		},
		{
			name: "same priority, disjoint peers: both apply",
			in: func(t *testing.T) ClusterInputs {
				return ClusterInputs{ClusterNetworkPolicies: cnps(
					cnp(t, "deny-b", denyFromB80),
					cnp(t, "deny-c", strings.ReplaceAll(denyFromB80, "team: b", "kubernetes.io/metadata.name: c")))}
			},
			query: from("c", "w"), to: PodRef{"a", "x"}, port: Port{Number: 80},
			want: want{Deny, LayerAdmin, Ingress, "ClusterNetworkPolicy/deny-c rule 0 Deny"},
		},
		{
			name: "same priority, conflicting actions: unknown",
			in: func(t *testing.T) ClusterInputs {
				return ClusterInputs{ClusterNetworkPolicies: cnps(cnp(t, "admit-b", admitFromB), cnp(t, "deny-b", denyFromB80))}
			},
			query: from("b", "x"), to: PodRef{"a", "x"}, port: Port{Number: 80},
			want: want{Unknown, LayerAdmin, Ingress, "ClusterNetworkPolicy/admit-b rule 0 Accept"},
		},
		{
			name: "egress accept still needs the destination's ingress",
			in: func(t *testing.T) ClusterInputs {
				return ClusterInputs{ClusterNetworkPolicies: cnps(cnp(t, "egress-ok", `{tier: Admin, priority: 1, subject: {namespaces: {}},
					egress: [{action: Accept, to: [{namespaces: {}}]}]}`))}
			},
			nps:   []string{"a|" + defaultDenyA},
			query: from("b", "x"), to: PodRef{"a", "x"}, port: Port{Number: 80},
			want: want{Deny, LayerNetworkPolicy, Ingress, ""},
		},
		{
			name: "egress deny to a network",
			in: func(t *testing.T) ClusterInputs {
				return ClusterInputs{ClusterNetworkPolicies: cnps(cnp(t, "no-b-net", `{tier: Admin, priority: 1, subject: {namespaces: {matchLabels: {team: a}}},
					egress: [{name: b-net, action: Deny, to: [{networks: ["10.0.1.0/24"]}]}]}`))}
			},
			query: from("a", "x"), to: PodRef{"b", "z"}, port: Port{Number: 443},
			want: want{Deny, LayerAdmin, Egress, "ClusterNetworkPolicy/no-b-net rule 0 Deny"},
		},
		{
			name: "egress deny to a network spares other addresses",
			in: func(t *testing.T) ClusterInputs {
				return ClusterInputs{ClusterNetworkPolicies: cnps(cnp(t, "no-b-net", `{tier: Admin, priority: 1, subject: {namespaces: {matchLabels: {team: a}}},
					egress: [{name: b-net, action: Deny, to: [{networks: ["10.0.1.0/24"]}]}]}`))}
			},
			query: from("a", "x"), to: PodRef{"c", "w"}, port: Port{Number: 443},
			want: want{Allow, LayerDefault, Egress, ""},
		},
		{
			name: "port range and protocol",
			in: func(t *testing.T) ClusterInputs {
				return ClusterInputs{ClusterNetworkPolicies: cnps(cnp(t, "udp-range", `{tier: Admin, priority: 1, subject: {namespaces: {}},
					ingress: [{action: Deny, from: [{namespaces: {}}], protocols: [{udp: {destinationPort: {range: {start: 50, end: 60}}}}]}]}`))}
			},
			query: from("b", "x"), to: PodRef{"a", "x"}, port: Port{Number: 53}, proto: corev1.ProtocolUDP,
			want: want{Deny, LayerAdmin, Ingress, "ClusterNetworkPolicy/udp-range rule 0 Deny"},
		},
		{
			name: "port range does not match TCP",
			in: func(t *testing.T) ClusterInputs {
				return ClusterInputs{ClusterNetworkPolicies: cnps(cnp(t, "udp-range", `{tier: Admin, priority: 1, subject: {namespaces: {}},
					ingress: [{action: Deny, from: [{namespaces: {}}], protocols: [{udp: {destinationPort: {range: {start: 50, end: 60}}}}]}]}`))}
			},
			query: from("b", "x"), to: PodRef{"a", "x"}, port: Port{Number: 53},
			want: want{Allow, LayerDefault, Ingress, ""},
		},
		{
			name: "named port resolves on the destination",
			in: func(t *testing.T) ClusterInputs {
				return ClusterInputs{ClusterNetworkPolicies: cnps(cnp(t, "sctp-named", `{tier: Admin, priority: 1, subject: {namespaces: {}},
					ingress: [{action: Deny, from: [{namespaces: {}}], protocols: [{destinationNamedPort: assoc}]}]}`))}
			},
			query: from("b", "x"), to: PodRef{"a", "x"}, port: Port{Number: 9000}, proto: corev1.ProtocolSCTP,
			want: want{Deny, LayerAdmin, Ingress, "ClusterNetworkPolicy/sctp-named rule 0 Deny"},
		},
		{
			name: "a domainNames accept before a deny is unknown",
			in: func(t *testing.T) ClusterInputs {
				return ClusterInputs{ClusterNetworkPolicies: cnps(cnp(t, "fqdn", `{tier: Admin, priority: 1, subject: {namespaces: {}},
					egress: [{name: allow-api, action: Accept, to: [{domainNames: ["api.example.com"]}]},
					         {name: deny-rest, action: Deny, to: [{networks: ["0.0.0.0/0"]}]}]}`))}
			},
			query: from("a", "x"), to: PodRef{"b", "x"}, port: Port{Number: 443},
			want: want{Unknown, LayerAdmin, Egress, "ClusterNetworkPolicy/fqdn rule 0 Accept"},
		},
		{
			name: "a domainNames accept with nothing after it changes nothing",
			in: func(t *testing.T) ClusterInputs {
				return ClusterInputs{ClusterNetworkPolicies: cnps(cnp(t, "fqdn", `{tier: Admin, priority: 1, subject: {namespaces: {}},
					egress: [{name: allow-api, action: Accept, to: [{domainNames: ["*.example.com"]}]}]}`))}
			},
			query: from("a", "x"), to: PodRef{"b", "x"}, port: Port{Number: 443},
			want: want{Allow, LayerDefault, Egress, "ClusterNetworkPolicy/fqdn rule 0 Accept"},
		},
		{
			name: "nodes peer matches a host-network pod on a labelled node",
			in: func(t *testing.T) ClusterInputs {
				return ClusterInputs{Nodes: []*corev1.Node{mkNode("n1", "10.1.0.1", map[string]string{"role": "infra"})},
					ClusterNetworkPolicies: cnps(cnp(t, "no-infra", noInfraNodes))}
			},
			query: from("a", "x"), to: PodRef{"c", "host"}, port: Port{Number: 10250},
			want: want{Deny, LayerAdmin, Egress, "ClusterNetworkPolicy/no-infra rule 0 Deny"},
		},
		{
			name: "nodes peer on a node without the label",
			in: func(t *testing.T) ClusterInputs {
				return ClusterInputs{Nodes: []*corev1.Node{mkNode("n1", "10.1.0.1", map[string]string{"role": "worker"})},
					ClusterNetworkPolicies: cnps(cnp(t, "no-infra", noInfraNodes))}
			},
			query: from("a", "x"), to: PodRef{"c", "host"}, port: Port{Number: 10250},
			want: want{Allow, LayerDefault, Egress, ""},
		},
		{
			name: "nodes peer without Node objects is unknown for a host-network destination",
			in: func(t *testing.T) ClusterInputs {
				return ClusterInputs{ClusterNetworkPolicies: cnps(cnp(t, "no-infra", noInfraNodes))}
			},
			query: from("a", "x"), to: PodRef{"c", "host"}, port: Port{Number: 10250},
			want: want{Unknown, LayerDefault, Egress, "ClusterNetworkPolicy/no-infra rule 0 Deny"},
		},
		{
			name: "nodes peer never matches a pod address",
			in: func(t *testing.T) ClusterInputs {
				return ClusterInputs{ClusterNetworkPolicies: cnps(cnp(t, "no-infra", noInfraNodes))}
			},
			query: from("a", "x"), to: PodRef{"b", "x"}, port: Port{Number: 10250},
			want: want{Allow, LayerDefault, Egress, ""},
		},
		{
			name: "host-network pods are not subjects",
			in: func(t *testing.T) ClusterInputs {
				return ClusterInputs{ClusterNetworkPolicies: cnps(cnp(t, "baseline", baselineDenyAll))}
			},
			query: from("a", "x"), to: PodRef{"c", "host"}, port: Port{Number: 10250},
			want: want{Allow, LayerDefault, Ingress, ""},
		},
		{
			name: "AdminNetworkPolicy allow, same tier as ClusterNetworkPolicy",
			in: func(t *testing.T) ClusterInputs {
				return ClusterInputs{AdminNetworkPolicies: []*v1alpha1.AdminNetworkPolicy{anp(t, "anp-allow", `{priority: 3, subject: {namespaces: {matchLabels: {team: a}}},
					ingress: [{name: b-web, action: Allow, from: [{namespaces: {matchLabels: {team: b}}}], ports: [{portNumber: {protocol: TCP, port: 80}}]}]}`)},
					ClusterNetworkPolicies: cnps(cnp(t, "deny-b", denyFromB80))}
			},
			query: from("b", "x"), to: PodRef{"a", "x"}, port: Port{Number: 80},
			want: want{Allow, LayerAdmin, Ingress, "AdminNetworkPolicy/anp-allow rule 0 Allow"},
		},
		{
			name: "AdminNetworkPolicy pass then BaselineAdminNetworkPolicy deny",
			in: func(t *testing.T) ClusterInputs {
				return ClusterInputs{AdminNetworkPolicies: []*v1alpha1.AdminNetworkPolicy{anp(t, "anp-pass", `{priority: 3, subject: {pods: {namespaceSelector: {}, podSelector: {matchLabels: {app: x}}}},
					ingress: [{action: Pass, from: [{namespaces: {}}], ports: [{portRange: {start: 70, end: 90}}]}]}`)},
					BaselineAdminNetworkPolicies: []*v1alpha1.BaselineAdminNetworkPolicy{banp(t, `{subject: {namespaces: {}},
					ingress: [{name: deny-all, action: Deny, from: [{namespaces: {}}]}]}`)}}
			},
			query: from("b", "x"), to: PodRef{"a", "x"}, port: Port{Number: 80},
			want: want{Deny, LayerBaseline, Ingress, "AdminNetworkPolicy/anp-pass rule 0 Pass"},
		},
		{
			name: "BaselineAdminNetworkPolicy egress to a network",
			in: func(t *testing.T) ClusterInputs {
				return ClusterInputs{BaselineAdminNetworkPolicies: []*v1alpha1.BaselineAdminNetworkPolicy{banp(t, `{subject: {namespaces: {}},
					egress: [{name: a-net, action: Deny, to: [{networks: ["10.0.0.0/24"]}], ports: [{portNumber: {protocol: TCP, port: 8080}}]}]}`)}}
			},
			query: from("b", "x"), to: PodRef{"a", "y"}, port: Port{Name: "http"},
			want: want{Deny, LayerBaseline, Egress, "BaselineAdminNetworkPolicy/default rule 0 Deny"},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			nss, pods := world()
			host := mkPod("c", "host", nil, []string{"10.1.0.1"})
			host.Spec.HostNetwork = true
			pods = append(pods, host)
			var nps []*networkingv1.NetworkPolicy
			for i, s := range tc.nps {
				ns, spec, _ := strings.Cut(s, "|")
				nps = append(nps, pol(t, ns, "np"+string(rune('0'+i)), spec))
			}
			e, err := Build(Inputs{Namespaces: nss, Pods: pods, NetworkPolicies: nps, ClusterInputs: tc.in(t)})
			require.NoError(t, err)
			q := tc.query
			q.To, q.Port, q.Protocol = tc.to, tc.port, tc.proto
			a, err := e.Evaluate(q)
			require.NoError(t, err)
			assert.Equal(t, tc.want.verdict, a.Verdict, a.Text())
			assert.Equal(t, a.Modelled, a.Verdict, "no unmodelled policies")
			d := a.Ingress
			if tc.want.dir == Egress {
				d = a.Egress
			}
			assert.Equal(t, tc.want.decided, d.DecidedBy, a.Text())
			if tc.want.deciding == "" {
				assert.Empty(t, d.Cluster, a.Text())
			} else if assert.NotEmpty(t, d.Cluster, a.Text()) {
				c := d.Cluster[0]
				assert.Equal(t, tc.want.deciding, c.Policy.String()+" rule "+itoa(c.Rule)+" "+c.Action)
			}
			if tc.want.verdict == Unknown {
				assert.NotEmpty(t, d.Uncertain, "an unknown says why")
			}
			v, err := e.Verdict(q)
			require.NoError(t, err)
			assert.Equal(t, a.Verdict, v, "Verdict agrees with Evaluate")
		})
	}
}

const noInfraNodes = `{tier: Admin, priority: 1, subject: {namespaces: {}},
	egress: [{name: no-infra, action: Deny, to: [{nodes: {matchLabels: {role: infra}}}]}]}`

func cnps(ps ...*v1alpha2.ClusterNetworkPolicy) []*v1alpha2.ClusterNetworkPolicy { return ps }

func itoa(i int) string { return string(rune('0' + i)) }

func mkNode(name, ip string, l map[string]string) *corev1.Node {
	return &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: l},
		Status:     corev1.NodeStatus{Addresses: []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: ip}}},
	}
}

func TestUnmodelledPolicies(t *testing.T) {
	calicoNP := ForeignPolicy{Group: "projectcalico.org", Kind: "NetworkPolicy", Namespace: "b", Name: "allow-web"}
	gnp := ForeignPolicy{Group: "crd.projectcalico.org", Kind: "GlobalNetworkPolicy", Name: "default-deny"}
	staged := ForeignPolicy{Group: "projectcalico.org", Kind: "StagedGlobalNetworkPolicy", Name: "try-deny"}
	unreadable := ForeignPolicy{Group: "cilium.io", Kind: "CiliumClusterwideNetworkPolicy", Reason: "forbidden"}
	cases := []struct {
		name         string
		foreign      []ForeignPolicy
		from, to     PodRef
		want         Verdict
		unmodelled   int
		notEnforcing int
	}{
		{"namespaced object, pair touching its namespace", []ForeignPolicy{calicoNP}, PodRef{"a", "x"}, PodRef{"b", "x"}, Unknown, 1, 0},
		{"namespaced object, source in its namespace", []ForeignPolicy{calicoNP}, PodRef{"b", "x"}, PodRef{"a", "x"}, Unknown, 1, 0},
		{"namespaced object, pair elsewhere", []ForeignPolicy{calicoNP}, PodRef{"a", "x"}, PodRef{"c", "w"}, Deny, 0, 0},
		{"cluster-scoped object", []ForeignPolicy{gnp}, PodRef{"a", "y"}, PodRef{"c", "w"}, Unknown, 1, 0},
		{"staged object enforces nothing", []ForeignPolicy{staged}, PodRef{"a", "y"}, PodRef{"c", "w"}, Deny, 0, 1},
		{"kind that could not be listed", []ForeignPolicy{unreadable, staged}, PodRef{"a", "x"}, PodRef{"c", "w"}, Unknown, 1, 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			nss, pods := world()
			e, err := Build(Inputs{Namespaces: nss, Pods: pods,
				NetworkPolicies: []*networkingv1.NetworkPolicy{pol(t, "c", "deny", defaultDenyA)},
				ClusterInputs:   ClusterInputs{Foreign: tc.foreign}})
			require.NoError(t, err)
			a, err := e.Evaluate(Query{From: tc.from, To: tc.to, Port: Port{Number: 80}})
			require.NoError(t, err)
			assert.Equal(t, tc.want, a.Verdict)
			assert.Len(t, a.Unmodelled, tc.unmodelled)
			assert.Len(t, a.NotEnforcing, tc.notEnforcing)
			wantModelled := Allow
			if tc.to.Namespace == "c" {
				wantModelled = Deny
			}
			assert.Equal(t, wantModelled, a.Modelled, "the modelled verdict is still given")
			text := a.Text()
			assert.True(t, strings.HasPrefix(text, string(tc.want)+" "), text)
			if tc.unmodelled > 0 {
				assert.Contains(t, text, "\nmodelled policies alone: "+string(wantModelled)+"\n")
			}
			if tc.notEnforcing > 0 {
				assert.Contains(t, text, "ignored: StagedGlobalNetworkPolicy.projectcalico.org try-deny: a staged policy")
			}
		})
	}
}

func TestForeignKind(t *testing.T) {
	cases := []struct {
		group, kind string
		isPolicy    bool
		enforcing   bool
	}{
		{"networking.k8s.io", "NetworkPolicy", false, false},
		{"policy.networking.k8s.io", "ClusterNetworkPolicy", false, false},
		{"projectcalico.org", "GlobalNetworkPolicy", true, true},
		{"crd.projectcalico.org", "StagedKubernetesNetworkPolicy", true, false},
		{"projectcalico.org", "Tier", true, false},
		{"cilium.io", "CiliumClusterwideNetworkPolicy", true, true},
		{"crd.antrea.io", "ClusterNetworkPolicy", true, true},
		{"example.com", "FancyNetworkPolicy", true, true},
		{"kyverno.io", "ClusterPolicy", false, false},
	}
	for _, tc := range cases {
		t.Run(tc.group+"/"+tc.kind, func(t *testing.T) {
			isPolicy, notEnforcing := ForeignKind(tc.group, tc.kind)
			assert.Equal(t, tc.isPolicy, isPolicy)
			assert.Equal(t, tc.enforcing, isPolicy && notEnforcing == "")
		})
	}
}

func TestClusterPolicyValidation(t *testing.T) {
	cases := []struct {
		name string
		in   func(t *testing.T) ClusterInputs
		want []string
	}{
		{"bad tier", func(t *testing.T) ClusterInputs {
			return ClusterInputs{ClusterNetworkPolicies: cnps(cnp(t, "p", `{tier: Middle, priority: 1, subject: {namespaces: {}}}`))}
		}, []string{"ClusterNetworkPolicy p:", "spec.tier: Unsupported value"}},
		{"priority out of range", func(t *testing.T) ClusterInputs {
			return ClusterInputs{ClusterNetworkPolicies: cnps(cnp(t, "p", `{tier: Admin, priority: 1001, subject: {namespaces: {}}}`))}
		}, []string{"spec.priority: Invalid value: 1001"}},
		{"two subjects", func(t *testing.T) ClusterInputs {
			return ClusterInputs{ClusterNetworkPolicies: cnps(cnp(t, "p", `{tier: Admin, priority: 1, subject: {namespaces: {}, pods: {namespaceSelector: {}, podSelector: {}}}}`))}
		}, []string{"spec.subject: Forbidden"}},
		{"bad selector", func(t *testing.T) ClusterInputs {
			return ClusterInputs{ClusterNetworkPolicies: cnps(cnp(t, "p", `{tier: Admin, priority: 1, subject: {namespaces: {matchLabels: {"a b": c}}}}`))}
		}, []string{"spec.subject.namespaces.matchLabels"}},
		{"bad CIDR and range", func(t *testing.T) ClusterInputs {
			return ClusterInputs{ClusterNetworkPolicies: cnps(cnp(t, "p", `{tier: Admin, priority: 1, subject: {namespaces: {}},
				egress: [{action: Deny, to: [{networks: ["10.0.0.0/33"]}], protocols: [{tcp: {destinationPort: {range: {start: 90, end: 80}}}}]}]}`))}
		}, []string{"spec.egress[0].to[0].networks[0]", "spec.egress[0].protocols[0].tcp.destinationPort.range"}},
		{"domainNames in a deny rule", func(t *testing.T) ClusterInputs {
			return ClusterInputs{ClusterNetworkPolicies: cnps(cnp(t, "p", `{tier: Admin, priority: 1, subject: {namespaces: {}},
				egress: [{action: Deny, to: [{domainNames: [example.com]}]}]}`))}
		}, []string{"spec.egress[0].to[0].domainNames: Forbidden"}},
		{"unknown action", func(t *testing.T) ClusterInputs {
			return ClusterInputs{ClusterNetworkPolicies: cnps(cnp(t, "p", `{tier: Admin, priority: 1, subject: {namespaces: {}},
				ingress: [{action: Allow, from: [{namespaces: {}}]}]}`))}
		}, []string{`spec.ingress[0].action: Unsupported value: "Allow"`}},
		{"ANP port without protocol field set", func(t *testing.T) ClusterInputs {
			return ClusterInputs{AdminNetworkPolicies: []*v1alpha1.AdminNetworkPolicy{anp(t, "a1", `{priority: 1, subject: {namespaces: {}},
				ingress: [{action: Allow, from: [{namespaces: {}}], ports: [{portNumber: {protocol: ICMP, port: 1}}]}]}`)}}
		}, []string{"AdminNetworkPolicy a1:", "spec.ingress[0].ports[0].portNumber.protocol"}},
		{"BANP not named default, Pass action", func(t *testing.T) ClusterInputs {
			b := banp(t, `{subject: {namespaces: {}}, ingress: [{action: Pass, from: [{namespaces: {}}]}]}`)
			b.Name = "other"
			return ClusterInputs{BaselineAdminNetworkPolicies: []*v1alpha1.BaselineAdminNetworkPolicy{b}}
		}, []string{"BaselineAdminNetworkPolicy other:", "metadata.name", "spec.ingress[0].action"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			nss, pods := world()
			_, err := Build(Inputs{Namespaces: nss, Pods: pods, ClusterInputs: tc.in(t)})
			require.Error(t, err)
			var oe *ObjectError
			assert.ErrorAs(t, err, &oe, "an *ObjectError names the object")
			for _, w := range tc.want {
				assert.Contains(t, err.Error(), w)
			}
		})
	}
}

func TestFailClosedPeer(t *testing.T) {
	// A peer whose only field is one this package does not know arrives empty
	// from a newer CRD: a Pass rule then denies everything, an Accept matches
	// nothing.
	nss, pods := world()
	pass := cnp(t, "newer", `{tier: Admin, priority: 1, subject: {namespaces: {}}, ingress: [{action: Pass, from: [{}]}]}`)
	accept := cnp(t, "newer-accept", `{tier: Admin, priority: 0, subject: {namespaces: {}}, ingress: [{action: Accept, from: [{}]}]}`)
	e, err := Build(Inputs{Namespaces: nss, Pods: pods, ClusterInputs: ClusterInputs{ClusterNetworkPolicies: cnps(pass, accept)}})
	require.NoError(t, err)
	a, err := e.Evaluate(Query{From: PodRef{"b", "x"}, To: PodRef{"a", "x"}, Port: Port{Number: 80}})
	require.NoError(t, err)
	assert.Equal(t, Deny, a.Verdict, a.Text())
	require.Len(t, a.Ingress.Cluster, 1)
	assert.Equal(t, "newer", a.Ingress.Cluster[0].Policy.Name)
	assert.Contains(t, a.Ingress.Cluster[0].Action, "fail closed")
}

func TestClusterNetworkPolicyFromV1beta1(t *testing.T) {
	in := &v1beta1.ClusterNetworkPolicy{ObjectMeta: metav1.ObjectMeta{Name: "beta"}}
	require.NoError(t, yaml.UnmarshalStrict([]byte(denyFromB80), &in.Spec))
	out, err := ClusterNetworkPolicyFromV1beta1(in)
	require.NoError(t, err)
	assert.Equal(t, "beta", out.Name)
	assert.Equal(t, cnp(t, "beta", denyFromB80).Spec, out.Spec)
}

func TestClusterAnswerText(t *testing.T) {
	nss, pods := world()
	e, err := Build(Inputs{Namespaces: nss, Pods: pods, ClusterInputs: ClusterInputs{
		ClusterNetworkPolicies: cnps(cnp(t, "deny-b", denyFromB80)),
		Foreign:                []ForeignPolicy{{Group: "projectcalico.org", Kind: "GlobalNetworkPolicy", Name: "default-deny"}},
	}})
	require.NoError(t, err)
	a, err := e.Evaluate(Query{From: PodRef{"b", "x"}, To: PodRef{"a", "x"}, Port: Port{Number: 80}})
	require.NoError(t, err)
	want := `UNKNOWN TCP/80 from pod b/x (10.0.1.1) to pod a/x (10.0.0.1)
unknown: 1 policy object of kinds this evaluator does not model applies to this traffic:
  GlobalNetworkPolicy.projectcalico.org default-deny
modelled policies alone: DENY
egress of b/x: unrestricted: no policy selects the pod for egress
ingress of a/x: denied by the admin tier
  admin tier: ClusterNetworkPolicy/deny-b (priority 10) ingress rule 0 (deny-b-80): Deny, from[0] namespaces {team=b}, TCP/80
`
	assert.Equal(t, want, a.Text())
}
