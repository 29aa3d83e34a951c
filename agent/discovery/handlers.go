package discovery

import (
	"maps"
	"slices"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/cache"
	"reflect"
)

// effect says what an event can change.
type effect uint8

const (
	affectsPeers  effect = 1 << iota // the Snapshot: rebuild it
	affectsPolicy                    // the NetworkPolicy evaluator's inputs
)

// register wires an informer to the Discovery. Handlers keep no state: they
// only decide whether an event can matter and, if so, ask for a rebuild from
// the caches. Adds and deletes always matter (with addOrDelete's effect);
// updates matter when diff says so, which filters out resyncs, node
// heartbeats and other status churn.
func register[T metav1.Object](d *Discovery, name string, inf cache.SharedIndexInformer, addOrDelete effect, diff func(old, cur T) effect) error {
	if err := inf.SetWatchErrorHandlerWithContext(d.watchErrorHandler(name)); err != nil {
		return err
	}
	reg, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: func(any) { d.notify(addOrDelete) },
		UpdateFunc: func(oldObj, newObj any) {
			o, ok1 := oldObj.(T)
			n, ok2 := newObj.(T)
			if !ok1 || !ok2 {
				d.notify(addOrDelete)
				return
			}
			if e := diff(o, n); e != 0 {
				d.notify(e)
				return
			}
			d.stats.ignored.Add(1)
		},
		DeleteFunc: func(obj any) { d.deleted(name, obj, addOrDelete) },
	})
	if err != nil {
		return err
	}
	d.informers = append(d.informers, namedInformer{name: name, inf: inf, reg: reg})
	return nil
}

// deleted handles a delete, including one the watch missed: after a relist the
// informer delivers a cache.DeletedFinalStateUnknown whose Obj is the last
// state it knew (possibly stale, possibly nil). We never need that object:
// the cache no longer holds it and the rebuild reads the cache.
func (d *Discovery) deleted(informer string, obj any, e effect) {
	if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		d.stats.tombstones.Add(1)
		d.log.Debug("delete observed on relist", keyInformer, informer, keyKey, t.Key)
	}
	d.notify(e)
}

func (d *Discovery) notify(e effect) {
	if e&affectsPeers != 0 {
		d.stats.requested.Add(1)
		signal(d.dirty)
	}
	// Before the first sync the evaluator's inputs are incomplete; Run sends
	// one policy notification once they are not.
	if e&affectsPolicy != 0 && d.synced.Load() {
		signal(d.policyChanges)
	}
}

// signal leaves one pending value in a buffer-1 channel without blocking.
func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// podView is what build reads from a pod, besides labels.
type podView struct {
	node, ip, os string
	probeable    bool
	exclusion    string
}

func viewPod(p *corev1.Pod) podView {
	v := podView{node: p.Spec.NodeName, ip: p.Status.PodIP, os: podOS(p), probeable: probeable(p)}
	if !v.probeable {
		v.exclusion = podExclusion(p)
	}
	return v
}

func podDiff(o, n *corev1.Pod) effect {
	var e effect
	labelsChanged := !maps.Equal(o.Labels, n.Labels)
	// Labels decide selector membership (the API server turns a pod that stops
	// matching into a delete, a fake or a caching proxy may not).
	if labelsChanged || viewPod(o) != viewPod(n) {
		e |= affectsPeers
	}
	if labelsChanged || o.Status.PodIP != n.Status.PodIP || !slices.Equal(o.Status.PodIPs, n.Status.PodIPs) ||
		o.Spec.HostNetwork != n.Spec.HostNetwork {
		e |= affectsPolicy
	}
	return e
}

func nodeDiff(o, n *corev1.Node) effect {
	if o.Labels[corev1.LabelOSStable] != n.Labels[corev1.LabelOSStable] ||
		o.Labels[corev1.LabelTopologyZone] != n.Labels[corev1.LabelTopologyZone] ||
		nodeExclusion(o) != nodeExclusion(n) {
		return affectsPeers
	}
	return 0
}

func serviceDiff(o, n *corev1.Service) effect {
	if o.Name != n.Name || o.Spec.ClusterIP != n.Spec.ClusterIP || servicePort(o.Spec.Ports) != servicePort(n.Spec.Ports) {
		return affectsPeers
	}
	return 0
}

func sliceDiff(o, n *discoveryv1.EndpointSlice) effect {
	if o.Labels[discoveryv1.LabelServiceName] != n.Labels[discoveryv1.LabelServiceName] ||
		!reflect.DeepEqual(o.Endpoints, n.Endpoints) {
		return affectsPeers
	}
	return 0
}

func policyDiff(o, n *networkingv1.NetworkPolicy) effect {
	if !reflect.DeepEqual(o.Spec, n.Spec) {
		return affectsPolicy
	}
	return 0
}

func namespaceDiff(o, n *corev1.Namespace) effect {
	if !maps.Equal(o.Labels, n.Labels) {
		return affectsPolicy
	}
	return 0
}

// slim is the informers' transform: it drops what we never read before the
// object enters the cache. managedFields are often the largest part of an
// object; a Node's status (images, conditions, addresses) is most of a Node,
// and there are as many Nodes as agents. The input may be shared with the
// client (the fake clientset hands out its stored objects), so slim copies
// the top-level struct instead of writing to it. It is idempotent, as the
// informer requires.
func slim(obj any) (any, error) {
	switch o := obj.(type) {
	case *corev1.Node:
		n := &corev1.Node{TypeMeta: o.TypeMeta, ObjectMeta: o.ObjectMeta, Spec: o.Spec}
		n.ManagedFields = nil
		// Annotations carry per-node agent state we do not read.
		n.Annotations = nil
		return n, nil
	case *corev1.Pod:
		return withoutManagedFields(o), nil
	case *corev1.Service:
		return withoutManagedFields(o), nil
	case *discoveryv1.EndpointSlice:
		return withoutManagedFields(o), nil
	case *networkingv1.NetworkPolicy:
		return withoutManagedFields(o), nil
	case *corev1.Namespace:
		return withoutManagedFields(o), nil
	}
	return obj, nil
}

// withoutManagedFields returns o, or a shallow copy of it without managedFields.
func withoutManagedFields[T any, P interface {
	*T
	metav1.Object
}](o P) P {
	if len(o.GetManagedFields()) == 0 {
		return o
	}
	c := *o
	P(&c).SetManagedFields(nil)
	return &c
}
