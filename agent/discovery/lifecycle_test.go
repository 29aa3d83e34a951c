package discovery

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/kubernetes/fake"
)

func TestBuildExcluded(t *testing.T) {
	cordoned := testNode("cordoned", "windows", "")
	cordoned.Spec.Unschedulable = true
	tainted := testNode("tainted", "linux", "")
	tainted.Spec.Taints = []corev1.Taint{{Key: corev1.TaintNodeUnschedulable, Effect: corev1.TaintEffectNoSchedule}}
	scaleIn := testNode("scale-in", "windows", "")
	scaleIn.Spec.Unschedulable = true // cluster-autoscaler cordons too; draining says more
	scaleIn.Spec.Taints = []corev1.Taint{{Key: "ToBeDeletedByClusterAutoscaler", Value: "1700000000", Effect: corev1.TaintEffectNoSchedule}}
	nodes := []*corev1.Node{testNode(selfNode, "linux", ""), testNode("lin-1", "linux", ""), cordoned, tainted, scaleIn}

	tests := []struct {
		name      string
		pod       *corev1.Pod
		wantPeers int
		want      []Excluded
	}{
		{name: "ready on a schedulable node", pod: agentPod("p", "lin-1", "10.0.1.1"), wantPeers: 1},
		{name: "terminating", pod: agentPod("p", "lin-1", "10.0.1.1", terminating),
			want: []Excluded{{Node: "lin-1", OS: "linux", Pod: "p", Reason: ExcludedTerminating}}},
		{name: "pending", pod: agentPod("p", "lin-1", "", func(p *corev1.Pod) { p.Status.Phase = corev1.PodPending }),
			want: []Excluded{{Node: "lin-1", OS: "linux", Pod: "p", Reason: ExcludedNotReady}}},
		{name: "running without an IP", pod: agentPod("p", "lin-1", ""),
			want: []Excluded{{Node: "lin-1", OS: "linux", Pod: "p", Reason: ExcludedNoIP}}},
		{name: "not ready", pod: agentPod("p", "lin-1", "10.0.1.1", notReady),
			want: []Excluded{{Node: "lin-1", OS: "linux", Pod: "p", Reason: ExcludedNotReady}}},
		{name: "ready on a cordoned node", pod: agentPod("p", "cordoned", "10.0.2.1"),
			want: []Excluded{{Node: "cordoned", OS: "windows", Pod: "p", Reason: ExcludedNodeCordoned}}},
		{name: "ready on a node with the unschedulable taint", pod: agentPod("p", "tainted", "10.0.3.1"),
			want: []Excluded{{Node: "tainted", OS: "linux", Pod: "p", Reason: ExcludedNodeCordoned}}},
		{name: "ready on a node the autoscaler removes", pod: agentPod("p", "scale-in", "10.0.4.1"),
			want: []Excluded{{Node: "scale-in", OS: "windows", Pod: "p", Reason: ExcludedNodeDraining}}},
		{name: "on a node not in the cache", pod: agentPod("p", "gone", "10.0.9.1", func(p *corev1.Pod) {
			p.Spec.OS = &corev1.PodOS{Name: corev1.Windows}
		}), want: []Excluded{{Node: "gone", OS: "windows", Pod: "p", Reason: ExcludedNodeUnknown}}},
		{name: "on our own node", pod: agentPod("p", selfNode, "10.0.0.2", notReady)},
		{name: "unscheduled", pod: agentPod("p", "", "", func(p *corev1.Pod) { p.Status.Phase = corev1.PodPending })},
	}
	cfg := normalizedTestConfig(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, _ := build(&cfg, mapSource{pods: []*corev1.Pod{tt.pod}, nodes: nodes})
			assert.Len(t, got.Peers, tt.wantPeers)
			assert.Equal(t, tt.want, got.Excluded)
		})
	}

	t.Run("a surge update's starting pod does not exclude the node", func(t *testing.T) {
		got, _ := build(&cfg, mapSource{nodes: nodes, pods: []*corev1.Pod{
			agentPod("old", "lin-1", "10.0.1.1"),
			agentPod("new", "lin-1", "", createdAt(time.Minute), func(p *corev1.Pod) { p.Status.Phase = corev1.PodPending }),
		}})
		assert.Equal(t, []Peer{peer("lin-1", "linux", "", "old", "10.0.1.1")}, got.Peers)
		assert.Empty(t, got.Excluded)
	})
	t.Run("the newest pod of a node says why", func(t *testing.T) {
		got, _ := build(&cfg, mapSource{nodes: nodes, pods: []*corev1.Pod{
			agentPod("old", "lin-1", "10.0.1.1", terminating),
			agentPod("new", "lin-1", "", createdAt(time.Minute), func(p *corev1.Pod) { p.Status.Phase = corev1.PodPending }),
		}})
		assert.Equal(t, []Excluded{{Node: "lin-1", OS: "linux", Pod: "new", Reason: ExcludedNotReady}}, got.Excluded)
	})
}

// Cordoning, draining and a rolling update move an agent between the peers
// and the excluded through the informers, and back.
func TestExcludedFollowsTheCluster(t *testing.T) {
	noLeaks(t)
	objs := append(baseCluster(), testNode("n1", "windows", ""), agentPod("a1", "n1", "10.0.1.1"))
	h := start(t, fake.NewClientset(objs...))
	h.waitPeers(peer("n1", "windows", "", "a1", "10.0.1.1"))

	excluded := func(reason string) func(Snapshot) bool {
		return func(s Snapshot) bool {
			return len(s.Peers) == 0 && len(s.Excluded) == 1 && s.Excluded[0].Node == "n1" && s.Excluded[0].Reason == reason
		}
	}
	h.updateNode("n1", func(n *corev1.Node) { n.Spec.Unschedulable = true })
	h.waitFor("cordoned node excluded", excluded(ExcludedNodeCordoned))
	h.updateNode("n1", func(n *corev1.Node) {
		n.Spec.Taints = append(n.Spec.Taints, corev1.Taint{Key: "karpenter.sh/disrupted", Effect: corev1.TaintEffectNoSchedule})
	})
	h.waitFor("draining node excluded", excluded(ExcludedNodeDraining))
	h.updateNode("n1", func(n *corev1.Node) { n.Spec.Unschedulable = false; n.Spec.Taints = nil })
	h.waitPeers(peer("n1", "windows", "", "a1", "10.0.1.1"))

	h.updatePod("a1", terminating)
	h.waitFor("terminating pod excluded", excluded(ExcludedTerminating))
	h.deletePod("a1")
	h.waitFor("deleted pod forgotten", func(s Snapshot) bool { return len(s.Peers) == 0 && len(s.Excluded) == 0 })
	h.createPod(agentPod("a2", "n1", "", func(p *corev1.Pod) { p.Status.Phase = corev1.PodPending }))
	h.waitFor("starting pod excluded", excluded(ExcludedNotReady))
	h.updatePod("a2", func(p *corev1.Pod) { p.Status.Phase = corev1.PodRunning; p.Status.PodIP = "10.0.1.2" })
	h.waitPeers(peer("n1", "windows", "", "a2", "10.0.1.2"))
	assert.Empty(t, h.d.Snapshot().Excluded)
}
