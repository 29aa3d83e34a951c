package discovery

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
)

const (
	testNS       = "xosprobe"
	testSelector = "app.kubernetes.io/name=xosprobe,app.kubernetes.io/component=agent"
	selfNode     = "node-self"
	selfPod      = "agent-self"
	linuxSvc     = "xosprobe-linux"
	windowsSvc   = "xosprobe-windows"

	// wait bounds every eventual assertion; poll is short so passing tests are fast.
	wait = 10 * time.Second
	poll = 2 * time.Millisecond
)

var (
	agentLabels = map[string]string{"app.kubernetes.io/name": "xosprobe", "app.kubernetes.io/component": "agent"}
	epoch       = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
)

func testConfig(cs *fake.Clientset) Config {
	return Config{
		Client:        cs,
		Namespace:     testNS,
		PodName:       selfPod,
		NodeName:      selfNode,
		AgentSelector: testSelector,
		Services:      map[string]string{"linux": linuxSvc, "windows": windowsSvc},
	}
}

// agentPod is a running, ready agent pod on node.
func agentPod(name, node, ip string, opts ...func(*corev1.Pod)) *corev1.Pod {
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name: name, Namespace: testNS, Labels: clone(agentLabels),
			CreationTimestamp: metav1.NewTime(epoch),
		},
		Spec: corev1.PodSpec{NodeName: node},
		Status: corev1.PodStatus{
			Phase:      corev1.PodRunning,
			PodIP:      ip,
			PodIPs:     []corev1.PodIP{{IP: ip}},
			Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}},
		},
	}
	for _, o := range opts {
		o(p)
	}
	return p
}

func notReady(p *corev1.Pod) { p.Status.Conditions[0].Status = corev1.ConditionFalse }

func terminating(p *corev1.Pod) {
	ts := metav1.NewTime(epoch.Add(time.Hour))
	p.DeletionTimestamp = &ts
}

func createdAt(d time.Duration) func(*corev1.Pod) {
	return func(p *corev1.Pod) { p.CreationTimestamp = metav1.NewTime(epoch.Add(d)) }
}

func testNode(name, os, zone string) *corev1.Node {
	n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{}}}
	if os != "" {
		n.Labels[corev1.LabelOSStable] = os
	}
	if zone != "" {
		n.Labels[corev1.LabelTopologyZone] = zone
	}
	return n
}

func testService(name, clusterIP string, ports ...corev1.ServicePort) *corev1.Service {
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: testNS},
		Spec:       corev1.ServiceSpec{ClusterIP: clusterIP, Ports: ports},
	}
}

func testSlice(name, service string, eps ...discoveryv1.Endpoint) *discoveryv1.EndpointSlice {
	return &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{
			Name: name, Namespace: testNS,
			Labels: map[string]string{discoveryv1.LabelServiceName: service},
		},
		AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints:   eps,
	}
}

// endpoint targets pod; ready nil leaves the condition unset.
func endpoint(pod, ip string, ready *bool) discoveryv1.Endpoint {
	ep := discoveryv1.Endpoint{Addresses: []string{ip}, Conditions: discoveryv1.EndpointConditions{Ready: ready}}
	if pod != "" {
		ep.TargetRef = &corev1.ObjectReference{Kind: "Pod", Namespace: testNS, Name: pod}
	}
	return ep
}

func ptr[T any](v T) *T { return &v }

func clone(m map[string]string) map[string]string {
	c := make(map[string]string, len(m))
	for k, v := range m {
		c[k] = v
	}
	return c
}

func peer(node, os, zone, pod, ip string) Peer {
	return Peer{Node: node, OS: os, Zone: zone, Pod: pod, IP: ip, Ready: true}
}

// baseCluster is this agent's own node and pod plus the probe Services.
func baseCluster() []runtime.Object {
	return []runtime.Object{
		testNode(selfNode, "linux", "zone-a"),
		agentPod(selfPod, selfNode, "10.0.0.1"),
	}
}

// noLeaks checks for leftover goroutines after the test and all its cleanups
// (registered first, so it runs last).
func noLeaks(t *testing.T) {
	t.Helper()
	t.Cleanup(func() { goleak.VerifyNone(t) })
}

// harness runs one Discovery against a fake clientset.
type harness struct {
	t      *testing.T
	cs     *fake.Clientset
	d      *Discovery
	cancel context.CancelFunc
	done   chan error
	once   sync.Once
	err    error
}

// start runs a Discovery until the test ends and waits for its first sync.
func start(t *testing.T, cs *fake.Clientset, edit ...func(*Config)) *harness {
	t.Helper()
	cfg := testConfig(cs)
	for _, e := range edit {
		e(&cfg)
	}
	d, err := New(cfg)
	require.NoError(t, err)
	d.minInterval = time.Millisecond

	ctx, cancel := context.WithCancel(context.Background())
	h := &harness{t: t, cs: cs, d: d, cancel: cancel, done: make(chan error, 1)}
	go func() { h.done <- d.Run(ctx) }()
	t.Cleanup(func() { _ = h.stop() })
	require.Eventually(t, d.Synced, wait, poll, "caches did not sync")
	return h
}

// stop cancels Run and returns its error; later calls return the same error.
func (h *harness) stop() error {
	h.t.Helper()
	h.once.Do(func() {
		h.cancel()
		select {
		case h.err = <-h.done:
		case <-time.After(wait):
			h.t.Fatal("Run did not return after cancel")
		}
	})
	return h.err
}

// waitPeers waits until the snapshot's peers equal want.
func (h *harness) waitPeers(want ...Peer) Snapshot {
	h.t.Helper()
	if want == nil {
		want = []Peer{}
	}
	require.EventuallyWithT(h.t, func(c *assert.CollectT) {
		assert.Equal(c, want, h.d.Snapshot().Peers)
	}, wait, poll)
	return h.d.Snapshot()
}

// waitFor waits until cond holds for the snapshot.
func (h *harness) waitFor(desc string, cond func(Snapshot) bool) Snapshot {
	h.t.Helper()
	require.Eventually(h.t, func() bool { return cond(h.d.Snapshot()) }, wait, poll, desc)
	return h.d.Snapshot()
}

func (h *harness) ctx() context.Context { return h.t.Context() }

func (h *harness) updatePod(name string, edit func(*corev1.Pod)) {
	h.t.Helper()
	p, err := h.cs.CoreV1().Pods(testNS).Get(h.ctx(), name, metav1.GetOptions{})
	require.NoError(h.t, err)
	edit(p)
	_, err = h.cs.CoreV1().Pods(testNS).Update(h.ctx(), p, metav1.UpdateOptions{})
	require.NoError(h.t, err)
}

func (h *harness) updateNode(name string, edit func(*corev1.Node)) {
	h.t.Helper()
	n, err := h.cs.CoreV1().Nodes().Get(h.ctx(), name, metav1.GetOptions{})
	require.NoError(h.t, err)
	edit(n)
	_, err = h.cs.CoreV1().Nodes().Update(h.ctx(), n, metav1.UpdateOptions{})
	require.NoError(h.t, err)
}

func (h *harness) createPod(p *corev1.Pod) {
	h.t.Helper()
	_, err := h.cs.CoreV1().Pods(testNS).Create(h.ctx(), p, metav1.CreateOptions{})
	require.NoError(h.t, err)
}

func (h *harness) createNode(n *corev1.Node) {
	h.t.Helper()
	_, err := h.cs.CoreV1().Nodes().Create(h.ctx(), n, metav1.CreateOptions{})
	require.NoError(h.t, err)
}

func (h *harness) deletePod(name string) {
	h.t.Helper()
	require.NoError(h.t, h.cs.CoreV1().Pods(testNS).Delete(h.ctx(), name, metav1.DeleteOptions{}))
}

func (h *harness) deleteNode(name string) {
	h.t.Helper()
	require.NoError(h.t, h.cs.CoreV1().Nodes().Delete(h.ctx(), name, metav1.DeleteOptions{}))
}

// drain empties a notification channel and reports whether it held a value.
func drain(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// fired waits for a notification on ch.
func fired(t *testing.T, ch <-chan struct{}, desc string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(wait):
		t.Fatalf("no notification: %s", desc)
	}
}
