package k8s

import (
	"fmt"
	"reflect"
	"testing"

	"github.com/edgelb/edgelb/lb"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
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
	idx := newValueIndex(sliceServices)
	idx.update(nil, cs)
	if got := idx.keys("ns/web"); len(got) != 1 {
		t.Errorf("index of Service ns/web holds %d slices, want 1", len(got))
	}
}

// The cached Service, its spec cut to what edgelb reads, gives the same
// desired state and problems as the Service the API server sent: local
// traffic policy (health check port), source ranges, session affinity,
// a requested address, dual stack, a port edgelb cannot serve, no node
// ports, another implementation's class.
func TestSlimServiceBuildsTheSame(t *testing.T) {
	cfg := testConfig(t, `  - {name: main, addresses: ["192.0.2.0/28", "2001:db8::/124"]}`)
	opts := lb.OptionsFromConfig(cfg)
	timeout := int32(600)
	noNodePorts := false
	dual := corev1.IPFamilyPolicyPreferDualStack
	full := []*corev1.Service{
		lbService("ns", "plain", 0, "192.0.2.1"),
		lbService("ns", "rich", 1, "192.0.2.2", "2001:db8::2"),
		lbService("ns", "requested", 2),
		lbService("ns", "sctp", 3, "192.0.2.4"),
		lbService("ns", "no-node-ports", 4, "192.0.2.5"),
		lbService("ns", "other-class", 5, "192.0.2.6"),
	}
	r := full[1]
	r.Spec.Selector = map[string]string{"app": "rich"}
	r.Spec.ClusterIP, r.Spec.ClusterIPs = "10.96.0.10", []string{"10.96.0.10", "fd00::10"}
	r.Spec.IPFamilies = []corev1.IPFamily{corev1.IPv4Protocol, corev1.IPv6Protocol}
	r.Spec.IPFamilyPolicy = &dual
	r.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal
	r.Spec.HealthCheckNodePort = 31999
	r.Spec.LoadBalancerSourceRanges = []string{"198.51.100.0/24"}
	r.Spec.SessionAffinity = corev1.ServiceAffinityClientIP
	r.Spec.SessionAffinityConfig = &corev1.SessionAffinityConfig{ClientIP: &corev1.ClientIPConfig{TimeoutSeconds: &timeout}}
	r.Spec.AllocateLoadBalancerNodePorts = &noNodePorts
	r.Spec.Ports[0].NodePort = 30080
	full[2].Spec.LoadBalancerIP = "192.0.2.3"
	full[3].Spec.Ports[0].Protocol = corev1.ProtocolSCTP
	full[4].Spec.AllocateLoadBalancerNodePorts = &noNodePorts
	other := "example.com/other"
	full[5].Spec.LoadBalancerClass = &other
	var slimmed []*corev1.Service
	for _, s := range full {
		o, err := slim(s.DeepCopy())
		if err != nil {
			t.Fatal(err)
		}
		slimmed = append(slimmed, o.(*cachedService).service())
	}
	if slimmed[1].Spec.Selector != nil || slimmed[1].Spec.ClusterIP != "" {
		t.Errorf("the cached spec kept the selector or the cluster IP: %+v", slimmed[1].Spec)
	}
	slices := []*lb.EndpointSlice{
		lb.NewEndpointSlice(endpointSlice("ns", "plain", "10.1.0.1")),
		lb.NewEndpointSlice(endpointSlice("ns", "rich", "10.1.0.2")),
	}
	nodes := []*corev1.Node{{ObjectMeta: metav1.ObjectMeta{Name: "n1"}, Status: corev1.NodeStatus{
		Addresses:  []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "10.0.0.1"}},
		Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue}}}}}
	want, wantProblems := lb.Build(lb.Snapshot{Services: full, EndpointSlices: slices, Nodes: nodes}, opts)
	got, gotProblems := lb.Build(lb.Snapshot{Services: slimmed, EndpointSlices: slices, Nodes: nodes}, opts)
	if len(want.Services) == 0 {
		t.Fatal("no virtual service built: the test proves nothing")
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("desired state from the cached Services:\n%+v\nfrom the API server's:\n%+v", got, want)
	}
	if !reflect.DeepEqual(gotProblems, wantProblems) {
		t.Errorf("problems from the cached Services %+v, from the API server's %+v", gotProblems, wantProblems)
	}
	// And the same allocation requests (families, requested address).
	for i := range full {
		want, wantErr := request(full[i])
		got, gotErr := request(slimmed[i])
		if !reflect.DeepEqual(got, want) || fmt.Sprint(gotErr) != fmt.Sprint(wantErr) {
			t.Errorf("%s: request from the cached Service %+v (%v), from the API server's %+v (%v)", full[i].Name, got, gotErr, want, wantErr)
		}
	}
}

// The values most Services share point to one copy, and keep their value;
// a value edgelb does not know is kept as it is.
func TestSlimServiceSharesValues(t *testing.T) {
	a, b := apiServerService("ns", "a", 1), apiServerService("ns", "b", 2)
	odd := corev1.IPFamilyPolicy("Future")
	b.Spec.IPFamilyPolicy = &odd
	b.Spec.Ports[0].Protocol = "QUIC"
	want := a.DeepCopy()
	a, b = slimmed(t, a), slimmed(t, b)
	if *a.Spec.IPFamilyPolicy != *want.Spec.IPFamilyPolicy || a.Spec.IPFamilyPolicy != &policyValues[0] {
		t.Errorf("ipFamilyPolicy %v, want the shared SingleStack", *a.Spec.IPFamilyPolicy)
	}
	if *b.Spec.IPFamilyPolicy != "Future" || b.Spec.Ports[0].Protocol != "QUIC" {
		t.Errorf("unknown values changed: %v %v", *b.Spec.IPFamilyPolicy, b.Spec.Ports[0].Protocol)
	}
	if &a.Spec.IPFamilies[0] != &familyValues[0][0] || !reflect.DeepEqual(a.Spec.IPFamilies, want.Spec.IPFamilies) {
		t.Errorf("ipFamilies %v not the shared [IPv4]", a.Spec.IPFamilies)
	}
	if in := a.Status.LoadBalancer.Ingress[0]; in.IPMode != &ipModeValues[0] || in.IP != want.Status.LoadBalancer.Ingress[0].IP {
		t.Errorf("ingress %+v, want its IP and the shared mode VIP", in)
	}
	p, wp := a.Spec.Ports[0], want.Spec.Ports[0]
	if p.Name != wp.Name || p.Port != wp.Port || p.NodePort != wp.NodePort || p.Protocol != wp.Protocol || *a.Spec.AllocateLoadBalancerNodePorts != true {
		t.Errorf("port %+v, want name, port, node port and protocol of %+v", p, wp)
	}
	// A write deep-copies: the copy owns its values.
	c := a.DeepCopy()
	*c.Spec.IPFamilyPolicy = corev1.IPFamilyPolicyRequireDualStack
	if policyValues[0] != corev1.IPFamilyPolicySingleStack {
		t.Errorf("a copy's change reached the shared value")
	}
}

// slimmed is svc as the informer's cache gives it to its readers.
func slimmed(t *testing.T, svc *corev1.Service) *corev1.Service {
	t.Helper()
	o, err := slim(svc)
	if err != nil {
		t.Fatal(err)
	}
	return asService(o)
}

// The lister gives cached Services back as Services: one by name, all in
// a list, and every one through each, which builds none (the loops over
// every Service run on each change of the pools or a freed address).
func TestServiceListerReadsTheCache(t *testing.T) {
	idx := cache.NewIndexer(cache.DeletionHandlingMetaNamespaceKeyFunc, cache.Indexers{})
	for i := range 100 {
		o, err := slim(apiServerService("ns", fmt.Sprintf("s%02d", i), i))
		if err != nil {
			t.Fatal(err)
		}
		if err := idx.Add(o); err != nil {
			t.Fatal(err)
		}
	}
	_ = idx.Add(lbService("other", "plain", 0, "192.0.2.1")) // put there as it is
	l := serviceLister{idx}
	svc, err := l.Services("ns").Get("s07")
	if err != nil || svc.Name != "s07" || svc.Spec.Ports[0].NodePort != 30007 || len(lb.VIPs(svc)) != 1 {
		t.Fatalf("Get(s07) = %+v, %v", svc, err)
	}
	if _, err := l.Services("ns").Get("nope"); err == nil {
		t.Error("Get of a Service not cached: no error")
	}
	all, _ := l.List(labels.Everything())
	inNS, _ := l.Services("other").List(labels.Everything())
	if len(all) != 101 || len(inNS) != 1 || inNS[0].Name != "plain" {
		t.Errorf("List: %d, in namespace other %d; want 101 and 1", len(all), len(inNS))
	}
	seen := map[string]bool{}
	l.each(func(s *corev1.Service) { seen[key(s)] = len(s.Status.LoadBalancer.Ingress) == 1 })
	if len(seen) != 101 || !seen["ns/s42"] || !seen["other/plain"] {
		t.Errorf("each saw %d Services, want 101 with their status", len(seen))
	}
	n := 0
	if allocs := testing.AllocsPerRun(10, func() { l.each(func(*corev1.Service) { n++ }) }); allocs > 2 {
		t.Errorf("each allocated %v times a pass of 101 Services, want at most the indexer's list and one scratch Service", allocs)
	}
}
