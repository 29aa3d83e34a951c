package discovery

import (
	"runtime"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
)

// mapSource is a source over plain objects, for testing build without informers.
type mapSource struct {
	pods     []*corev1.Pod
	nodes    []*corev1.Node
	services []*corev1.Service
	slices   []*discoveryv1.EndpointSlice
}

func (m mapSource) agentPods() []*corev1.Pod { return m.pods }

func (m mapSource) agentPod(name string) *corev1.Pod {
	for _, p := range m.pods {
		if p.Name == name {
			return p
		}
	}
	return nil
}

func (m mapSource) node(name string) *corev1.Node {
	for _, n := range m.nodes {
		if n.Name == name {
			return n
		}
	}
	return nil
}

func (m mapSource) service(name string) *corev1.Service {
	for _, s := range m.services {
		if s.Name == name {
			return s
		}
	}
	return nil
}

func (m mapSource) endpointSlices(string) []*discoveryv1.EndpointSlice { return m.slices }

func normalizedTestConfig(t *testing.T) Config {
	t.Helper()
	cfg, _, err := testConfig(fake.NewClientset()).normalized()
	require.NoError(t, err)
	return cfg
}

func TestBuildPeers(t *testing.T) {
	nodes := []*corev1.Node{
		testNode(selfNode, "linux", "zone-a"),
		testNode("lin-1", "linux", "zone-a"),
		testNode("win-1", "Windows", "zone-b"), // label case is normalized
		testNode("bare", "", ""),
	}
	self := agentPod(selfPod, selfNode, "10.0.0.1")

	tests := []struct {
		name string
		pods []*corev1.Pod
		want []Peer
	}{
		{
			name: "ready pods on known nodes, sorted by node, self excluded",
			pods: []*corev1.Pod{
				self,
				agentPod("w1", "win-1", "10.0.2.1"),
				agentPod("l1", "lin-1", "10.0.1.1"),
			},
			want: []Peer{
				peer("lin-1", "linux", "zone-a", "l1", "10.0.1.1"),
				peer("win-1", "windows", "zone-b", "w1", "10.0.2.1"),
			},
		},
		{
			name: "unready, pending, terminating, IP-less and unscheduled pods are not peers",
			pods: []*corev1.Pod{
				agentPod("unready", "lin-1", "10.0.1.1", notReady),
				agentPod("pending", "lin-1", "10.0.1.2", func(p *corev1.Pod) { p.Status.Phase = corev1.PodPending }),
				agentPod("succeeded", "lin-1", "10.0.1.3", func(p *corev1.Pod) { p.Status.Phase = corev1.PodSucceeded }),
				agentPod("terminating", "lin-1", "10.0.1.4", terminating),
				agentPod("no-ip", "lin-1", ""),
				agentPod("no-cond", "lin-1", "10.0.1.5", func(p *corev1.Pod) { p.Status.Conditions = nil }),
				agentPod("unscheduled", "", "10.0.1.6"),
			},
			want: []Peer{},
		},
		{
			name: "pod on an unknown node is not a peer",
			pods: []*corev1.Pod{agentPod("ghost", "gone", "10.0.9.1")},
			want: []Peer{},
		},
		{
			name: "the newer of two ready pods on a node wins (surge update)",
			pods: []*corev1.Pod{
				agentPod("old", "lin-1", "10.0.1.1"),
				agentPod("new", "lin-1", "10.0.1.2", createdAt(time.Minute)),
				agentPod("new-unready", "lin-1", "10.0.1.3", createdAt(time.Hour), notReady),
			},
			want: []Peer{peer("lin-1", "linux", "zone-a", "new", "10.0.1.2")},
		},
		{
			name: "same creation time: name breaks the tie",
			pods: []*corev1.Pod{agentPod("b", "lin-1", "10.0.1.2"), agentPod("a", "lin-1", "10.0.1.1")},
			want: []Peer{peer("lin-1", "linux", "zone-a", "b", "10.0.1.2")},
		},
		{
			name: "another pod on our own node is not a peer",
			pods: []*corev1.Pod{agentPod("surge-self", selfNode, "10.0.0.2", createdAt(time.Hour))},
			want: []Peer{},
		},
		{
			name: "node without OS label: spec.os, then nodeSelector",
			pods: []*corev1.Pod{agentPod("b1", "bare", "10.0.3.1", func(p *corev1.Pod) {
				p.Spec.OS = &corev1.PodOS{Name: corev1.Windows}
				p.Spec.NodeSelector = map[string]string{corev1.LabelOSStable: "linux"}
			})},
			want: []Peer{peer("bare", "windows", "", "b1", "10.0.3.1")},
		},
		{
			name: "node without OS label: nodeSelector",
			pods: []*corev1.Pod{agentPod("b1", "bare", "10.0.3.1", func(p *corev1.Pod) {
				p.Spec.NodeSelector = map[string]string{corev1.LabelOSStable: "linux"}
			})},
			want: []Peer{peer("bare", "linux", "", "b1", "10.0.3.1")},
		},
		{
			name: "node label beats the pod's own idea",
			pods: []*corev1.Pod{agentPod("l1", "lin-1", "10.0.1.1", func(p *corev1.Pod) {
				p.Spec.OS = &corev1.PodOS{Name: corev1.Windows}
			})},
			want: []Peer{peer("lin-1", "linux", "zone-a", "l1", "10.0.1.1")},
		},
	}
	cfg := normalizedTestConfig(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, rep := build(&cfg, mapSource{pods: tt.pods, nodes: nodes})
			assert.Equal(t, tt.want, got.Peers)
			if tt.name == "pod on an unknown node is not a peer" {
				assert.Equal(t, 1, rep.podsOnUnknownNodes)
			}
		})
	}
}

func TestBuildSelf(t *testing.T) {
	tests := []struct {
		name  string
		src   mapSource
		podIP string // Config.PodIP
		want  Peer
	}{
		{
			name: "from caches",
			src: mapSource{
				nodes: []*corev1.Node{testNode(selfNode, "windows", "zone-z")},
				pods:  []*corev1.Pod{agentPod(selfPod, selfNode, "10.0.0.1")},
			},
			podIP: "10.9.9.9",
			want:  Peer{Node: selfNode, OS: "windows", Zone: "zone-z", Pod: selfPod, IP: "10.0.0.1", Ready: true},
		},
		{
			name: "own pod not ready",
			src: mapSource{
				nodes: []*corev1.Node{testNode(selfNode, "linux", "")},
				pods:  []*corev1.Pod{agentPod(selfPod, selfNode, "10.0.0.1", notReady)},
			},
			want: Peer{Node: selfNode, OS: "linux", Pod: selfPod, IP: "10.0.0.1"},
		},
		{
			name: "nothing cached: Config and the build's OS",
			src:  mapSource{},
			want: Peer{Node: selfNode, OS: runtime.GOOS, Pod: selfPod, IP: "10.9.9.9"},
			// PodIP from the downward API fills in.
			podIP: "10.9.9.9",
		},
		{
			name: "node not cached: OS from own pod",
			src: mapSource{pods: []*corev1.Pod{agentPod(selfPod, selfNode, "10.0.0.1", func(p *corev1.Pod) {
				p.Spec.NodeSelector = map[string]string{corev1.LabelOSStable: "windows"}
			})}},
			want: Peer{Node: selfNode, OS: "windows", Pod: selfPod, IP: "10.0.0.1", Ready: true},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := normalizedTestConfig(t)
			cfg.PodIP = tt.podIP
			got, _ := build(&cfg, tt.src)
			assert.Equal(t, tt.want, got.Self)
		})
	}
}

func TestBuildServices(t *testing.T) {
	httpPorts := []corev1.ServicePort{{Name: "metrics", Port: 9090}, {Name: "http", Port: 8080}}
	tests := []struct {
		name     string
		services []*corev1.Service
		slices   []*discoveryv1.EndpointSlice
		want     map[string]ServiceEndpoint
	}{
		{
			name: "no services",
			want: map[string]ServiceEndpoint{},
		},
		{
			name:     "port named http, ready counting",
			services: []*corev1.Service{testService(linuxSvc, "10.96.0.10", httpPorts...)},
			slices: []*discoveryv1.EndpointSlice{
				testSlice("v4", linuxSvc,
					endpoint("a", "10.0.1.1", nil),        // nil means ready
					endpoint("b", "10.0.1.2", ptr(true)),  //
					endpoint("c", "10.0.1.3", ptr(false)), // not ready, or terminating
					endpoint("", "10.0.1.4", ptr(true)),   // no targetRef: keyed by address
					endpoint("", "10.0.1.4", nil),         // same address again
					discoveryv1.Endpoint{},                // nothing to count
					endpoint("d", "10.0.1.5", nil),
				),
				testSlice("v6", linuxSvc,
					endpoint("a", "fd00::1", ptr(true)),  // dual-stack twin of a
					endpoint("d", "fd00::5", ptr(false)), // ready in the other slice: counts
					endpoint("e", "fd00::6", ptr(false)), //
				),
				testSlice("other", "someone-else", endpoint("z", "10.0.8.1", nil)),
			},
			want: map[string]ServiceEndpoint{"linux": {
				OS: "linux", Name: linuxSvc, Namespace: testNS,
				FQDN:      linuxSvc + "." + testNS + ".svc.cluster.local",
				ClusterIP: "10.96.0.10", Port: 8080,
				// a, b, 10.0.1.4, d
				ReadyEndpoints: 4,
			}},
		},
		{
			name: "headless service, first port, no slices",
			services: []*corev1.Service{testService(windowsSvc, corev1.ClusterIPNone,
				corev1.ServicePort{Name: "probe", Port: 8081}, corev1.ServicePort{Name: "x", Port: 1})},
			want: map[string]ServiceEndpoint{"windows": {
				OS: "windows", Name: windowsSvc, Namespace: testNS,
				FQDN: windowsSvc + "." + testNS + ".svc.cluster.local", Port: 8081,
			}},
		},
		{
			name:     "no ports",
			services: []*corev1.Service{testService(windowsSvc, "10.96.0.11")},
			want: map[string]ServiceEndpoint{"windows": {
				OS: "windows", Name: windowsSvc, Namespace: testNS,
				FQDN: windowsSvc + "." + testNS + ".svc.cluster.local", ClusterIP: "10.96.0.11",
			}},
		},
		{
			name:     "a Service that is not configured is ignored",
			services: []*corev1.Service{testService("unrelated", "10.96.0.12")},
			want:     map[string]ServiceEndpoint{},
		},
	}
	cfg := normalizedTestConfig(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, rep := build(&cfg, mapSource{services: tt.services, slices: tt.slices})
			assert.Equal(t, tt.want, got.Services)
			assert.Len(t, rep.missingServices, 2-len(tt.want))
		})
	}
}

func TestBuildClusterDomain(t *testing.T) {
	cfg := testConfig(fake.NewClientset())
	cfg.ClusterDomain = "corp.example."
	cfg, _, err := cfg.normalized()
	require.NoError(t, err)
	got, _ := build(&cfg, mapSource{services: []*corev1.Service{testService(linuxSvc, "10.96.0.10")}})
	assert.Equal(t, linuxSvc+"."+testNS+".svc.corp.example", got.Services["linux"].FQDN)
}

func TestSnapshotCloneAndCompare(t *testing.T) {
	s := Snapshot{
		Self:       Peer{Node: "a"},
		Peers:      []Peer{peer("b", "linux", "", "p", "10.0.0.2")},
		Services:   map[string]ServiceEndpoint{"linux": {Name: linuxSvc}},
		Generation: 3,
	}
	c := s.Clone()
	assert.True(t, s.sameContent(c))
	c.Peers[0].IP = "10.0.0.3"
	c.Services["windows"] = ServiceEndpoint{}
	assert.Equal(t, "10.0.0.2", s.Peers[0].IP, "Clone must not share Peers")
	assert.Len(t, s.Services, 1, "Clone must not share Services")
	assert.False(t, s.sameContent(c))

	c = s.Clone()
	c.Generation = 9
	assert.True(t, s.sameContent(c), "Generation is not content")
	c.Self.Ready = true
	assert.False(t, s.sameContent(c))
}

func TestNewerPodTime(t *testing.T) {
	a := agentPod("a", "n", "1", createdAt(time.Second))
	b := agentPod("b", "n", "2")
	assert.True(t, newer(a, b))
	assert.False(t, newer(b, a))
	assert.False(t, newer(a, a), "strict")
	b.CreationTimestamp = metav1.NewTime(a.CreationTimestamp.Time)
	assert.True(t, newer(b, a), "tie broken by name")
}
