package netpol

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
)

// bigCluster is 10,000 pods and 1,000 policies. policyNamespaces of the nsCount
// namespaces hold the policies, evenly; the rest have none.
func bigCluster(nsCount, policyNamespaces int) ([]*corev1.Namespace, []*corev1.Pod, []*networkingv1.NetworkPolicy) {
	const pods, policies = 10_000, 1_000
	var nss []*corev1.Namespace
	for i := range nsCount {
		nss = append(nss, mkNS(fmt.Sprintf("ns-%d", i), map[string]string{
			"team": fmt.Sprintf("team-%d", i%10), "env": []string{"prod", "dev", "test"}[i%3],
		}))
	}
	var ps []*corev1.Pod
	for i := range pods {
		ns := i % nsCount
		ps = append(ps, mkPod(fmt.Sprintf("ns-%d", ns), fmt.Sprintf("pod-%d", i),
			map[string]string{"app": fmt.Sprintf("app-%d", i%50), "tier": []string{"web", "api", "db"}[i%3], "version": "v1"},
			[]string{fmt.Sprintf("10.%d.%d.%d", 1+ns/250, ns%250, 1+i/nsCount%250)},
			corev1.ContainerPort{Name: "http", ContainerPort: 8080},
			corev1.ContainerPort{Name: "metrics", ContainerPort: 9090}))
	}
	var nps []*networkingv1.NetworkPolicy
	udp := corev1.ProtocolUDP
	for i := range policies {
		// Every namespace gets every kind of policy.
		ns := fmt.Sprintf("ns-%d", (i/5)%policyNamespaces)
		np := &networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: fmt.Sprintf("policy-%d", i)}}
		switch i % 5 {
		case 0: // default deny, both directions
			np.Spec.PolicyTypes = []networkingv1.PolicyType{networkingv1.PolicyTypeIngress, networkingv1.PolicyTypeEgress}
		case 1: // tier-to-tier on a named port
			np.Spec.PodSelector = metav1.LabelSelector{MatchLabels: map[string]string{"tier": "api"}}
			np.Spec.Ingress = []networkingv1.NetworkPolicyIngressRule{{
				From:  []networkingv1.NetworkPolicyPeer{{PodSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"tier": "web"}}}},
				Ports: []networkingv1.NetworkPolicyPort{{Port: ptr.To(intstr.FromString("http"))}},
			}}
		case 2: // cross-namespace by team and app, with expressions
			np.Spec.PodSelector = metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{
				{Key: "app", Operator: metav1.LabelSelectorOpIn, Values: []string{fmt.Sprintf("app-%d", i%50), fmt.Sprintf("app-%d", (i+1)%50)}},
			}}
			np.Spec.Ingress = []networkingv1.NetworkPolicyIngressRule{{
				From: []networkingv1.NetworkPolicyPeer{{
					NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"team": fmt.Sprintf("team-%d", i%10)}},
					PodSelector:       &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "tier", Operator: metav1.LabelSelectorOpNotIn, Values: []string{"db"}}}},
				}},
				Ports: []networkingv1.NetworkPolicyPort{{Port: ptr.To(intstr.FromInt32(8000)), EndPort: ptr.To(int32(8100))}},
			}}
		case 3: // egress: DNS anywhere, the database tier, an external range
			np.Spec.PodSelector = metav1.LabelSelector{MatchLabels: map[string]string{"tier": "web"}}
			np.Spec.PolicyTypes = []networkingv1.PolicyType{networkingv1.PolicyTypeEgress}
			np.Spec.Egress = []networkingv1.NetworkPolicyEgressRule{
				{Ports: []networkingv1.NetworkPolicyPort{{Protocol: &udp, Port: ptr.To(intstr.FromInt32(53))}}},
				{To: []networkingv1.NetworkPolicyPeer{{NamespaceSelector: &metav1.LabelSelector{}, PodSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"tier": "db"}}}}},
				{To: []networkingv1.NetworkPolicyPeer{{IPBlock: &networkingv1.IPBlock{CIDR: "10.0.0.0/8", Except: []string{"10.1.0.0/16"}}}}},
			}
		case 4: // monitoring scrapes metrics
			np.Spec.PodSelector = metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "version", Operator: metav1.LabelSelectorOpExists}}}
			np.Spec.Ingress = []networkingv1.NetworkPolicyIngressRule{{
				From:  []networkingv1.NetworkPolicyPeer{{NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"kubernetes.io/metadata.name": "monitoring"}}}},
				Ports: []networkingv1.NetworkPolicyPort{{Port: ptr.To(intstr.FromString("metrics"))}},
			}}
		}
		nps = append(nps, np)
	}
	return nss, ps, nps
}

func benchQuery(b *testing.B, nsCount, policyNamespaces int, q Query) {
	nss, pods, nps := bigCluster(nsCount, policyNamespaces)
	e, err := New(nss, pods, nps)
	require.NoError(b, err)
	a, err := e.Evaluate(q)
	require.NoError(b, err)
	b.Logf("%s: %d egress and %d ingress policies select the pods, %d rules allow",
		a.Verdict, len(a.Egress.Selecting), len(a.Ingress.Selecting), len(a.Egress.Matches)+len(a.Ingress.Matches))
	b.Run("explain", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := e.Evaluate(q); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("verdict", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := e.Verdict(q); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// 100 namespaces of 100 pods, 10 policies each: the usual shape.
func BenchmarkEvaluate(b *testing.B) {
	benchQuery(b, 100, 100, Query{From: PodRef{"ns-3", "pod-3"}, To: PodRef{"ns-7", "pod-1007"}, Port: Port{Number: 8080}})
}

// All 1,000 policies in one namespace, which holds both ends: the worst case for
// a per-namespace index.
func BenchmarkEvaluateCrowdedNamespace(b *testing.B) {
	benchQuery(b, 100, 1, Query{From: PodRef{"ns-0", "pod-0"}, To: PodRef{"ns-0", "pod-100"}, Port: Port{Name: "http"}})
}

func BenchmarkNew(b *testing.B) {
	nss, pods, nps := bigCluster(100, 100)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := New(nss, pods, nps); err != nil {
			b.Fatal(err)
		}
	}
}
