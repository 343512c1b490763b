package k8s

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"reflect"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/edgelb/edgelb/lb"
	"github.com/edgelb/edgelb/lb/config"
	"github.com/edgelb/edgelb/lb/ipvs"
	"github.com/edgelb/edgelb/lb/ipvs/ipvstest"
)

// directConfig is testConfig in direct mode with a /24 pool.
func directConfig(t *testing.T) *config.Config {
	t.Helper()
	cfg, err := config.Parse("test.yaml", []byte(`node: {name: lb1}
cluster: {insecure: true, bindAddr: 127.0.0.1}
kubernetes: {kubeconfig: /nonexistent, defaultClass: true}
pools:
  - {name: main, addresses: ["192.0.2.0/24"]}
dataplane: {backend: none, mode: direct}
`))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// endpointSlice is the EndpointSlice of Service ns/name with ready
// endpoints at ips, port http -> 8080, carrying what edgelb does not read
// (managedFields, a pod reference, a zone).
func endpointSlice(ns, name string, ips ...string) *discoveryv1.EndpointSlice {
	pname, port, proto, ready, node, zone := "http", int32(8080), corev1.ProtocolTCP, true, "n1", "z1"
	es := &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name + "-abc",
			Labels:        map[string]string{discoveryv1.LabelServiceName: name, "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io"},
			Annotations:   map[string]string{"endpoints.kubernetes.io/last-change-trigger-time": "2024-01-01T00:00:00Z"},
			ManagedFields: []metav1.ManagedFieldsEntry{{Manager: "kube-controller-manager", Operation: metav1.ManagedFieldsOperationUpdate}}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: &pname, Port: &port, Protocol: &proto}},
	}
	for _, ip := range ips {
		es.Endpoints = append(es.Endpoints, discoveryv1.Endpoint{Addresses: []string{ip}, NodeName: &node, Zone: &zone,
			Conditions: discoveryv1.EndpointConditions{Ready: &ready},
			TargetRef:  &corev1.ObjectReference{Kind: "Pod", Namespace: ns, Name: name + "-pod-" + ip}})
	}
	return es
}

func backendsOf(d *lb.Desired, vip string) []string {
	var out []string
	for i := range d.Services {
		if d.Services[i].VIP == netip.MustParseAddr(vip) {
			for _, b := range d.Services[i].Backends {
				out = append(out, b.Addr.String())
			}
		}
	}
	return out
}

// An endpoint change of one Service among many rebuilds that Service
// only: the store is told its keys as the only change, no state is
// published that could change any other, and the dataplane makes kernel
// calls for that Service's virtual service only. The caches hold only what
// edgelb reads.
func TestEndpointChangeRebuildsItsServiceOnly(t *testing.T) {
	fc := fake.NewClientset()
	ctx := context.Background()
	for i := range 20 {
		name := fmt.Sprintf("s%02d", i)
		svc := lbService("ns", name, i, fmt.Sprintf("192.0.2.%d", 10+i))
		svc.Annotations = map[string]string{"example.com/owner": "team-a", lb.AnnotationScheduler: "rr"}
		svc.Labels = map[string]string{"app": "web"}
		svc.ManagedFields = []metav1.ManagedFieldsEntry{{Manager: "kubectl", Operation: metav1.ManagedFieldsOperationUpdate}}
		create(t, fc, svc)
		createSlice(t, fc, endpointSlice("ns", name, fmt.Sprintf("10.1.%d.1", i), fmt.Sprintf("10.1.%d.2", i)))
	}
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1", Annotations: map[string]string{"a": "b"}},
		Status: corev1.NodeStatus{Images: []corev1.ContainerImage{{Names: []string{"registry/image:tag"}, SizeBytes: 1 << 30}},
			Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue, Message: "kubelet is posting ready status"},
				{Type: corev1.NodeMemoryPressure, Status: corev1.ConditionFalse}},
			Addresses: []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "10.0.0.1"}}}}
	if _, err := fc.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	c := newController(t, fc, directConfig(t), "lb1")
	startInformers(t, c)
	loopCtx, cancel := context.WithCancel(ctx)
	loop := make(chan struct{})
	go func() { defer close(loop); c.desiredLoop(loopCtx) }()
	defer func() { cancel(); <-loop }()
	store := c.opts.Store
	kernel := ipvstest.New()
	dp := ipvs.New(ipvs.Options{IPVS: kernel, Store: store, Log: slog.New(slog.DiscardHandler), MinSyncInterval: time.Millisecond})
	dpDone := make(chan struct{})
	go func() { defer close(dpDone); _ = dp.Run(loopCtx) }()
	defer func() { cancel(); <-dpDone }()
	eventually(t, "every Service in the desired state and the kernel", func() error {
		if d := store.Load(); d == nil || len(d.Services) != 20 {
			return fmt.Errorf("not in the desired state yet")
		}
		if st := dp.Status(); !st.Ready || st.VirtualServices != 20 {
			return fmt.Errorf("dataplane %+v", st)
		}
		return nil
	})
	before, gen, _, _ := store.Since(0)
	kernel.ResetCalls()

	es := endpointSlice("ns", "s07", "10.1.7.2", "10.1.7.3")
	if _, err := fc.DiscoveryV1().EndpointSlices("ns").Update(ctx, es, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the new endpoint in the desired state", func() error {
		if got := backendsOf(store.Load(), "192.0.2.17"); fmt.Sprint(got) != "[10.1.7.2:8080 10.1.7.3:8080]" {
			return fmt.Errorf("backends %v", got)
		}
		return nil
	})
	changedVS := ipvs.VirtualServer{Address: netip.MustParseAddr("192.0.2.17"), Protocol: "TCP", Port: 80}
	eventually(t, "the new endpoint in the kernel", func() error {
		for _, rs := range kernel.Snapshot()[changedVS.ID()].RSs {
			if rs.AddrPort() == netip.MustParseAddrPort("10.1.7.3:8080") {
				return nil
			}
		}
		return fmt.Errorf("not yet")
	})
	for id, calls := range kernel.TouchedCopy() {
		if id != changedVS.ID() {
			t.Errorf("the kernel was called for %v: %v", id, calls)
		}
	}
	d, _, changed, ok := store.Since(gen)
	if !ok {
		t.Fatal("an endpoint change was published as a change of everything")
	}
	for _, k := range changed {
		if k.VIP != netip.MustParseAddr("192.0.2.17") {
			t.Errorf("%s was listed as changed", k)
		}
	}
	for i := range d.Services {
		vs := &d.Services[i]
		if vs.Source.Name != "s07" && !vs.Equal(&before.Services[i]) {
			t.Errorf("%s changed", vs)
		}
	}

	// The caches keep what edgelb reads.
	svc, err := c.services.Services("ns").Get("s01")
	if err != nil || len(svc.ManagedFields) != 0 || fmt.Sprint(svc.Annotations) != "map[edgelb.io/scheduler:rr]" || svc.Labels != nil {
		t.Errorf("cached Service: managedFields %v, annotations %v, labels %v (want edgelb's annotations only), %v", svc.ManagedFields, svc.Annotations, svc.Labels, err)
	}
	want := []*lb.EndpointSlice{{Namespace: "ns", Name: "s01-abc", Service: "s01", Family: 4,
		Ports: []lb.EndpointPort{{Name: "http", Protocol: corev1.ProtocolTCP, Port: 8080}},
		Endpoints: []lb.Endpoint{
			{Addr: netip.MustParseAddr("10.1.1.1"), Node: lb.NodeOf("n1"), Ready: true},
			{Addr: netip.MustParseAddr("10.1.1.2"), Node: lb.NodeOf("n1"), Ready: true},
		}}}
	if got := (listerSource{c}).EndpointSlices("ns/s01"); !reflect.DeepEqual(got, want) {
		t.Errorf("cached EndpointSlices of s01: %+v, want %+v", got, want)
	}
	n, err := c.nodes.Get("n1")
	if err != nil || len(n.Status.Images) != 0 || len(n.Annotations) != 0 || len(n.Status.Conditions) != 1 || n.Status.Conditions[0].Message != "" {
		t.Errorf("cached Node keeps what edgelb does not read: %+v, %v", n, err)
	}
}

func createSlice(t *testing.T, client kubernetes.Interface, es *discoveryv1.EndpointSlice) {
	t.Helper()
	if _, err := client.DiscoveryV1().EndpointSlices(es.Namespace).Create(context.Background(), es, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}
