package discovery

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/tools/cache"
)

func TestPodDiff(t *testing.T) {
	tests := []struct {
		name string
		edit func(*corev1.Pod)
		want effect
	}{
		{"resync", func(*corev1.Pod) {}, 0},
		{"annotation", func(p *corev1.Pod) { p.Annotations = map[string]string{"x": "y"} }, 0},
		{"container status", func(p *corev1.Pod) {
			p.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: "agent", RestartCount: 1}}
		}, 0},
		{"resource version", func(p *corev1.Pod) { p.ResourceVersion = "42" }, 0},
		{"unready", notReady, affectsPeers},
		{"terminating", terminating, affectsPeers},
		{"phase", func(p *corev1.Pod) { p.Status.Phase = corev1.PodFailed }, affectsPeers},
		{"ip", func(p *corev1.Pod) { p.Status.PodIP = "10.0.0.9" }, affectsPeers | affectsPolicy},
		{"secondary ip", func(p *corev1.Pod) { p.Status.PodIPs = append(p.Status.PodIPs, corev1.PodIP{IP: "fd00::1"}) }, affectsPolicy},
		{"labels", func(p *corev1.Pod) { p.Labels["team"] = "net" }, affectsPeers | affectsPolicy},
		{"hostNetwork", func(p *corev1.Pod) { p.Spec.HostNetwork = true }, affectsPolicy},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := agentPod("a", "n", "10.0.0.1")
			n := o.DeepCopy()
			tt.edit(n)
			assert.Equal(t, tt.want, podDiff(o, n))
		})
	}
}

func TestNodeDiff(t *testing.T) {
	tests := []struct {
		name string
		edit func(*corev1.Node)
		want effect
	}{
		{"heartbeat annotation", func(n *corev1.Node) {
			n.Annotations = map[string]string{"node.alpha.kubernetes.io/ttl": "0"}
		}, 0},
		{"status", func(n *corev1.Node) {
			n.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, LastHeartbeatTime: metav1.Now()}}
		}, 0},
		{"other label", func(n *corev1.Node) { n.Labels["role"] = "x" }, 0},
		{"os label", func(n *corev1.Node) { n.Labels[corev1.LabelOSStable] = "windows" }, affectsPeers},
		{"zone label", func(n *corev1.Node) { n.Labels[corev1.LabelTopologyZone] = "z2" }, affectsPeers},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := testNode("n", "linux", "z1")
			n := o.DeepCopy()
			tt.edit(n)
			assert.Equal(t, tt.want, nodeDiff(o, n))
		})
	}
}

func TestOtherDiffs(t *testing.T) {
	svc := testService(linuxSvc, "10.96.0.1", corev1.ServicePort{Name: "http", Port: 80})
	svc2 := svc.DeepCopy()
	svc2.Annotations = map[string]string{"a": "b"}
	assert.Zero(t, serviceDiff(svc, svc2))
	svc2.Spec.Ports[0].Port = 81
	assert.Equal(t, affectsPeers, serviceDiff(svc, svc2))

	sl := testSlice("s", linuxSvc, endpoint("a", "10.0.0.1", ptr(true)))
	sl2 := sl.DeepCopy()
	sl2.Annotations = map[string]string{"a": "b"}
	assert.Zero(t, sliceDiff(sl, sl2))
	sl2.Endpoints[0].Conditions.Ready = ptr(false)
	assert.Equal(t, affectsPeers, sliceDiff(sl, sl2))

	np := &networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "x"}}
	np2 := np.DeepCopy()
	np2.Annotations = map[string]string{"a": "b"}
	assert.Zero(t, policyDiff(np, np2))
	np2.Spec.PolicyTypes = []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}
	assert.Equal(t, affectsPolicy, policyDiff(np, np2))

	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "x"}}
	ns2 := ns.DeepCopy()
	ns2.Annotations = map[string]string{"a": "b"}
	assert.Zero(t, namespaceDiff(ns, ns2))
	ns2.Labels = map[string]string{"team": "a"}
	assert.Equal(t, affectsPolicy, namespaceDiff(ns, ns2))
}

func TestSlim(t *testing.T) {
	mf := []metav1.ManagedFieldsEntry{{Manager: "kubelet"}}

	n := testNode("n", "linux", "z")
	n.ManagedFields = mf
	n.Annotations = map[string]string{"big": "value"}
	n.Status.Images = []corev1.ContainerImage{{Names: []string{"img"}}}
	n.Spec.PodCIDR = "10.0.0.0/24"
	out, err := slim(n)
	require.NoError(t, err)
	sn := out.(*corev1.Node)
	assert.Nil(t, sn.ManagedFields)
	assert.Nil(t, sn.Annotations)
	assert.Empty(t, sn.Status.Images)
	assert.Equal(t, n.Labels, sn.Labels)
	assert.Equal(t, "10.0.0.0/24", sn.Spec.PodCIDR)
	assert.Equal(t, mf, n.ManagedFields, "input must not be modified")
	again, err := slim(sn)
	require.NoError(t, err)
	assert.Equal(t, sn, again, "idempotent")

	objs := []metav1.Object{
		agentPod("p", "n", "10.0.0.1"),
		testService(linuxSvc, "10.96.0.1"),
		testSlice("s", linuxSvc),
		&networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Name: "np"}},
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "ns"}},
	}
	for _, o := range objs {
		same, err := slim(o)
		require.NoError(t, err)
		assert.Same(t, o, same, "%T without managedFields is passed through", o)

		o.SetManagedFields(mf)
		out, err := slim(o)
		require.NoError(t, err)
		assert.Empty(t, out.(metav1.Object).GetManagedFields(), "%T", o)
		assert.Equal(t, o.GetName(), out.(metav1.Object).GetName())
		assert.Equal(t, mf, o.GetManagedFields(), "%T input must not be modified", o)
	}

	tomb := cache.DeletedFinalStateUnknown{Key: "a/b"}
	out, err = slim(tomb)
	require.NoError(t, err)
	assert.Equal(t, tomb, out, "unknown types pass through")
}

// TestTombstoneHandler feeds the delete handler what an informer delivers
// after a relist found objects gone: tombstones with a stale, a nil or an
// unexpected object inside. Each must ask for a rebuild and never panic.
func TestTombstoneHandler(t *testing.T) {
	tests := []struct {
		name string
		obj  any
	}{
		{"plain delete", agentPod("a", "n", "10.0.0.1")},
		{"tombstone with stale pod", cache.DeletedFinalStateUnknown{Key: testNS + "/a", Obj: agentPod("a", "n", "10.0.0.1")}},
		{"tombstone without object", cache.DeletedFinalStateUnknown{Key: testNS + "/a"}},
		{"tombstone with another type", cache.DeletedFinalStateUnknown{Key: "x", Obj: &discoveryv1.EndpointSlice{}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, err := New(testConfig(fake.NewClientset()))
			require.NoError(t, err)
			d.synced.Store(true)

			d.deleted("agent-pods", tt.obj, affectsPeers|affectsPolicy)
			assert.True(t, drain(d.dirty), "rebuild requested")
			assert.True(t, drain(d.policyChanges), "policy consumers told")
			_, isTomb := tt.obj.(cache.DeletedFinalStateUnknown)
			assert.Equal(t, isTomb, d.stats.tombstones.Load() == 1)
		})
	}
}

func TestNotifyCoalescesAndWaitsForSync(t *testing.T) {
	d, err := New(testConfig(fake.NewClientset()))
	require.NoError(t, err)

	for range 100 {
		d.notify(affectsPeers | affectsPolicy)
	}
	assert.True(t, drain(d.dirty))
	assert.False(t, drain(d.dirty), "a burst leaves one pending signal")
	assert.False(t, drain(d.policyChanges), "no policy notifications before sync")

	d.synced.Store(true)
	d.notify(affectsPolicy)
	assert.False(t, drain(d.dirty), "policy-only events do not rebuild the Snapshot")
	assert.True(t, drain(d.policyChanges))
}
