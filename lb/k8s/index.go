package k8s

import (
	"net/netip"
	"slices"
	"sync"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/tools/cache"

	"github.com/edgelb/edgelb/lb"
)

// valueIndex maps a value of an informer's cached objects (the key of an
// EndpointSlice's Service, an address in a Service's status) to the keys
// of the objects that have it. It is what a client-go indexer does, kept
// by the informer's event handler instead: the indexer keeps a set per
// value (a map, even of one key) and a map of each object's values: 316
// bytes an object where this takes 132 (BenchmarkValueIndex), about 3.7 MB
// less at 10,000 Services with their EndpointSlices.
//
// Being kept by the handler, it follows the cache by the handler's
// delivery, and the handler marks the change for the desired-state loop
// after the index has it: a reader told of a change finds it here. Until
// the handler has had the informer's first list (the registration's
// HasSynced, which the controller waits for) it is incomplete. Readers
// check what it names against the cache (an object may have changed since
// the handler last ran). It is safe for concurrent use.
type valueIndex[V comparable] struct {
	// of returns an object's values; it must accept any object the
	// informer delivers (never a DeletedFinalStateUnknown: update unwraps
	// it).
	of func(any) []V
	mu sync.RWMutex
	m  map[V][]string
}

func newValueIndex[V comparable](of func(any) []V) *valueIndex[V] {
	return &valueIndex[V]{of: of, m: map[V][]string{}}
}

// update moves an object's key from the values of old to those of obj:
// old is nil for an added object, obj nil for a deleted one.
func (x *valueIndex[V]) update(old, obj any) {
	var was, is []V
	var key string
	var err error
	if old = unwrapDeleted(old); old != nil {
		was = x.of(old)
		key, err = cache.MetaNamespaceKeyFunc(old)
	}
	if obj = unwrapDeleted(obj); obj != nil {
		is = x.of(obj)
		key, err = cache.MetaNamespaceKeyFunc(obj)
	}
	if err != nil || key == "" || slices.Equal(was, is) {
		return
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	for _, v := range was {
		if slices.Contains(is, v) {
			continue
		}
		if ks := slices.DeleteFunc(x.m[v], func(k string) bool { return k == key }); len(ks) > 0 {
			x.m[v] = ks
		} else {
			delete(x.m, v)
		}
	}
	for _, v := range is {
		if ks := x.m[v]; !slices.Contains(ks, key) {
			x.m[v] = append(ks, key)
		}
	}
}

// keys returns the keys of the objects that have v, in no set order.
func (x *valueIndex[V]) keys(v V) []string {
	x.mu.RLock()
	defer x.mu.RUnlock()
	return slices.Clone(x.m[v])
}

// indexing is an informer's event handler that keeps idx, then calls
// changed with the object's previous state (nil when it was added) and
// its state (nil when it was deleted).
func indexing[V comparable](idx *valueIndex[V], changed func(old, obj any)) cache.ResourceEventHandlerFuncs {
	return cache.ResourceEventHandlerFuncs{
		AddFunc:    func(o any) { idx.update(nil, o); changed(nil, o) },
		UpdateFunc: func(old, o any) { idx.update(old, o); changed(old, o) },
		DeleteFunc: func(o any) { idx.update(o, nil); changed(o, nil) },
	}
}

func unwrapDeleted(o any) any {
	if d, ok := o.(cache.DeletedFinalStateUnknown); ok {
		return d.Obj
	}
	return o
}

// statusIPs are the addresses in a cached Service's status.
func statusIPs(o any) []netip.Addr {
	switch s := o.(type) {
	case *cachedService:
		return lb.VIPs(&corev1.Service{Status: corev1.ServiceStatus{LoadBalancer: corev1.LoadBalancerStatus{Ingress: s.ingress}}})
	case *corev1.Service:
		return lb.VIPs(s)
	}
	return nil
}

// sliceServices is the key of the Service of a cached EndpointSlice, as
// the values of an index.
func sliceServices(o any) []string {
	if k := sliceKey(o); k != "" {
		return []string{k}
	}
	return nil
}
