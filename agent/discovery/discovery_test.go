package discovery

import (
	"context"
	"errors"
	"runtime"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	k8sruntime "k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
)

func TestPeersFollowNodesAndPods(t *testing.T) {
	noLeaks(t)
	cs := fake.NewClientset(append(baseCluster(),
		testNode("lin-1", "linux", "zone-a"),
		agentPod("agent-l1", "lin-1", "10.0.1.1"),
	)...)
	h := start(t, cs)

	s := h.d.Snapshot()
	assert.Equal(t, []Peer{peer("lin-1", "linux", "zone-a", "agent-l1", "10.0.1.1")}, s.Peers,
		"the first Snapshot is complete as soon as Synced is true")
	assert.Equal(t, Peer{Node: selfNode, OS: "linux", Zone: "zone-a", Pod: selfPod, IP: "10.0.0.1", Ready: true}, s.Self)
	assert.Equal(t, uint64(1), s.Generation)

	h.createNode(testNode("win-1", "windows", "zone-b"))
	h.createPod(agentPod("agent-w1", "win-1", "10.0.2.1"))
	h.waitPeers(
		peer("lin-1", "linux", "zone-a", "agent-l1", "10.0.1.1"),
		peer("win-1", "windows", "zone-b", "agent-w1", "10.0.2.1"),
	)

	h.deletePod("agent-l1")
	h.waitPeers(peer("win-1", "windows", "zone-b", "agent-w1", "10.0.2.1"))

	// Node gone, pod left for the garbage collector: not a peer.
	h.deleteNode("win-1")
	h.waitPeers()

	// Pods that are not agents are ignored even though the fake clientset's
	// watch, unlike the API server, does not apply the label selector.
	h.createNode(testNode("lin-2", "linux", ""))
	h.createPod(agentPod("web", "lin-2", "10.0.3.1", func(p *corev1.Pod) { p.Labels = map[string]string{"app": "web"} }))
	h.createPod(agentPod("agent-l2", "lin-2", "10.0.3.2"))
	h.waitPeers(peer("lin-2", "linux", "", "agent-l2", "10.0.3.2"))
}

func TestOSLabelChangeMovesPeer(t *testing.T) {
	noLeaks(t)
	cs := fake.NewClientset(append(baseCluster(),
		testNode("n1", "linux", "zone-a"),
		agentPod("agent-1", "n1", "10.0.1.1"),
	)...)
	h := start(t, cs)
	h.waitPeers(peer("n1", "linux", "zone-a", "agent-1", "10.0.1.1"))

	h.updateNode("n1", func(n *corev1.Node) { n.Labels[corev1.LabelOSStable] = "windows" })
	h.waitPeers(peer("n1", "windows", "zone-a", "agent-1", "10.0.1.1"))

	h.updateNode("n1", func(n *corev1.Node) { n.Labels[corev1.LabelTopologyZone] = "zone-c" })
	h.waitPeers(peer("n1", "windows", "zone-c", "agent-1", "10.0.1.1"))

	// Our own node's label moves Self.
	h.updateNode(selfNode, func(n *corev1.Node) { n.Labels[corev1.LabelOSStable] = "windows" })
	h.waitFor("Self.OS follows the node label", func(s Snapshot) bool { return s.Self.OS == "windows" })
}

func TestUnprobeablePodsLeavePeers(t *testing.T) {
	tests := []struct {
		name string
		edit func(*corev1.Pod)
	}{
		{"becomes unready", notReady},
		{"starts terminating", terminating},
		{"fails", func(p *corev1.Pod) { p.Status.Phase = corev1.PodFailed }},
		{"loses its IP", func(p *corev1.Pod) { p.Status.PodIP, p.Status.PodIPs = "", nil }},
		{"loses the agent labels", func(p *corev1.Pod) { delete(p.Labels, "app.kubernetes.io/component") }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			noLeaks(t)
			cs := fake.NewClientset(append(baseCluster(),
				testNode("n1", "linux", ""),
				agentPod("agent-1", "n1", "10.0.1.1"),
			)...)
			h := start(t, cs)
			h.waitPeers(peer("n1", "linux", "", "agent-1", "10.0.1.1"))

			h.updatePod("agent-1", tt.edit)
			h.waitPeers()
		})
	}

	t.Run("unready pod comes back", func(t *testing.T) {
		noLeaks(t)
		cs := fake.NewClientset(append(baseCluster(),
			testNode("n1", "linux", ""),
			agentPod("agent-1", "n1", "10.0.1.1", notReady),
		)...)
		h := start(t, cs)
		h.waitPeers()
		h.updatePod("agent-1", func(p *corev1.Pod) { p.Status.Conditions[0].Status = corev1.ConditionTrue })
		h.waitPeers(peer("n1", "linux", "", "agent-1", "10.0.1.1"))
	})

	t.Run("own pod readiness shows in Self", func(t *testing.T) {
		noLeaks(t)
		h := start(t, fake.NewClientset(baseCluster()...))
		require.True(t, h.d.Snapshot().Self.Ready)
		h.updatePod(selfPod, notReady)
		h.waitFor("Self not ready", func(s Snapshot) bool { return !s.Self.Ready })
	})
}

func TestPodOnUnknownNodeWaitsForNode(t *testing.T) {
	noLeaks(t)
	cs := fake.NewClientset(append(baseCluster(), agentPod("agent-late", "late", "10.0.5.1"))...)
	h := start(t, cs)

	// The pod is in the cache at sync time and its node is not.
	assert.Empty(t, h.d.Snapshot().Peers)
	_, err := h.d.pods.Pods(testNS).Get("agent-late")
	require.NoError(t, err)

	h.createNode(testNode("late", "windows", "zone-w"))
	h.waitPeers(peer("late", "windows", "zone-w", "agent-late", "10.0.5.1"))
}

func TestServicesAndEndpointSlices(t *testing.T) {
	noLeaks(t)
	cs := fake.NewClientset(append(baseCluster(),
		testService(linuxSvc, "10.96.0.10", corev1.ServicePort{Name: "metrics", Port: 9090}, corev1.ServicePort{Name: "http", Port: 8080}),
		testSlice("lin-a", linuxSvc, endpoint("l1", "10.0.1.1", ptr(true)), endpoint("l2", "10.0.1.2", nil)),
		testSlice("lin-b", linuxSvc, endpoint("l3", "10.0.1.3", ptr(false))),
		// Not a probe Service: the field selector keeps it out of the cache on
		// a real API server; the code ignores it either way.
		testService("unrelated", "10.96.0.99"),
	)...)
	h := start(t, cs)

	lin := ServiceEndpoint{
		OS: "linux", Name: linuxSvc, Namespace: testNS,
		FQDN:      linuxSvc + "." + testNS + ".svc.cluster.local",
		ClusterIP: "10.96.0.10", Port: 8080, ReadyEndpoints: 2,
	}
	assert.Equal(t, map[string]ServiceEndpoint{"linux": lin}, h.d.Snapshot().Services)

	// The windows Service appears, then its endpoints.
	_, err := cs.CoreV1().Services(testNS).Create(h.ctx(), testService(windowsSvc, "10.96.0.11",
		corev1.ServicePort{Name: "http", Port: 8080}), metav1.CreateOptions{})
	require.NoError(t, err)
	win := ServiceEndpoint{
		OS: "windows", Name: windowsSvc, Namespace: testNS,
		FQDN:      windowsSvc + "." + testNS + ".svc.cluster.local",
		ClusterIP: "10.96.0.11", Port: 8080,
	}
	h.waitFor("windows service", func(s Snapshot) bool { return s.Services["windows"] == win })

	_, err = cs.DiscoveryV1().EndpointSlices(testNS).Create(h.ctx(),
		testSlice("win-a", windowsSvc, endpoint("w1", "10.0.2.1", nil)), metav1.CreateOptions{})
	require.NoError(t, err)
	win.ReadyEndpoints = 1
	h.waitFor("windows endpoint", func(s Snapshot) bool { return s.Services["windows"] == win })

	// An endpoint turns ready; a slice goes away.
	sl, err := cs.DiscoveryV1().EndpointSlices(testNS).Get(h.ctx(), "lin-b", metav1.GetOptions{})
	require.NoError(t, err)
	sl.Endpoints[0].Conditions.Ready = ptr(true)
	_, err = cs.DiscoveryV1().EndpointSlices(testNS).Update(h.ctx(), sl, metav1.UpdateOptions{})
	require.NoError(t, err)
	h.waitFor("3 ready linux endpoints", func(s Snapshot) bool { return s.Services["linux"].ReadyEndpoints == 3 })
	require.NoError(t, cs.DiscoveryV1().EndpointSlices(testNS).Delete(h.ctx(), "lin-a", metav1.DeleteOptions{}))
	h.waitFor("1 ready linux endpoint", func(s Snapshot) bool { return s.Services["linux"].ReadyEndpoints == 1 })

	// A port change and a deletion.
	svc, err := cs.CoreV1().Services(testNS).Get(h.ctx(), windowsSvc, metav1.GetOptions{})
	require.NoError(t, err)
	svc.Spec.Ports[0].Port = 8081
	_, err = cs.CoreV1().Services(testNS).Update(h.ctx(), svc, metav1.UpdateOptions{})
	require.NoError(t, err)
	h.waitFor("windows port 8081", func(s Snapshot) bool { return s.Services["windows"].Port == 8081 })
	require.NoError(t, cs.CoreV1().Services(testNS).Delete(h.ctx(), windowsSvc, metav1.DeleteOptions{}))
	h.waitFor("windows service gone", func(s Snapshot) bool {
		_, ok := s.Services["windows"]
		return !ok
	})
}

func TestChangesFireOnlyOnMaterialChange(t *testing.T) {
	noLeaks(t)
	cs := fake.NewClientset(append(baseCluster(),
		testNode("n1", "linux", "zone-a"),
		agentPod("agent-1", "n1", "10.0.1.1"),
	)...)
	h := start(t, cs, func(c *Config) { c.WatchNetworkPolicies = true })
	d := h.d

	fired(t, d.Changes(), "first sync")
	fired(t, d.PolicyChanges(), "first sync (policies)")
	gen := d.Snapshot().Generation
	require.Equal(t, uint64(1), gen)

	t.Run("material change fires", func(t *testing.T) {
		req := d.stats.requested.Load()
		h.createNode(testNode("n2", "windows", ""))
		h.createPod(agentPod("agent-2", "n2", "10.0.2.1"))
		fired(t, d.Changes(), "new peer")
		s := h.waitFor("two peers", func(s Snapshot) bool { return len(s.Peers) == 2 })
		assert.Greater(t, s.Generation, gen)
		// Both handlers have run and a rebuild has covered them; nothing is
		// in flight when the next subtest starts counting.
		require.Eventually(t, func() bool { return d.stats.covered.Load() >= req+2 }, wait, poll)
		drain(d.Changes())
		gen = d.Snapshot().Generation
	})

	t.Run("node heartbeat does not fire", func(t *testing.T) {
		ignored := d.stats.ignored.Load()
		req := d.stats.requested.Load()
		h.updateNode("n1", func(n *corev1.Node) {
			n.Annotations = map[string]string{"node.alpha.kubernetes.io/ttl": "0"}
			n.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue, LastHeartbeatTime: metav1.Now()}}
		})
		// The handler has seen the update once it counts it as ignored.
		require.Eventually(t, func() bool { return d.stats.ignored.Load() > ignored }, wait, poll)
		assert.Equal(t, req, d.stats.requested.Load(), "no rebuild requested for a heartbeat")
		assert.False(t, drain(d.Changes()))
		assert.Equal(t, gen, d.Snapshot().Generation)
	})

	t.Run("rebuild without material change does not fire", func(t *testing.T) {
		req := d.stats.requested.Load()
		drain(d.PolicyChanges())
		// A new label matters to the NetworkPolicy evaluator, not to peers.
		h.updatePod("agent-1", func(p *corev1.Pod) { p.Labels["team"] = "net" })
		require.Eventually(t, func() bool { return d.stats.covered.Load() > req }, wait, poll,
			"a rebuild that saw the label change")
		assert.False(t, drain(d.Changes()))
		assert.Equal(t, gen, d.Snapshot().Generation)
		fired(t, d.PolicyChanges(), "agent pod labels changed")
	})

	t.Run("policy objects fire PolicyChanges only", func(t *testing.T) {
		req := d.stats.requested.Load()
		_, err := cs.NetworkingV1().NetworkPolicies(testNS).Create(h.ctx(),
			&networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Name: "deny", Namespace: testNS}}, metav1.CreateOptions{})
		require.NoError(t, err)
		fired(t, d.PolicyChanges(), "policy created")
		nps, err := d.ListNetworkPolicies()
		require.NoError(t, err)
		assert.Len(t, nps, 1)
		assert.Equal(t, req, d.stats.requested.Load(), "policies do not rebuild the Snapshot")
		assert.False(t, drain(d.Changes()))
	})
}

func TestRestartRebuildsState(t *testing.T) {
	noLeaks(t)
	cs := fake.NewClientset(append(baseCluster(),
		testNode("n1", "linux", ""),
		agentPod("agent-1", "n1", "10.0.1.1"),
	)...)
	h1 := start(t, cs)
	h1.waitPeers(peer("n1", "linux", "", "agent-1", "10.0.1.1"))
	require.NoError(t, h1.stop())
	assert.False(t, h1.d.Synced(), "not synced once Run returned")

	// The cluster changes while no agent watches.
	ctx := t.Context()
	require.NoError(t, cs.CoreV1().Pods(testNS).Delete(ctx, "agent-1", metav1.DeleteOptions{}))
	_, err := cs.CoreV1().Nodes().Create(ctx, testNode("n2", "windows", "zone-w"), metav1.CreateOptions{})
	require.NoError(t, err)
	_, err = cs.CoreV1().Pods(testNS).Create(ctx, agentPod("agent-2", "n2", "10.0.2.1"), metav1.CreateOptions{})
	require.NoError(t, err)

	h2 := start(t, cs)
	s := h2.d.Snapshot()
	assert.Equal(t, []Peer{peer("n2", "windows", "zone-w", "agent-2", "10.0.2.1")}, s.Peers)
	assert.Equal(t, uint64(1), s.Generation)
}

// flakyWatch stands between the pod informer and the fake clientset's tracker.
// It can lose events and then break the watch, with the next watch call
// refused as "resource version too old": what happens when an agent's watch
// stalls past etcd compaction or the API server restarts.
type flakyWatch struct {
	tracker k8stesting.ObjectTracker

	mu       sync.Mutex
	muted    *atomic.Bool // the current watch's
	expire   bool
	inner    watch.Interface
	watchers sync.WaitGroup
}

func newFlakyWatch(cs *fake.Clientset, resource string) *flakyWatch {
	f := &flakyWatch{tracker: cs.Tracker()}
	cs.PrependWatchReactor(resource, f.react)
	return f
}

func (f *flakyWatch) react(action k8stesting.Action) (bool, watch.Interface, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.expire {
		f.expire = false
		return true, nil, apierrors.NewResourceExpired("too old resource version")
	}
	var opts []metav1.ListOptions
	if wa, ok := action.(k8stesting.WatchActionImpl); ok {
		opts = append(opts, wa.ListOptions)
	}
	inner, err := f.tracker.Watch(action.GetResource(), action.GetNamespace(), opts...)
	if err != nil {
		return true, nil, err
	}
	// Muting is per watch: events already queued on a muted watch stay lost.
	muted := new(atomic.Bool)
	f.inner, f.muted = inner, muted
	out := make(chan watch.Event)
	pw := watch.NewProxyWatcher(out)
	f.watchers.Go(func() {
		defer close(out)
		defer inner.Stop()
		for {
			select {
			case ev, ok := <-inner.ResultChan():
				if !ok {
					return
				}
				if muted.Load() {
					continue
				}
				select {
				case out <- ev:
				case <-pw.StopChan():
					return
				}
			case <-pw.StopChan():
				return
			}
		}
	})
	return true, pw, nil
}

// watching reports whether the informer has opened its watch; the list
// that comes first can make peers visible before it has.
func (f *flakyWatch) watching() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.muted != nil
}

func (f *flakyWatch) mute() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.muted.Store(true)
}

// breakWatch closes the current watch and refuses the next one with 410 Gone.
func (f *flakyWatch) breakWatch() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.expire = true
	f.inner.Stop()
}

func TestMissedDeleteArrivesAsTombstone(t *testing.T) {
	noLeaks(t)
	cs := fake.NewClientset(append(baseCluster(),
		testNode("n1", "linux", ""), agentPod("agent-1", "n1", "10.0.1.1"),
		testNode("n2", "linux", ""), agentPod("agent-2", "n2", "10.0.2.1"),
	)...)
	fw := newFlakyWatch(cs, "pods")
	t.Cleanup(fw.watchers.Wait)
	h := start(t, cs)
	h.waitPeers(
		peer("n1", "linux", "", "agent-1", "10.0.1.1"),
		peer("n2", "linux", "", "agent-2", "10.0.2.1"),
	)

	require.Eventually(t, fw.watching, wait, poll)
	fw.mute()
	h.deletePod("agent-1")
	// The delete was lost: the cache still has the pod.
	_, err := h.d.pods.Pods(testNS).Get("agent-1")
	require.NoError(t, err)
	assert.Len(t, h.d.Snapshot().Peers, 2)

	// The reflector relists, finds agent-1 gone and reports it as a tombstone.
	fw.breakWatch()
	h.waitPeers(peer("n2", "linux", "", "agent-2", "10.0.2.1"))
	assert.NotZero(t, h.d.stats.tombstones.Load())
}

func TestRunStopsOnCancel(t *testing.T) {
	noLeaks(t)
	h := start(t, fake.NewClientset(baseCluster()...), func(c *Config) { c.WatchNetworkPolicies = true })
	require.NoError(t, h.stop(), "Run returns nil when its context ends")
	// goleak (above) retries until goroutines are gone; this checks that
	// none is still running at the moment Run returns, except the one client-go
	// itself never waits for: each informer's controller closes its queue from
	// a goroutine of its own once the context ends (seen still running under
	// load in 1 of 40 runs).
	running := goroutinesIn("k8s.io/client-go/tools/cache.", "agent/discovery.(*Discovery)")
	running = slices.DeleteFunc(running, func(g string) bool {
		return strings.Contains(g, "cache.(*controller).RunWithContext.func1()")
	})
	assert.Empty(t, running)
	assert.False(t, h.d.Synced())
	// The last Snapshot stays readable.
	assert.Equal(t, uint64(1), h.d.Snapshot().Generation)

	err := h.d.Run(context.Background())
	assert.ErrorContains(t, err, "more than once")
}

func TestSyncFailure(t *testing.T) {
	forbidNodes := func(cs *fake.Clientset) {
		cs.PrependReactor("list", "nodes", func(k8stesting.Action) (bool, k8sruntime.Object, error) {
			return true, nil, apierrors.NewForbidden(schema.GroupResource{Resource: "nodes"}, "", errors.New("RBAC says no"))
		})
	}

	t.Run("timeout names the informer", func(t *testing.T) {
		noLeaks(t)
		cs := fake.NewClientset(baseCluster()...)
		forbidNodes(cs)
		cfg := testConfig(cs)
		cfg.SyncTimeout = 50 * time.Millisecond
		d, err := New(cfg)
		require.NoError(t, err)

		start := time.Now()
		err = d.Run(t.Context())
		require.Error(t, err)
		assert.Less(t, time.Since(start), wait)
		assert.ErrorContains(t, err, "caches not synced (nodes)")
		assert.ErrorContains(t, err, "RBAC")
		assert.False(t, d.Synced())
	})

	t.Run("canceled context", func(t *testing.T) {
		noLeaks(t)
		cs := fake.NewClientset(baseCluster()...)
		forbidNodes(cs)
		d, err := New(testConfig(cs))
		require.NoError(t, err)

		ctx, cancel := context.WithCancel(t.Context())
		errc := make(chan error, 1)
		go func() { errc <- d.Run(ctx) }()
		// Wait until the node informer has tried, then give up.
		require.Eventually(t, func() bool { return hasAction(cs, "list", "nodes") }, wait, poll)
		cancel()
		select {
		case err := <-errc:
			assert.ErrorIs(t, err, context.Canceled)
			assert.ErrorContains(t, err, "nodes")
		case <-time.After(wait):
			t.Fatal("Run did not return")
		}
	})
}

// goroutinesIn returns the stacks of goroutines with a frame in any of pkgs.
func goroutinesIn(pkgs ...string) []string {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	var out []string
	for _, g := range strings.Split(string(buf), "\n\n") {
		for _, p := range pkgs {
			if strings.Contains(g, p) {
				out = append(out, g)
				break
			}
		}
	}
	return out
}

func hasAction(cs *fake.Clientset, verb, resource string) bool {
	for _, a := range cs.Actions() {
		if a.GetVerb() == verb && a.GetResource().Resource == resource {
			return true
		}
	}
	return false
}

// TestInformerScoping pins what the agent asks the API server for, which is
// what the RBAC rules in the package doc allow.
func TestInformerScoping(t *testing.T) {
	for _, policies := range []bool{false, true} {
		t.Run(map[bool]string{false: "without policies", true: "with policies"}[policies], func(t *testing.T) {
			noLeaks(t)
			cs := fake.NewClientset(baseCluster()...)
			start(t, cs, func(c *Config) { c.WatchNetworkPolicies = policies })

			want := []string{
				"list endpointslices ns=xosprobe labels=kubernetes.io/service-name in (xosprobe-linux,xosprobe-windows) fields=",
				"list nodes ns= labels= fields=",
				"list pods ns=xosprobe labels=app.kubernetes.io/component=agent,app.kubernetes.io/name=xosprobe fields=",
				"list services ns=xosprobe labels= fields=metadata.name=xosprobe-linux",
				"list services ns=xosprobe labels= fields=metadata.name=xosprobe-windows",
			}
			if policies {
				// Our namespace's policies and our Namespace only: a Role and a
				// resourceNames rule grant them.
				want = append(want, "list namespaces ns= labels= fields=metadata.name=xosprobe", "list networkpolicies ns=xosprobe labels= fields=")
			}
			for _, w := range slices.Clone(want) {
				want = append(want, "watch"+strings.TrimPrefix(w, "list"))
			}
			if policies {
				// API discovery for the policy kinds only some clusters serve.
				want = append(want, "get group ns= labels= fields=", "get resource ns= labels= fields=")
			}
			sort.Strings(want)

			// Watches start right after the lists; wait for all of them.
			require.EventuallyWithT(t, func(c *assert.CollectT) {
				assert.Equal(c, want, requests(cs))
			}, wait, poll)
		})
	}
}

// requests summarizes the distinct API requests made so far.
func requests(cs *fake.Clientset) []string {
	seen := map[string]bool{}
	for _, a := range cs.Actions() {
		var l, f string
		switch a := a.(type) {
		case k8stesting.ListAction:
			l, f = str(a.GetListRestrictions().Labels), str(a.GetListRestrictions().Fields)
		case k8stesting.WatchAction:
			l, f = str(a.GetWatchRestrictions().Labels), str(a.GetWatchRestrictions().Fields)
		}
		seen[a.GetVerb()+" "+a.GetResource().Resource+" ns="+a.GetNamespace()+" labels="+l+" fields="+f] = true
	}
	out := make([]string, 0, len(seen))
	for k := range seen {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func str(s interface{ String() string }) string {
	if s == nil {
		return ""
	}
	return s.String()
}

func TestListersForEvaluator(t *testing.T) {
	t.Run("policies watched", func(t *testing.T) {
		noLeaks(t)
		cs := fake.NewClientset(append(baseCluster(),
			agentPod("agent-1", "n1", "10.0.1.1", notReady), // any state: the evaluator wants them all
			&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: testNS, Labels: map[string]string{"app": "web"}}},
			&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "other-ns", Namespace: "default", Labels: clone(agentLabels)}},
			&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: testNS}},
			&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "default"}},
			&networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: testNS}},
			&networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Name: "elsewhere", Namespace: "default"}},
		)...)
		h := start(t, cs, func(c *Config) { c.WatchNetworkPolicies = true })

		var d interface {
			ListNamespaces() ([]*corev1.Namespace, error)
			ListPods() ([]*corev1.Pod, error)
			ListNetworkPolicies() ([]*networkingv1.NetworkPolicy, error)
		} = h.d // the method set of netpol.Lister

		pods, err := d.ListPods()
		require.NoError(t, err)
		assert.ElementsMatch(t, []string{selfPod, "agent-1"}, names(pods))
		nss, err := d.ListNamespaces()
		require.NoError(t, err)
		assert.Contains(t, names(nss), testNS) // the fake client ignores field selectors
		nps, err := d.ListNetworkPolicies()
		require.NoError(t, err)
		assert.Equal(t, []string{"p"}, names(nps))
	})

	t.Run("policies not watched", func(t *testing.T) {
		d, err := New(testConfig(fake.NewClientset()))
		require.NoError(t, err)
		_, err = d.ListNamespaces()
		assert.ErrorIs(t, err, ErrPoliciesNotWatched)
		_, err = d.ListNetworkPolicies()
		assert.ErrorIs(t, err, ErrPoliciesNotWatched)
		pods, err := d.ListPods()
		require.NoError(t, err, "before Run the caches are just empty")
		assert.Empty(t, pods)
	})
}

func names[T metav1.Object](objs []T) []string {
	out := make([]string, len(objs))
	for i, o := range objs {
		out[i] = o.GetName()
	}
	return out
}

func TestSnapshotBeforeSync(t *testing.T) {
	d, err := New(testConfig(fake.NewClientset()))
	require.NoError(t, err)
	assert.Equal(t, Snapshot{}, d.Snapshot())
	assert.False(t, d.Synced())
	assert.False(t, drain(d.Changes()))
}

// TestManagedFieldsNotCached checks the transform is wired into the factories.
func TestManagedFieldsNotCached(t *testing.T) {
	noLeaks(t)
	n := testNode("n1", "linux", "")
	n.Annotations = map[string]string{"a": "b"}
	n.Status.Images = []corev1.ContainerImage{{Names: []string{"img"}}}
	p := agentPod("agent-1", "n1", "10.0.1.1")
	p.ManagedFields = []metav1.ManagedFieldsEntry{{Manager: "kubelet"}}
	h := start(t, fake.NewClientset(append(baseCluster(), n, p, testSlice("s", linuxSvc))...))

	cn, err := h.d.nodes.Get("n1")
	require.NoError(t, err)
	assert.Nil(t, cn.Annotations)
	assert.Empty(t, cn.Status.Images)
	cp, err := h.d.pods.Pods(testNS).Get("agent-1")
	require.NoError(t, err)
	assert.Empty(t, cp.ManagedFields)
	cl, err := h.d.slices.EndpointSlices(testNS).Get("s")
	require.NoError(t, err)
	assert.Equal(t, linuxSvc, cl.Labels[discoveryv1.LabelServiceName])
}
