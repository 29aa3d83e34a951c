package discovery

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/tools/cache"
	"sigs.k8s.io/network-policy-api/apis/v1alpha1"
	"sigs.k8s.io/network-policy-api/apis/v1alpha2"

	"github.com/xosprobe/xosprobe/agent/netpol"
)

// This file follows the policy kinds that only some clusters serve: the
// policy.networking.k8s.io kinds the evaluator models (ClusterNetworkPolicy,
// AdminNetworkPolicy, BaselineAdminNetworkPolicy) and the CNI kinds it does not
// (Calico, Cilium, Antrea, ...). API discovery finds them, at start and every
// Config.PolicyRediscoverInterval so CRDs installed later are seen; each found
// kind gets an informer through the dynamic client. A kind that is served but
// cannot be listed (403, no list verb, not synced yet) is reported as
// unreadable, which makes the evaluator answer UNKNOWN rather than pretend
// there are no such policies.

const (
	groupPolicyNetworking = "policy.networking.k8s.io"

	keyKind     = "kind"
	keyResource = "resource"
)

// isPolicyGroup reports the API groups known to hold policies: when their
// discovery fails, their kinds count as unreadable rather than absent.
func isPolicyGroup(g string) bool {
	switch g {
	case groupPolicyNetworking, "projectcalico.org", "crd.projectcalico.org", "cilium.io", "crd.antrea.io":
		return true
	}
	return false
}

// policyKind is one served kind that the agent follows.
type policyKind struct {
	gvr        schema.GroupVersionResource
	kind       string
	namespaced bool
	modelled   bool

	inf    cache.SharedIndexInformer
	cancel context.CancelFunc
	done   chan struct{}

	mu sync.Mutex
	// unreadable says why the objects cannot be seen now; empty when the
	// last list succeeded.
	unreadable string
	loggedDeny bool
}

// clusterPolicies is the set of followed kinds, replaced by rediscovery.
type clusterPolicies struct {
	mu    sync.Mutex
	kinds map[schema.GroupKind]*policyKind
	// undiscoverable lists groups whose discovery failed: their kinds
	// cannot be known.
	undiscoverable map[string]string
	discovered     bool
}

// discoverPolicies runs API discovery and starts or stops informers to match
// what the server serves. It reports whether the set of kinds changed.
func (d *Discovery) discoverPolicies(ctx context.Context) bool {
	groups, lists, err := d.cfg.APIDiscovery.ServerGroupsAndResources()
	failed := map[string]string{}
	var gdf *discovery.ErrGroupDiscoveryFailed
	switch {
	case err == nil:
	case errors.As(err, &gdf):
		for gv, gerr := range gdf.Groups {
			failed[gv.Group] = gerr.Error()
		}
	default:
		// Nothing is known: keep what was found before, and say so.
		d.log.Warn("API discovery failed; policy kinds not re-examined", keyErr, err)
		d.policy.mu.Lock()
		defer d.policy.mu.Unlock()
		if !d.policy.discovered {
			d.policy.undiscoverable = map[string]string{"*": err.Error()}
			return true
		}
		return false
	}

	// Prefer, per kind, the version the server lists first for its group.
	rank := map[schema.GroupVersion]int{}
	for _, g := range groups {
		for i, v := range g.Versions {
			rank[schema.GroupVersion{Group: g.Name, Version: v.Version}] = i
			if v.Version == g.PreferredVersion.Version {
				rank[schema.GroupVersion{Group: g.Name, Version: v.Version}] = -1
			}
		}
	}
	want := map[schema.GroupKind]*policyKind{}
	wantRank := map[schema.GroupKind]int{}
	for _, l := range lists {
		gv, err := schema.ParseGroupVersion(l.GroupVersion)
		if err != nil {
			continue
		}
		for _, r := range l.APIResources {
			if strings.Contains(r.Name, "/") {
				continue // subresource
			}
			modelled := gv.Group == groupPolicyNetworking && (r.Kind == "ClusterNetworkPolicy" || r.Kind == "AdminNetworkPolicy" || r.Kind == "BaselineAdminNetworkPolicy")
			if isForeign, _ := netpol.ForeignKind(gv.Group, r.Kind); !modelled && !isForeign {
				continue
			}
			gk := schema.GroupKind{Group: gv.Group, Kind: r.Kind}
			rk, ok := rank[gv]
			if !ok {
				rk = 1 << 20
			}
			if prev, seen := wantRank[gk]; seen && prev <= rk {
				continue
			}
			pk := &policyKind{gvr: gv.WithResource(r.Name), kind: r.Kind, namespaced: r.Namespaced, modelled: modelled}
			if !slices.Contains(r.Verbs, "list") || !slices.Contains(r.Verbs, "watch") {
				pk.unreadable = "the API server does not allow list and watch on " + r.Name
			}
			want[gk], wantRank[gk] = pk, rk
		}
	}
	undiscoverable := map[string]string{}
	for g, why := range failed {
		if isPolicyGroup(g) {
			undiscoverable[g] = why
		}
	}

	d.policy.mu.Lock()
	defer d.policy.mu.Unlock()
	changed := !d.policy.discovered || len(undiscoverable) != len(d.policy.undiscoverable)
	d.policy.discovered = true
	d.policy.undiscoverable = undiscoverable
	for gk, cur := range d.policy.kinds {
		// A group whose discovery failed this time keeps its informers.
		if w, ok := want[gk]; ok && w.gvr == cur.gvr {
			delete(want, gk)
			continue
		}
		if _, ok := failed[gk.Group]; ok {
			continue
		}
		cur.cancel()
		<-cur.done
		delete(d.policy.kinds, gk)
		d.log.Info("policy kind no longer served", keyKind, gk.String())
		changed = true
	}
	for gk, pk := range want {
		d.startPolicyInformer(ctx, pk)
		d.policy.kinds[gk] = pk
		d.log.Info("following policy kind", keyKind, gk.String(), keyResource, pk.gvr.String(), "modelled", pk.modelled)
		changed = true
	}
	return changed
}

func (d *Discovery) startPolicyInformer(ctx context.Context, pk *policyKind) {
	ctx, pk.cancel = context.WithCancel(ctx)
	pk.done = make(chan struct{})
	if pk.unreadable != "" || d.cfg.Dynamic == nil {
		if pk.unreadable == "" {
			pk.unreadable = "no dynamic client to list " + pk.gvr.Resource
		}
		close(pk.done)
		return
	}
	var res dynamic.ResourceInterface = d.cfg.Dynamic.Resource(pk.gvr)
	if pk.namespaced {
		// A namespaced policy (Calico's, Cilium's, Antrea's NetworkPolicy)
		// selects pods of its own namespace only: ours is all that can
		// apply to a probe, and all a Role grants.
		res = d.cfg.Dynamic.Resource(pk.gvr).Namespace(d.cfg.Namespace)
	}
	lw := &cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			l, err := res.List(ctx, o)
			pk.listed(d, err)
			return l, err
		},
		// With watch-list (the default since client-go 1.35) the initial
		// list comes through the watch, so its outcome counts too.
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			w, err := res.Watch(ctx, o)
			pk.listed(d, err)
			return w, err
		},
	}
	// The wrapper carries over whether the client supports watch-list.
	pk.inf = cache.NewSharedIndexInformer(cache.ToListWatcherWithWatchListSemantics(lw, d.cfg.Dynamic),
		&unstructured.Unstructured{}, d.cfg.ResyncPeriod, cache.Indexers{})
	if !pk.modelled {
		// Only that an object exists, and where, matters.
		_ = pk.inf.SetTransform(metadataOnly)
	}
	_ = pk.inf.SetWatchErrorHandlerWithContext(d.watchErrorHandler(pk.gvr.String()))
	_, _ = pk.inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: func(any) { d.notify(affectsPolicy) },
		UpdateFunc: func(o, n any) {
			om, err1 := meta.Accessor(o)
			nm, err2 := meta.Accessor(n)
			// Status updates keep the generation; spec changes bump it.
			if err1 == nil && err2 == nil && om.GetGeneration() == nm.GetGeneration() && om.GetGeneration() != 0 {
				d.stats.ignored.Add(1)
				return
			}
			d.notify(affectsPolicy)
		},
		DeleteFunc: func(any) { d.notify(affectsPolicy) },
	})
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		pk.inf.RunWithContext(ctx)
	}()
	go func() {
		defer wg.Done()
		// An empty list delivers no event; the first sync still changes
		// what the evaluator may conclude.
		if cache.WaitForCacheSync(ctx.Done(), pk.inf.HasSynced) {
			d.notify(affectsPolicy)
		}
	}()
	go func() {
		wg.Wait()
		close(pk.done)
	}()
}

// listed records the outcome of a list: a 403 makes the kind unreadable (and
// is logged once until it recovers), success makes it readable again.
func (pk *policyKind) listed(d *Discovery, err error) {
	pk.mu.Lock()
	defer pk.mu.Unlock()
	wasUnreadable := pk.unreadable != ""
	switch {
	case err == nil:
		pk.unreadable = ""
		if pk.loggedDeny {
			d.log.Info("policy kind readable again", keyKind, pk.gvr.String())
		}
		pk.loggedDeny = false
	case apierrors.IsForbidden(err):
		pk.unreadable = "forbidden: " + err.Error()
		if !pk.loggedDeny {
			d.log.Warn("cannot list policy kind; expectations it could change are unknown", keyKind, pk.gvr.String(), keyErr, err)
			pk.loggedDeny = true
		}
	case apierrors.IsResourceExpired(err) || apierrors.IsGone(err):
		// The reflector relists; the cache is still what was listed.
	default:
		pk.unreadable = err.Error()
	}
	if wasUnreadable != (pk.unreadable != "") {
		d.notify(affectsPolicy)
	}
}

func (pk *policyKind) state() string {
	pk.mu.Lock()
	defer pk.mu.Unlock()
	if pk.unreadable == "" && pk.inf != nil && !pk.inf.HasSynced() {
		return "not synced yet"
	}
	return pk.unreadable
}

// metadataOnly keeps what identifies an object, for kinds whose content the
// evaluator does not read.
func metadataOnly(obj any) (any, error) {
	u, ok := obj.(*unstructured.Unstructured)
	if !ok {
		return obj, nil
	}
	out := &unstructured.Unstructured{}
	out.SetAPIVersion(u.GetAPIVersion())
	out.SetKind(u.GetKind())
	out.SetNamespace(u.GetNamespace())
	out.SetName(u.GetName())
	out.SetResourceVersion(u.GetResourceVersion())
	out.SetGeneration(u.GetGeneration())
	return out, nil
}

// rediscoverPolicies repeats API discovery until ctx ends.
func (d *Discovery) rediscoverPolicies(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if d.discoverPolicies(ctx) {
			d.notify(affectsPolicy)
		}
	}
}

// stopPolicyInformers stops every informer the policy discovery started.
func (d *Discovery) stopPolicyInformers() {
	d.policy.mu.Lock()
	defer d.policy.mu.Unlock()
	for _, pk := range d.policy.kinds {
		pk.cancel()
		<-pk.done
	}
}

// ListClusterInputs returns the cluster policies and the unmodelled policy
// objects from the dynamic informers. Kinds that are served but cannot be
// seen (forbidden, not listable, not synced) come back as nameless
// netpol.ForeignPolicy entries, so the evaluator answers UNKNOWN. Nodes are
// left nil: the agent's pods are not host-network, so nodes peers cannot
// match them, and for a host-network pod the evaluator answers UNKNOWN.
func (d *Discovery) ListClusterInputs() (netpol.ClusterInputs, error) {
	var in netpol.ClusterInputs
	if !d.cfg.WatchNetworkPolicies {
		return in, ErrPoliciesNotWatched
	}
	d.policy.mu.Lock()
	defer d.policy.mu.Unlock()
	for g, why := range d.policy.undiscoverable {
		in.Foreign = append(in.Foreign, netpol.ForeignPolicy{Group: g, Kind: "*", Reason: "API discovery failed: " + why})
	}
	gks := make([]schema.GroupKind, 0, len(d.policy.kinds))
	for gk := range d.policy.kinds {
		gks = append(gks, gk)
	}
	sort.Slice(gks, func(i, j int) bool { return gks[i].String() < gks[j].String() })
	var errs []error
	for _, gk := range gks {
		pk := d.policy.kinds[gk]
		if why := pk.state(); why != "" {
			in.Foreign = append(in.Foreign, netpol.ForeignPolicy{Group: gk.Group, Kind: gk.Kind, Reason: why})
			continue
		}
		for _, o := range pk.inf.GetStore().List() {
			u, ok := o.(*unstructured.Unstructured)
			if !ok {
				continue
			}
			if !pk.modelled {
				in.Foreign = append(in.Foreign, netpol.ForeignPolicy{Group: gk.Group, Kind: gk.Kind, Namespace: u.GetNamespace(), Name: u.GetName()})
				continue
			}
			if err := addModelled(&in, gk.Kind, u); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return in, errors.Join(errs...)
}

// addModelled converts an object of a modelled kind. The v1alpha2 and v1beta1
// ClusterNetworkPolicy schemas are the same, so both convert to v1alpha2.
func addModelled(in *netpol.ClusterInputs, kind string, u *unstructured.Unstructured) error {
	conv := runtime.DefaultUnstructuredConverter
	var err error
	switch kind {
	case "ClusterNetworkPolicy":
		p := &v1alpha2.ClusterNetworkPolicy{}
		if err = conv.FromUnstructured(u.Object, p); err == nil {
			in.ClusterNetworkPolicies = append(in.ClusterNetworkPolicies, p)
		}
	case "AdminNetworkPolicy":
		p := &v1alpha1.AdminNetworkPolicy{}
		if err = conv.FromUnstructured(u.Object, p); err == nil {
			in.AdminNetworkPolicies = append(in.AdminNetworkPolicies, p)
		}
	case "BaselineAdminNetworkPolicy":
		p := &v1alpha1.BaselineAdminNetworkPolicy{}
		if err = conv.FromUnstructured(u.Object, p); err == nil {
			in.BaselineAdminNetworkPolicies = append(in.BaselineAdminNetworkPolicies, p)
		}
	}
	if err != nil {
		return fmt.Errorf("%s %s: %w", kind, u.GetName(), err)
	}
	return nil
}
