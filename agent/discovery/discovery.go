package discovery

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/selection"
	"k8s.io/client-go/informers"
	corelisters "k8s.io/client-go/listers/core/v1"
	discoverylisters "k8s.io/client-go/listers/discovery/v1"
	networkinglisters "k8s.io/client-go/listers/networking/v1"
	"k8s.io/client-go/tools/cache"
)

// Log attribute keys. Fixed so that log queries survive refactoring.
const (
	keyComponent  = "component"
	keyInformer   = "informer"
	keyKey        = "key"
	keyErr        = "err"
	keyGeneration = "generation"
	keyPeers      = "peers"
	keyByOS       = "peers_by_os"
	keyServices   = "services"
	keyPod        = "pod"
	keyNode       = "node"
	keyCount      = "count"
	keyElapsed    = "elapsed"
	keySelector   = "selector"
)

// minRebuildInterval spaces snapshot rebuilds during event storms (a rolling
// update of 5,000 agents, an initial list): the first event after a quiet
// period is handled at once, the rest are coalesced into one rebuild per
// interval.
const minRebuildInterval = 200 * time.Millisecond

// ErrPoliciesNotWatched is returned by ListNamespaces and ListNetworkPolicies
// when Config.WatchNetworkPolicies is off.
var ErrPoliciesNotWatched = errors.New("discovery: NetworkPolicies and Namespaces are not watched (Config.WatchNetworkPolicies is off)")

// Discovery maintains the agent's view of the cluster from shared informers.
// Create it with New, start it with Run; the other methods are safe for
// concurrent use at any time.
type Discovery struct {
	cfg Config
	sel labels.Selector
	log *slog.Logger

	factories []informers.SharedInformerFactory
	informers []namedInformer

	pods       corelisters.PodLister
	nodes      corelisters.NodeLister
	services   map[string]corelisters.ServiceLister // by Service name
	slices     discoverylisters.EndpointSliceLister // nil without Services
	policies   networkinglisters.NetworkPolicyLister
	namespaces corelisters.NamespaceLister
	// policy follows the policy kinds found through API discovery.
	policy clusterPolicies

	// dirty asks for a rebuild; changes and policyChanges tell consumers.
	// All three hold at most one pending signal.
	dirty         chan struct{}
	changes       chan struct{}
	policyChanges chan struct{}

	snap    atomic.Pointer[Snapshot]
	started atomic.Bool
	synced  atomic.Bool

	minInterval time.Duration
	stats       stats

	// last is the previous build's report; only Run's goroutine touches it.
	last report
}

// stats count what the handlers and the rebuild loop did; tests use them to
// assert that something did not happen without sleeping.
type stats struct {
	ignored    atomic.Uint64 // updates that changed nothing we read
	tombstones atomic.Uint64 // deletes seen only through a relist
	// requested counts rebuild requests; covered is the count a completed
	// rebuild had seen when it started, so covered >= n means the caches as
	// of request n are reflected in the Snapshot.
	requested atomic.Uint64
	covered   atomic.Uint64
}

type namedInformer struct {
	name string
	inf  cache.SharedIndexInformer
	reg  cache.ResourceEventHandlerRegistration
}

// New validates cfg and sets up the informers; nothing talks to the API server
// until Run.
func New(cfg Config) (*Discovery, error) {
	cfg, sel, err := cfg.normalized()
	if err != nil {
		return nil, err
	}
	d := &Discovery{
		cfg:           cfg,
		sel:           sel,
		log:           cfg.Logger.With(keyComponent, "discovery"),
		services:      make(map[string]corelisters.ServiceLister),
		dirty:         make(chan struct{}, 1),
		changes:       make(chan struct{}, 1),
		policyChanges: make(chan struct{}, 1),
		minInterval:   minRebuildInterval,
		policy:        clusterPolicies{kinds: map[schema.GroupKind]*policyKind{}},
	}
	if err := d.setup(); err != nil {
		return nil, fmt.Errorf("discovery: %w", err)
	}
	return d, nil
}

// factory returns a shared informer factory with the given scope; every
// informer it makes strips the fields we never read.
func (d *Discovery) factory(namespace string, tweak func(*metav1.ListOptions)) informers.SharedInformerFactory {
	opts := []informers.SharedInformerOption{informers.WithTransform(slim)}
	if namespace != "" {
		opts = append(opts, informers.WithNamespace(namespace))
	}
	if tweak != nil {
		opts = append(opts, informers.WithTweakListOptions(tweak))
	}
	f := informers.NewSharedInformerFactoryWithOptions(d.cfg.Client, d.cfg.ResyncPeriod, opts...)
	d.factories = append(d.factories, f)
	return f
}

func (d *Discovery) setup() error {
	ns := d.cfg.Namespace
	var errs []error
	add := func(err error) { errs = append(errs, err) }

	// Agent pods of both DaemonSets, in our namespace only.
	selector := d.sel.String()
	pods := d.factory(ns, func(o *metav1.ListOptions) { o.LabelSelector = selector }).Core().V1().Pods()
	d.pods = pods.Lister()
	add(register(d, "agent-pods", pods.Informer(), affectsPeers|affectsPolicy, podDiff))

	// Nodes are cluster-scoped and cannot be narrowed to "nodes running an
	// agent"; slim() keeps only their metadata and spec in the cache.
	cluster := d.factory("", nil)
	nodes := cluster.Core().V1().Nodes()
	d.nodes = nodes.Lister()
	add(register(d, "nodes", nodes.Informer(), affectsPeers, nodeDiff))

	// One informer per probe Service: a metadata.name field selector lets
	// RBAC restrict list/watch to those names (resourceNames), which a label
	// selector or a namespace-wide watch would not.
	names := slices.Sorted(maps.Values(d.cfg.Services))
	names = slices.Compact(names)
	for _, name := range names {
		sel := fields.OneTermEqualSelector("metadata.name", name).String()
		svcs := d.factory(ns, func(o *metav1.ListOptions) { o.FieldSelector = sel }).Core().V1().Services()
		d.services[name] = svcs.Lister()
		add(register(d, "service/"+name, svcs.Informer(), affectsPeers, serviceDiff))
	}
	if len(names) > 0 {
		req, err := labels.NewRequirement(discoveryv1.LabelServiceName, selection.In, names)
		if err != nil {
			return fmt.Errorf("endpointslice selector: %w", err)
		}
		sel := labels.NewSelector().Add(*req).String()
		eps := d.factory(ns, func(o *metav1.ListOptions) { o.LabelSelector = sel }).Discovery().V1().EndpointSlices()
		d.slices = eps.Lister()
		add(register(d, "endpointslices", eps.Informer(), affectsPeers, sliceDiff))
	}

	if d.cfg.WatchNetworkPolicies {
		// A NetworkPolicy selects pods of its own namespace only, and every
		// probe runs between agent pods: the policies and the labels of our
		// namespace decide every verdict, so RBAC needs nothing wider (a
		// Role, and get/list/watch on our Namespace by resourceNames).
		nps := d.factory(ns, nil).Networking().V1().NetworkPolicies()
		d.policies = nps.Lister()
		add(register(d, "networkpolicies", nps.Informer(), affectsPolicy, policyDiff))
		self := fields.OneTermEqualSelector("metadata.name", ns).String()
		nss := d.factory("", func(o *metav1.ListOptions) { o.FieldSelector = self }).Core().V1().Namespaces()
		d.namespaces = nss.Lister()
		add(register(d, "namespaces", nss.Informer(), affectsPolicy, namespaceDiff))
	}
	return errors.Join(errs...)
}

// Run starts the informers, waits for their caches to sync and then keeps the
// Snapshot current until ctx is done. It returns nil after ctx is done, or an
// error if the caches did not sync within Config.SyncTimeout (or before ctx
// ended). Every goroutine it started has exited when it returns. Run may be
// called once.
func (d *Discovery) Run(ctx context.Context) error {
	if !d.started.CompareAndSwap(false, true) {
		return errors.New("discovery: Run called more than once")
	}
	ctx, cancel := context.WithCancel(ctx)
	var rediscovery sync.WaitGroup
	defer func() {
		cancel()
		for _, f := range d.factories {
			f.Shutdown() // waits for the informer goroutines
		}
		rediscovery.Wait()
		d.stopPolicyInformers()
	}()

	start := time.Now()
	for _, f := range d.factories {
		f.StartWithContext(ctx)
	}
	if err := d.waitForSync(ctx); err != nil {
		return err
	}

	if d.cfg.WatchNetworkPolicies {
		d.discoverPolicies(ctx)
		rediscovery.Add(1)
		go func() {
			defer rediscovery.Done()
			d.rediscoverPolicies(ctx, d.cfg.PolicyRediscoverInterval)
		}()
	}

	// Everything that arrived so far is in the caches; build from them now.
	select {
	case <-d.dirty:
	default:
	}
	d.rebuild()
	d.synced.Store(true)
	defer d.synced.Store(false)
	if d.cfg.WatchNetworkPolicies {
		signal(d.policyChanges)
	}
	s := d.Snapshot()
	d.log.Info("caches synced", keyElapsed, time.Since(start).Round(time.Millisecond),
		keyPeers, len(s.Peers), keyNode, s.Self.Node)

	for {
		select {
		case <-ctx.Done():
			return nil
		case <-d.dirty:
		}
		d.rebuild()
		// Coalesce a burst: further events wait here and cost one rebuild.
		t := time.NewTimer(d.minInterval)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
	}
}

func (d *Discovery) waitForSync(ctx context.Context) error {
	ctx, cancel := context.WithTimeoutCause(ctx, d.cfg.SyncTimeout,
		fmt.Errorf("no complete initial list within %s; check the RBAC rules for these resources and that the API server is reachable", d.cfg.SyncTimeout))
	defer cancel()
	// Waiting for the handlers too (reg) means the initial adds have been
	// seen, so they do not cause a second rebuild right after the first.
	checkers := make([]cache.DoneChecker, 0, 2*len(d.informers))
	for _, in := range d.informers {
		checkers = append(checkers, in.inf.HasSyncedChecker(), in.reg.HasSyncedChecker())
	}
	if cache.WaitFor(ctx, "", checkers...) {
		return nil
	}
	var unsynced []string
	for _, in := range d.informers {
		if !in.inf.HasSynced() || !in.reg.HasSynced() {
			unsynced = append(unsynced, in.name)
		}
	}
	if len(unsynced) == 0 {
		return nil
	}
	return fmt.Errorf("discovery: caches not synced (%s): %w", strings.Join(unsynced, ", "), context.Cause(ctx))
}

// rebuild computes a Snapshot from the caches and publishes it if it differs
// from the current one.
func (d *Discovery) rebuild() {
	seen := d.stats.requested.Load()
	defer d.stats.covered.Store(seen)
	next, rep := build(&d.cfg, listerSource{d})
	d.logReport(rep)

	prev := d.snap.Load()
	if prev != nil && prev.sameContent(next) {
		return
	}
	if prev != nil {
		next.Generation = prev.Generation
	}
	next.Generation++
	d.snap.Store(&next)
	signal(d.changes)

	if !d.log.Enabled(context.Background(), slog.LevelDebug) {
		return
	}
	byOS := make(map[string]int)
	for _, p := range next.Peers {
		byOS[p.OS]++
	}
	svcs := make(map[string]int, len(next.Services))
	for osName, s := range next.Services {
		svcs[osName] = s.ReadyEndpoints
	}
	d.log.Debug("snapshot updated", keyGeneration, next.Generation, keyPeers, len(next.Peers),
		keyByOS, byOS, keyServices, svcs)
}

// logReport logs conditions when they start or stop, not on every rebuild.
func (d *Discovery) logReport(rep report) {
	prev := d.last
	d.last = rep
	first := d.snap.Load() == nil
	if rep.selfPodCached != prev.selfPodCached || first {
		if rep.selfPodCached {
			d.log.Debug("own pod found in cache", keyPod, d.cfg.PodName)
		} else {
			d.log.Warn("own pod not in cache; check that it matches the agent selector",
				keyPod, d.cfg.PodName, keySelector, d.sel.String())
		}
	}
	if !rep.selfNodeCached && (prev.selfNodeCached || first) {
		d.log.Warn("own node not in cache", keyNode, d.cfg.NodeName)
	}
	if !slices.Equal(rep.missingServices, prev.missingServices) && len(rep.missingServices) > 0 {
		d.log.Warn("probe services missing", keyServices, rep.missingServices)
	}
	if rep.podsOnUnknownNodes != prev.podsOnUnknownNodes && rep.podsOnUnknownNodes > 0 {
		d.log.Debug("ready agent pods on nodes not in cache", keyCount, rep.podsOnUnknownNodes)
	}
}

// Snapshot returns the current view; it is the zero Snapshot before the first
// sync. The returned value shares its slice and map with other callers: read,
// don't modify (or Clone).
func (d *Discovery) Snapshot() Snapshot {
	if s := d.snap.Load(); s != nil {
		return *s
	}
	return Snapshot{}
}

// Changes receives a value after the first sync and whenever Self, Peers or
// Services change (Snapshot.Generation grows). Notifications coalesce: one
// pending value stands for any number of changes, so read Snapshot after
// receiving. Resyncs and updates to fields the Snapshot does not contain
// (node heartbeats, annotations, pod status details) do not fire it. Meant for
// a single consumer.
func (d *Discovery) Changes() <-chan struct{} { return d.changes }

// PolicyChanges receives a value after the first sync and whenever a
// NetworkPolicy, a Namespace's labels, or an agent pod's labels or IPs change,
// i.e. when an Evaluator built from the List methods would differ. Coalescing
// and single-consumer like Changes; never fires without WatchNetworkPolicies.
func (d *Discovery) PolicyChanges() <-chan struct{} { return d.policyChanges }

// Synced reports whether Run has synced the caches and is still running.
func (d *Discovery) Synced() bool { return d.synced.Load() }

// ListPods returns the agent pods (both OSes, any state) from the cache. The
// NetworkPolicy checks only judge agent-to-agent traffic, so these are all the
// pods the evaluator needs. The objects are shared with the cache: read-only.
func (d *Discovery) ListPods() ([]*corev1.Pod, error) {
	return d.pods.Pods(d.cfg.Namespace).List(d.sel)
}

// ListNamespaces returns every Namespace from the cache (read-only objects).
func (d *Discovery) ListNamespaces() ([]*corev1.Namespace, error) {
	if d.namespaces == nil {
		return nil, ErrPoliciesNotWatched
	}
	return d.namespaces.List(labels.Everything())
}

// ListNetworkPolicies returns every NetworkPolicy from the cache (read-only objects).
func (d *Discovery) ListNetworkPolicies() ([]*networkingv1.NetworkPolicy, error) {
	if d.policies == nil {
		return nil, ErrPoliciesNotWatched
	}
	return d.policies.List(labels.Everything())
}

// listerSource reads the informer caches for build.
type listerSource struct{ d *Discovery }

func (s listerSource) agentPods() []*corev1.Pod {
	// Listing an indexer cannot fail.
	pods, _ := s.d.ListPods()
	return pods
}

func (s listerSource) agentPod(name string) *corev1.Pod {
	p, err := s.d.pods.Pods(s.d.cfg.Namespace).Get(name)
	if err != nil || !s.d.sel.Matches(labels.Set(p.Labels)) {
		return nil
	}
	return p
}

func (s listerSource) node(name string) *corev1.Node {
	n, err := s.d.nodes.Get(name)
	if err != nil {
		return nil
	}
	return n
}

func (s listerSource) service(name string) *corev1.Service {
	l, ok := s.d.services[name]
	if !ok {
		return nil
	}
	svc, err := l.Services(s.d.cfg.Namespace).Get(name)
	if err != nil {
		return nil
	}
	return svc
}

func (s listerSource) endpointSlices(service string) []*discoveryv1.EndpointSlice {
	if s.d.slices == nil {
		return nil
	}
	eps, _ := s.d.slices.EndpointSlices(s.d.cfg.Namespace).List(
		labels.SelectorFromSet(labels.Set{discoveryv1.LabelServiceName: service}))
	return eps
}

// watchErrorHandler logs reflector errors through slog. The reflector itself
// backs off and relists; nothing else is needed to recover from an API server
// restart or an expired resource version.
func (d *Discovery) watchErrorHandler(name string) cache.WatchErrorHandlerWithContext {
	return func(_ context.Context, _ *cache.Reflector, err error) {
		switch {
		case errors.Is(err, io.EOF):
			// Watch closed normally.
		case apierrors.IsResourceExpired(err) || apierrors.IsGone(err) || errors.Is(err, io.ErrUnexpectedEOF):
			d.log.Debug("watch closed, relisting", keyInformer, name, keyErr, err)
		default:
			d.log.Warn("list/watch failed, retrying", keyInformer, name, keyErr, err)
		}
	}
}
