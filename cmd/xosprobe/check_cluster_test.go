package main

import (
	"bytes"
	"context"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/xosprobe/xosprobe/agent"
	"github.com/xosprobe/xosprobe/probe"
)

// In an agent pod with no target flags, check takes one agent of each OS,
// the probe Services and the policy verdicts from the cluster.
func TestCheckTakesTargetsFromTheCluster(t *testing.T) {
	r := startResponder(t)
	port := func(name string) int { return r.Addr(name).(*net.TCPAddr).Port }
	ports := agent.Ports{HTTP: port("http"), TCP: port("tcp"), Allow: port("allow"), Deny: port("deny")}
	labels := map[string]string{"app.kubernetes.io/name": "xosprobe", "app.kubernetes.io/component": "agent"}
	ready := corev1.PodStatus{Phase: corev1.PodRunning, PodIP: "127.0.0.1", PodIPs: []corev1.PodIP{{IP: "127.0.0.1"}},
		Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}}
	pod := func(name, nodeName string) *corev1.Pod {
		return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "xosprobe", Labels: labels},
			Spec: corev1.PodSpec{NodeName: nodeName, Containers: []corev1.Container{{Name: "agent"}}}, Status: ready}
	}
	node := func(name, osName string) *corev1.Node {
		return &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"kubernetes.io/os": osName}}}
	}
	tcp := corev1.ProtocolTCP
	allowPort := intstr.FromInt32(int32(ports.Allow))
	httpPort := intstr.FromInt32(int32(ports.HTTP))
	tcpPort := intstr.FromInt32(int32(ports.TCP))
	policy := &networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Name: "xosprobe-agents", Namespace: "xosprobe"},
		Spec: networkingv1.NetworkPolicySpec{PodSelector: metav1.LabelSelector{MatchLabels: labels},
			PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress},
			Ingress: []networkingv1.NetworkPolicyIngressRule{{Ports: []networkingv1.NetworkPolicyPort{
				{Protocol: &tcp, Port: &allowPort}, {Protocol: &tcp, Port: &httpPort}, {Protocol: &tcp, Port: &tcpPort}}}}}}
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "xosprobe-windows", Namespace: "xosprobe"},
		Spec: corev1.ServiceSpec{ClusterIP: "127.0.0.1", Ports: []corev1.ServicePort{{Name: "http", Port: int32(ports.HTTP)}}}}
	client := fake.NewClientset(node("lin-1", "linux"), node("win-1", "windows"),
		pod("agent-lin-1", "lin-1"), pod("agent-win-1", "win-1"), policy, svc)

	cmd, cfg := checkCommand()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetArgs([]string{"--node", "lin-1", "--pod", "agent-lin-1", "--namespace", "xosprobe", "--kubeconfig", "unused"})
	// The seam replaces the kubeconfig client; ports follow the loopback responder.
	cfg.kube.client = func() (kubernetes.Interface, error) { return client, nil }
	cfg.ports = ports
	// No cluster DNS here, and no query may leave loopback: both resolvers
	// point at a closed loopback port, so the dns step fails, visibly.
	cfg.dnsServer = "127.0.0.1:1"
	cfg.newProber = func() *probe.Prober {
		p := probe.New()
		p.Resolver = &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "tcp", "127.0.0.1:1")
		}}
		return p
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	err := cmd.ExecuteContext(ctx)
	require.ErrorIs(t, err, errFailed, out.String())
	text := out.String()
	assert.Regexp(t, `(?m)^windows win-1 127\.0\.0\.1\s+tcp\s+PASS`, text)
	assert.Regexp(t, `(?m)^windows win-1 127\.0\.0\.1\s+service\s+PASS`, text)
	assert.Regexp(t, `(?m)^windows win-1 127\.0\.0\.1\s+netpol-allow\s+PASS`, text)
	assert.Regexp(t, `(?m)^windows win-1 127\.0\.0\.1\s+netpol-deny\s+FAIL\s+policy_not_enforced`, text)
	assert.Regexp(t, `(?m)^linux \(no agent found\)\s+tcp\s+SKIPPED\s+no ready linux agent besides this one`, text)
	assert.Regexp(t, `(?m)^linux \(no agent found\)\s+dns\s+SKIPPED\s+no linux probe Service found`, text)
	assert.Regexp(t, `(?m)^windows win-1 127\.0\.0\.1\s+dns\s+FAIL\s+dns_`, text)
	assert.Contains(t, text, "NetworkPolicy toward windows win-1 127.0.0.1: NOT enforced")
}
