package agent

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	fakediscovery "k8s.io/client-go/discovery/fake"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/xosprobe/xosprobe/agent/discovery"
	"github.com/xosprobe/xosprobe/probe"
)

const ns = "xosprobe"

var agentLabels = map[string]string{"app.kubernetes.io/name": "xosprobe", "app.kubernetes.io/component": "agent"}

func node(name, osName string) *corev1.Node {
	return &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"kubernetes.io/os": osName}}}
}

func agentPod(name, nodeName, ip string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: agentLabels},
		Spec:       corev1.PodSpec{NodeName: nodeName, Containers: []corev1.Container{{Name: "agent"}}},
		Status: corev1.PodStatus{Phase: corev1.PodRunning, PodIP: ip, PodIPs: []corev1.PodIP{{IP: ip}},
			Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}},
	}
}

// denyPortPolicy isolates agents for ingress and allows every port but the deny port.
func denyPortPolicy() *networkingv1.NetworkPolicy {
	tcp := corev1.ProtocolTCP
	port := func(p int) networkingv1.NetworkPolicyPort {
		v := intstr.FromInt32(int32(p))
		return networkingv1.NetworkPolicyPort{Protocol: &tcp, Port: &v}
	}
	return &networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: "xosprobe-agents", Namespace: ns},
		Spec: networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{MatchLabels: agentLabels},
			PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress},
			Ingress: []networkingv1.NetworkPolicyIngressRule{{
				Ports: []networkingv1.NetworkPolicyPort{port(DefaultPorts.HTTP), port(DefaultPorts.TCP), port(DefaultPorts.Allow)},
			}},
		},
	}
}

func startDiscovery(t *testing.T, objs ...any) *discovery.Discovery {
	t.Helper()
	client := fake.NewClientset()
	for _, o := range objs {
		switch o := o.(type) {
		case *corev1.Node:
			_, err := client.CoreV1().Nodes().Create(context.Background(), o, metav1.CreateOptions{})
			require.NoError(t, err)
		case *corev1.Pod:
			_, err := client.CoreV1().Pods(o.Namespace).Create(context.Background(), o, metav1.CreateOptions{})
			require.NoError(t, err)
		case *networkingv1.NetworkPolicy:
			_, err := client.NetworkingV1().NetworkPolicies(o.Namespace).Create(context.Background(), o, metav1.CreateOptions{})
			require.NoError(t, err)
		case *metav1.APIResourceList: // a kind the API server serves
			fd := client.Discovery().(*fakediscovery.FakeDiscovery)
			fd.Resources = append(fd.Resources, o)
		}
	}
	d, err := discovery.New(discovery.Config{Client: client, Namespace: ns, PodName: "agent-lin-1", NodeName: "lin-1",
		AgentSelector: "app.kubernetes.io/name=xosprobe,app.kubernetes.io/component=agent",
		Services:      map[string]string{"linux": "xosprobe-linux", "windows": "xosprobe-windows"}, WatchNetworkPolicies: true})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = d.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	require.Eventually(t, d.Synced, 10*time.Second, 10*time.Millisecond)
	return d
}

func TestKubeSourceAndPolicyExpectations(t *testing.T) {
	d := startDiscovery(t, node("lin-1", "linux"), node("win-1", "windows"),
		agentPod("agent-lin-1", "lin-1", "10.244.1.5"), agentPod("agent-win-1", "win-1", "10.244.2.5"), denyPortPolicy())
	src := KubeSource{D: d, Ports: DefaultPorts}
	require.Eventually(t, func() bool { return len(src.View().Peers) == 2 }, 10*time.Second, 10*time.Millisecond)
	v := src.View()
	assert.True(t, v.Synced)
	var win PeerInfo
	for _, p := range v.Peers {
		if p.OS == "windows" {
			win = p
		}
	}
	require.Equal(t, "10.244.2.5", win.IP)
	assert.Equal(t, "agent-win-1", win.Pod)

	expect := PolicyExpecter{D: d, Namespace: ns, SelfPod: "agent-lin-1", Log: slog.New(slog.DiscardHandler)}.Expectations()
	verdict, why := expect(win, DefaultPorts.Allow)
	assert.Equal(t, probe.VerdictAllow, verdict, why)
	assert.Contains(t, why, "xosprobe-agents rule 0")
	verdict, why = expect(win, DefaultPorts.Deny)
	assert.Equal(t, probe.VerdictDeny, verdict, why)
	assert.Contains(t, why, "isolated by xosprobe-agents")

	// A pod the evaluator does not know falls back to the declared verdict, and says so.
	verdict, why = expect(PeerInfo{Pod: "ghost", Ports: DefaultPorts}, DefaultPorts.Deny)
	assert.Equal(t, probe.VerdictDeny, verdict)
	assert.Contains(t, why, "evaluator:")
}

func TestNoPolicyMeansAllowExpected(t *testing.T) {
	d := startDiscovery(t, node("lin-1", "linux"), node("win-1", "windows"),
		agentPod("agent-lin-1", "lin-1", "10.244.1.5"), agentPod("agent-win-1", "win-1", "10.244.2.5"))
	expect := PolicyExpecter{D: d, Namespace: ns, SelfPod: "agent-lin-1", Log: slog.New(slog.DiscardHandler)}.Expectations()
	verdict, why := expect(PeerInfo{Pod: "agent-win-1", Ports: DefaultPorts}, DefaultPorts.Deny)
	assert.Equal(t, probe.VerdictAllow, verdict, "without policies even the deny port is open")
	assert.Contains(t, why, "no policy selects it")
}

func TestUnseenPolicyKindMeansUnknownExpected(t *testing.T) {
	// A Calico GlobalNetworkPolicy kind is served but this discovery has no
	// dynamic client to read it: the expectation is unknown, never a guess.
	gnp := &metav1.APIResourceList{GroupVersion: "projectcalico.org/v3", APIResources: []metav1.APIResource{
		{Name: "globalnetworkpolicies", Kind: "GlobalNetworkPolicy", Verbs: metav1.Verbs{"list", "watch"}}}}
	d := startDiscovery(t, node("lin-1", "linux"), node("win-1", "windows"),
		agentPod("agent-lin-1", "lin-1", "10.244.1.5"), agentPod("agent-win-1", "win-1", "10.244.2.5"), denyPortPolicy(), gnp)
	expect := PolicyExpecter{D: d, Namespace: ns, SelfPod: "agent-lin-1", Log: slog.New(slog.DiscardHandler)}.Expectations()
	verdict, why := expect(PeerInfo{Pod: "agent-win-1", Ports: DefaultPorts}, DefaultPorts.Deny)
	assert.Equal(t, probe.VerdictUnknown, verdict, why)
	assert.Contains(t, why, "GlobalNetworkPolicy.projectcalico.org (objects not visible)")
	assert.Contains(t, why, "modelled policies alone: DENY")
}
