package discovery

import (
	"bytes"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	fakediscovery "k8s.io/client-go/discovery/fake"
	dynamicfake "k8s.io/client-go/dynamic/fake"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/xosprobe/xosprobe/agent/netpol"
)

// lockedDiscovery lets a test change the served resources while the
// rediscovery goroutine reads them.
type lockedDiscovery struct {
	*fakediscovery.FakeDiscovery
	mu sync.Mutex
}

func (l *lockedDiscovery) set(r []*metav1.APIResourceList) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.Resources = r
}

func (l *lockedDiscovery) ServerGroupsAndResources() ([]*metav1.APIGroup, []*metav1.APIResourceList, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.FakeDiscovery.ServerGroupsAndResources()
}

var (
	gvrCNP    = schema.GroupVersionResource{Group: "policy.networking.k8s.io", Version: "v1alpha2", Resource: "clusternetworkpolicies"}
	gvrCalNP  = schema.GroupVersionResource{Group: "projectcalico.org", Version: "v3", Resource: "networkpolicies"}
	gvrGNP    = schema.GroupVersionResource{Group: "projectcalico.org", Version: "v3", Resource: "globalnetworkpolicies"}
	gvrStaged = schema.GroupVersionResource{Group: "projectcalico.org", Version: "v3", Resource: "stagednetworkpolicies"}
	gvrCilium = schema.GroupVersionResource{Group: "cilium.io", Version: "v2", Resource: "ciliumnetworkpolicies"}
)

func served(gv string, rs ...metav1.APIResource) *metav1.APIResourceList {
	for i := range rs {
		if rs[i].Verbs == nil {
			rs[i].Verbs = metav1.Verbs{"get", "list", "watch"}
		}
	}
	return &metav1.APIResourceList{GroupVersion: gv, APIResources: rs}
}

func obj(gvr schema.GroupVersionResource, kind, ns, name string, spec map[string]any) *unstructured.Unstructured {
	u := &unstructured.Unstructured{Object: map[string]any{"spec": spec}}
	u.SetAPIVersion(gvr.GroupVersion().String())
	u.SetKind(kind)
	u.SetNamespace(ns)
	u.SetName(name)
	u.SetGeneration(1)
	return u
}

func TestClusterPolicyInputs(t *testing.T) {
	noLeaks(t)
	calico := served("projectcalico.org/v3",
		metav1.APIResource{Name: "networkpolicies", Kind: "NetworkPolicy", Namespaced: true},
		metav1.APIResource{Name: "globalnetworkpolicies", Kind: "GlobalNetworkPolicy"},
		metav1.APIResource{Name: "stagednetworkpolicies", Kind: "StagedNetworkPolicy", Namespaced: true},
		metav1.APIResource{Name: "networksets", Kind: "NetworkSet", Namespaced: true})
	cilium := served("cilium.io/v2", metav1.APIResource{Name: "ciliumnetworkpolicies", Kind: "CiliumNetworkPolicy", Namespaced: true})
	cnpAPI := served("policy.networking.k8s.io/v1alpha2",
		metav1.APIResource{Name: "clusternetworkpolicies", Kind: "ClusterNetworkPolicy"},
		metav1.APIResource{Name: "clusternetworkpolicies/status", Kind: "ClusterNetworkPolicy"})

	cnp := obj(gvrCNP, "ClusterNetworkPolicy", "", "deny-agents", map[string]any{
		"tier": "Admin", "priority": int64(10),
		"subject": map[string]any{"namespaces": map[string]any{}},
		"ingress": []any{map[string]any{"name": "no-allow-port", "action": "Deny",
			"from": []any{map[string]any{"namespaces": map[string]any{}}}}},
	})
	dyn := dynamicfake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(), map[schema.GroupVersionResource]string{
		gvrCNP: "ClusterNetworkPolicyList", gvrCalNP: "NetworkPolicyList", gvrGNP: "GlobalNetworkPolicyList",
		gvrStaged: "StagedNetworkPolicyList", gvrCilium: "CiliumNetworkPolicyList",
	},
		cnp,
		obj(gvrCalNP, "NetworkPolicy", testNS, "allow-web", nil),
		obj(gvrCalNP, "NetworkPolicy", "shop", "selects-shop-pods-only", nil),
		obj(gvrGNP, "GlobalNetworkPolicy", "", "default-deny", nil),
		obj(gvrStaged, "StagedNetworkPolicy", testNS, "try", nil),
	)
	dyn.PrependReactor("list", "ciliumnetworkpolicies", func(k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, apierrors.NewForbidden(gvrCilium.GroupResource(), "", nil)
	})

	cs := fake.NewClientset(baseCluster()...)
	disc := &lockedDiscovery{FakeDiscovery: cs.Discovery().(*fakediscovery.FakeDiscovery)}
	disc.set([]*metav1.APIResourceList{calico, cilium})
	var logs syncBuffer
	h := start(t, cs, func(c *Config) {
		c.WatchNetworkPolicies = true
		c.Dynamic = dyn
		c.APIDiscovery = disc
		c.PolicyRediscoverInterval = 10 * time.Millisecond
		c.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	})

	t.Run("unmodelled kinds are listed, namespaced ones in our namespace only; a forbidden kind is unreadable", func(t *testing.T) {
		require.EventuallyWithT(t, func(c *assert.CollectT) {
			in, err := h.d.ListClusterInputs()
			require.NoError(c, err)
			assert.ElementsMatch(c, []netpol.ForeignPolicy{
				{Group: "cilium.io", Kind: "CiliumNetworkPolicy", Reason: "forbidden: " + apierrors.NewForbidden(gvrCilium.GroupResource(), "", nil).Error()},
				{Group: "projectcalico.org", Kind: "GlobalNetworkPolicy", Name: "default-deny"},
				{Group: "projectcalico.org", Kind: "NetworkPolicy", Namespace: testNS, Name: "allow-web"},
				{Group: "projectcalico.org", Kind: "StagedNetworkPolicy", Namespace: testNS, Name: "try"},
			}, in.Foreign)
			assert.Empty(c, in.ClusterNetworkPolicies, "not served yet")
		}, wait, poll)
		assert.Equal(t, 1, strings.Count(logs.String(), "cannot list policy kind"), "a 403 is logged once")
	})

	t.Run("a kind installed later is followed and converted", func(t *testing.T) {
		drain(h.d.PolicyChanges())
		disc.set([]*metav1.APIResourceList{calico, cilium, cnpAPI})
		fired(t, h.d.PolicyChanges(), "new kind")
		require.EventuallyWithT(t, func(c *assert.CollectT) {
			in, err := h.d.ListClusterInputs()
			require.NoError(c, err)
			if assert.Len(c, in.ClusterNetworkPolicies, 1) {
				p := in.ClusterNetworkPolicies[0]
				assert.Equal(c, "deny-agents", p.Name)
				assert.EqualValues(c, "Admin", p.Spec.Tier)
				assert.Equal(c, int32(10), p.Spec.Priority)
			}
		}, wait, poll)
	})

	t.Run("a kind no longer served is dropped", func(t *testing.T) {
		disc.set([]*metav1.APIResourceList{cnpAPI})
		require.EventuallyWithT(t, func(c *assert.CollectT) {
			in, err := h.d.ListClusterInputs()
			require.NoError(c, err)
			assert.Empty(c, in.Foreign)
			assert.Len(c, in.ClusterNetworkPolicies, 1)
		}, wait, poll)
	})
	require.NoError(t, h.stop())
}

func TestClusterPolicyWithoutDynamicClient(t *testing.T) {
	noLeaks(t)
	cs := fake.NewClientset(baseCluster()...)
	disc := &lockedDiscovery{FakeDiscovery: cs.Discovery().(*fakediscovery.FakeDiscovery)}
	disc.set([]*metav1.APIResourceList{served("cilium.io/v2", metav1.APIResource{Name: "ciliumclusterwidenetworkpolicies", Kind: "CiliumClusterwideNetworkPolicy"})})
	h := start(t, cs, func(c *Config) {
		c.WatchNetworkPolicies = true
		c.APIDiscovery = disc
	})
	in, err := h.d.ListClusterInputs()
	require.NoError(t, err)
	require.Len(t, in.Foreign, 1)
	assert.Equal(t, "CiliumClusterwideNetworkPolicy", in.Foreign[0].Kind)
	assert.Empty(t, in.Foreign[0].Name, "served but not visible: a nameless entry")
	assert.Contains(t, in.Foreign[0].Reason, "no dynamic client")
	require.NoError(t, h.stop())
}

// syncBuffer is a bytes.Buffer safe for the logger's goroutines.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
