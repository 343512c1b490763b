package k8s

import (
	"fmt"
	"net/netip"
	"runtime"
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/tools/cache"
)

func addressed(ns, name string, ips ...string) *cachedService {
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
	for _, ip := range ips {
		svc.Status.LoadBalancer.Ingress = append(svc.Status.LoadBalancer.Ingress, corev1.LoadBalancerIngress{IP: ip})
	}
	return newCachedService(svc)
}

// The index follows additions, changes of an object's values, deletions
// (also of an object whose last state is unknown) and shared values.
func TestValueIndex(t *testing.T) {
	x := newValueIndex(statusIPs)
	a4, a6, b := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("2001:db8::1"), netip.MustParseAddr("192.0.2.2")
	want := func(ip netip.Addr, keys ...string) {
		t.Helper()
		got := x.keys(ip)
		slices.Sort(got)
		if !slices.Equal(got, keys) {
			t.Errorf("keys(%s) = %q, want %q", ip, got, keys)
		}
	}
	web := addressed("ns", "web", "192.0.2.1", "2001:db8::1")
	x.update(nil, web)
	want(a4, "ns/web")
	want(a6, "ns/web")
	// Shared: a second Service on the same address.
	dns := addressed("ns", "dns", "192.0.2.1")
	x.update(nil, dns)
	want(a4, "ns/dns", "ns/web")
	// web moves from .1 to .2 and keeps its IPv6 address.
	web2 := addressed("ns", "web", "192.0.2.2", "2001:db8::1")
	x.update(web, web2)
	want(a4, "ns/dns")
	want(b, "ns/web")
	want(a6, "ns/web")
	// An update that changes no value, and the same addition twice.
	x.update(web2, web2)
	x.update(nil, web2)
	want(b, "ns/web")
	x.update(dns, nil)
	want(a4)
	x.update(cache.DeletedFinalStateUnknown{Key: "ns/web", Obj: web2}, nil)
	want(b)
	want(a6)
	if len(x.m) != 0 {
		t.Errorf("empty index keeps %d values: %v", len(x.m), x.m)
	}
}

// BenchmarkValueIndex reports the bytes an index of Services by status
// address takes per Service (index-B/object) and what the same index
// adds to a client-go indexer (indexer-B/object): 10,000 Services with
// one address each.
func BenchmarkValueIndex(b *testing.B) {
	const n = 10000
	objs := make([]*cachedService, n)
	for i := range objs {
		objs[i] = addressed("default", fmt.Sprintf("service-%05d", i), fmt.Sprintf("10.%d.%d.%d", i>>16, (i>>8)&255, i&255))
	}
	heap := func() int64 {
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return int64(m.HeapAlloc)
	}
	indexer := func(indexers cache.Indexers) int64 {
		before := heap()
		idx := cache.NewIndexer(cache.MetaNamespaceKeyFunc, indexers)
		for _, o := range objs {
			_ = idx.Add(o)
		}
		size := heap() - before
		runtime.KeepAlive(idx)
		return size
	}
	byIP := cache.Indexers{"ip": func(o any) ([]string, error) {
		var out []string
		for _, ip := range statusIPs(o) {
			out = append(out, ip.String())
		}
		return out, nil
	}}
	for range b.N {
		before := heap()
		x := newValueIndex(statusIPs)
		for _, o := range objs {
			x.update(nil, o)
		}
		mine := heap() - before
		runtime.KeepAlive(x)
		theirs := indexer(byIP) - indexer(cache.Indexers{})
		b.ReportMetric(float64(mine)/n, "index-B/object")
		b.ReportMetric(float64(theirs)/n, "indexer-B/object")
	}
}

// Readers check what the index names against the cache, which may be
// ahead of it: an EndpointSlice moved to another Service, or a status
// that no longer lists an address, is not the indexed value's.
func TestIndexLagsTheCache(t *testing.T) {
	c := newController(t, fake.NewClientset(), testConfig(t, ""), "a")
	slice := func(svc string) any {
		o, err := slim(&discoveryv1.EndpointSlice{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "s1",
			Labels: map[string]string{discoveryv1.LabelServiceName: svc}}, AddressType: discoveryv1.AddressTypeIPv4})
		if err != nil {
			t.Fatal(err)
		}
		return o
	}
	// The handler indexed s1 under web; the cache has it under api since.
	c.byService.update(nil, slice("web"))
	if err := c.slices.Add(slice("api")); err != nil {
		t.Fatal(err)
	}
	src := listerSource{c}
	if got := src.EndpointSlices("ns/web"); len(got) != 0 {
		t.Errorf("ns/web's slices: %d, want none (s1 is api's now)", len(got))
	}
	c.byService.update(slice("web"), slice("api"))
	if got := src.EndpointSlices("ns/api"); len(got) != 1 {
		t.Errorf("ns/api's slices: %d, want s1", len(got))
	}

	ip := netip.MustParseAddr("192.0.2.1")
	c.byStatusIP.update(nil, addressed("ns", "web", "192.0.2.1"))
	if err := c.services.indexer.Add(addressed("ns", "web")); err != nil {
		t.Fatal(err)
	}
	if got := c.listed(ip); len(got) != 0 {
		t.Errorf("listed(%s) = %q, want none (ns/web's status lists nothing now)", ip, got)
	}
	if err := c.services.indexer.Update(addressed("ns", "web", "192.0.2.1")); err != nil {
		t.Fatal(err)
	}
	if got := c.listed(ip); !slices.Equal(got, []string{"ns/web"}) {
		t.Errorf("listed(%s) = %q, want ns/web", ip, got)
	}
}
