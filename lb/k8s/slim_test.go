package k8s

import (
	"testing"

	"k8s.io/client-go/tools/cache"
)

// The informer's cache keys a compact slice like the API object, and a
// slice's change (or deletion, seen as a tombstone) names its Service.
func TestCachedSliceKeys(t *testing.T) {
	es := endpointSlice("ns", "web", "10.1.0.1")
	es.ResourceVersion = "42"
	o, err := slim(es)
	if err != nil {
		t.Fatal(err)
	}
	cs, ok := o.(*cachedSlice)
	if !ok {
		t.Fatalf("slim gave %T, want *cachedSlice", o)
	}
	if k, err := cache.MetaNamespaceKeyFunc(cs); err != nil || k != "ns/web-abc" {
		t.Errorf("key %q, %v; want ns/web-abc", k, err)
	}
	if rv := cs.GetObjectMeta().GetResourceVersion(); rv != "42" {
		t.Errorf("resource version %q, want 42", rv)
	}
	for _, o := range []any{cs, cache.DeletedFinalStateUnknown{Key: "ns/web-abc", Obj: cs}, es} {
		if k := sliceKey(o); k != "ns/web" {
			t.Errorf("sliceKey(%T) = %q, want ns/web", o, k)
		}
	}
	if cp := cs.DeepCopyObject().(*cachedSlice); cp.EndpointSlice != cs.EndpointSlice || cp == cs {
		t.Errorf("DeepCopyObject: a new cachedSlice sharing the compact slice")
	}
	idx := cache.NewIndexer(cache.DeletionHandlingMetaNamespaceKeyFunc, cache.Indexers{sliceServiceIndex: sliceService})
	if err := idx.Add(cs); err != nil {
		t.Fatal(err)
	}
	if got, _ := idx.ByIndex(sliceServiceIndex, "ns/web"); len(got) != 1 {
		t.Errorf("index of Service ns/web holds %d slices, want 1", len(got))
	}
}
