package netpol

import (
	"fmt"
	"net/netip"
	"testing"

	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"
)

// world is the cluster most semantic tests run against:
//
//	a (team=a, env=prod): x app=x 10.0.0.1 [http 80/TCP, dns 53/UDP, assoc 9000/SCTP]
//	                      y app=y,tier=front 10.0.0.2 [http 8080/TCP]
//	b (team=b, env=dev):  x app=x 10.0.1.1
//	                      z app=z 10.0.1.2 + fd00::2 (dual-stack)
//	c (no labels):        w 10.0.2.1
func world() ([]*corev1.Namespace, []*corev1.Pod) {
	nss := []*corev1.Namespace{
		mkNS("a", map[string]string{"team": "a", "env": "prod"}),
		mkNS("b", map[string]string{"team": "b", "env": "dev"}),
		mkNS("c", nil),
	}
	pods := []*corev1.Pod{
		mkPod("a", "x", map[string]string{"app": "x"}, []string{"10.0.0.1"},
			corev1.ContainerPort{Name: "http", ContainerPort: 80},
			corev1.ContainerPort{Name: "dns", ContainerPort: 53, Protocol: corev1.ProtocolUDP},
			corev1.ContainerPort{Name: "assoc", ContainerPort: 9000, Protocol: corev1.ProtocolSCTP}),
		mkPod("a", "y", map[string]string{"app": "y", "tier": "front"}, []string{"10.0.0.2"},
			corev1.ContainerPort{Name: "http", ContainerPort: 8080}),
		mkPod("b", "x", map[string]string{"app": "x"}, []string{"10.0.1.1"}),
		mkPod("b", "z", map[string]string{"app": "z"}, []string{"10.0.1.2", "fd00::2"}),
		mkPod("c", "w", nil, []string{"10.0.2.1"}),
	}
	return nss, pods
}

func mkNS(name string, l map[string]string) *corev1.Namespace {
	return &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: l}}
}

func mkPod(ns, name string, l map[string]string, ips []string, ports ...corev1.ContainerPort) *corev1.Pod {
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: l},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Ports: ports}}},
	}
	if len(ips) > 0 {
		p.Status.PodIP = ips[0]
		for _, ip := range ips {
			p.Status.PodIPs = append(p.Status.PodIPs, corev1.PodIP{IP: ip})
		}
	}
	return p
}

// pol builds a NetworkPolicy from its spec written as YAML. It skips the loader, and
// so its defaulting, to exercise New's own defaulting (policyTypes, TCP).
func pol(t testing.TB, ns, name, spec string) *networkingv1.NetworkPolicy {
	t.Helper()
	np := &networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
	require.NoError(t, yaml.UnmarshalStrict([]byte(spec), &np.Spec), spec)
	return np
}

func (m RuleMatch) short() string {
	return fmt.Sprintf("%s %s rule %d peer %d port %d", m.Policy, m.Direction, m.Rule, m.Peer, m.Port)
}

func shorts(ms []RuleMatch) []string {
	out := make([]string, len(ms))
	for i, m := range ms {
		out[i] = m.short()
	}
	return out
}

// state is "unrestricted", "allowed", "denied", or "" for a direction that was not
// evaluated (the egress of an external source).
func state(d *DirectionResult) string {
	switch {
	case d == nil:
		return ""
	case d.Unrestricted():
		return "unrestricted"
	case d.Allowed:
		return "allowed"
	default:
		return "denied"
	}
}

func mustAddr(t testing.TB, s string) netip.Addr {
	t.Helper()
	a, err := netip.ParseAddr(s)
	require.NoError(t, err)
	return a
}
