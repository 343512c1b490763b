package k8s

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"runtime"
	"runtime/pprof"
	"slices"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/edgelb/edgelb/lb"
	"github.com/edgelb/edgelb/lb/config"
	"github.com/edgelb/edgelb/lb/ipvs"
	"github.com/edgelb/edgelb/lb/ipvs/ipvstest"
)

// signalIPVS is the fake kernel, telling when a real server at a given
// address is added.
type signalIPVS struct {
	*ipvstest.Fake
	mu   sync.Mutex
	want netip.AddrPort
	got  chan struct{}
}

func (s *signalIPVS) expect(a netip.AddrPort) <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.want, s.got = a, make(chan struct{})
	return s.got
}

func (s *signalIPVS) AddRealServer(v *ipvs.VirtualServer, r *ipvs.RealServer) error {
	err := s.Fake.AddRealServer(v, r)
	s.mu.Lock()
	if s.got != nil && r.AddrPort() == s.want {
		close(s.got)
		s.got = nil
	}
	s.mu.Unlock()
	return err
}

// BenchmarkEndpointToKernel measures, at 1,000 and 10,000 LoadBalancer
// Services × 10 endpoints in direct mode, how long one endpoint change
// takes inside edgelb: from the EndpointSlice update reaching the API
// (a fake clientset, so the API server's own latency is left out) to the
// desired state holding it (desired-p50/p99-ms), and to the fake kernel
// being told (kernel-p50/p99-ms), with the packaged intervals (the
// desired-state loop's 50 ms, the dataplane's 100 ms between passes;
// changes 150 ms apart). heap-MB is the live heap of the controller and
// dataplane at that size (after a GC, less what the fake API held
// before they started); EDGELB_HEAPPROFILE=file writes the heap profile
// of the largest size there. Not asserted.
func BenchmarkEndpointToKernel(b *testing.B) {
	for _, n := range []int{1000, 10000} {
		b.Run(fmt.Sprintf("%dServices_10endpoints", n), func(b *testing.B) {
			for range b.N {
				endpointToKernel(b, n, 10, 50)
			}
		})
	}
}

func endpointToKernel(b *testing.B, nSvc, nEP, changes int) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	b.StopTimer()
	fc := fake.NewClientset()
	tracker := fc.Tracker()
	svcGVR := schema.GroupVersionResource{Version: "v1", Resource: "services"}
	sliceGVR := discoveryv1.SchemeGroupVersion.WithResource("endpointslices")
	vip := func(i int) string { return netip.AddrFrom4([4]byte{10, 224, byte(i >> 8), byte(i)}).String() }
	slice := func(i int, first string) *discoveryv1.EndpointSlice {
		var ips []string
		for j := range nEP {
			ips = append(ips, fmt.Sprintf("10.%d.%d.%d", 128+j, i>>8, i&255))
		}
		if first != "" {
			ips[0] = first
		}
		return endpointSlice("scale", fmt.Sprintf("s%05d", i), ips...)
	}
	for i := range nSvc {
		svc := lbService("scale", fmt.Sprintf("s%05d", i), i, vip(i))
		if err := tracker.Create(svcGVR, svc, "scale", metav1.CreateOptions{}); err != nil {
			b.Fatal(err)
		}
		if err := tracker.Create(sliceGVR, slice(i, ""), "scale", metav1.CreateOptions{}); err != nil {
			b.Fatal(err)
		}
	}
	for i := range 100 {
		n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("n%03d", i)}, Status: corev1.NodeStatus{
			Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue}},
			Addresses:  []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: fmt.Sprintf("10.230.0.%d", i+1)}}}}
		if _, err := fc.CoreV1().Nodes().Create(ctx, n, metav1.CreateOptions{}); err != nil {
			b.Fatal(err)
		}
	}
	base := liveHeap()

	cfg, err := config.Parse("bench.yaml", []byte(`node: {name: lb1}
cluster: {insecure: true, bindAddr: 127.0.0.1}
kubernetes: {kubeconfig: /nonexistent, defaultClass: true}
pools:
  - {name: main, addresses: ["10.224.0.0/16"]}
dataplane: {backend: none, mode: direct}
`))
	if err != nil {
		b.Fatal(err)
	}
	store := lb.NewStore()
	c := New(fc, Options{Identity: "lb1", Config: cfg, Store: store, Log: slog.New(slog.DiscardHandler)})
	kernel := &signalIPVS{Fake: ipvstest.New()}
	dp := ipvs.New(ipvs.Options{IPVS: kernel, Store: store, Log: slog.New(slog.DiscardHandler)})
	defer c.startInformers(ctx.Done())()
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	wg.Add(2)
	go func() { defer wg.Done(); c.desiredLoop(ctx) }()
	go func() { defer wg.Done(); _ = dp.Run(ctx) }()
	deadline := time.Now().Add(5 * time.Minute)
	for st := dp.Status(); !st.Ready || st.VirtualServices != nSvc; st = dp.Status() {
		if time.Now().After(deadline) {
			b.Fatalf("not programmed after 5 minutes: %+v", st)
		}
		time.Sleep(50 * time.Millisecond)
	}
	heap := liveHeap() - base
	if path := os.Getenv("EDGELB_HEAPPROFILE"); path != "" && nSvc >= 10000 {
		f, err := os.Create(path)
		if err != nil {
			b.Fatal(err)
		}
		if err := pprof.Lookup("heap").WriteTo(f, 0); err != nil {
			b.Fatal(err)
		}
		f.Close()
	}

	storeC := store.Subscribe()
	defer store.Unsubscribe(storeC)
	var toDesired, toKernel []time.Duration
	b.StartTimer()
	for k := range changes {
		i := (k * 7919) % nSvc
		ip := fmt.Sprintf("10.99.%d.%d", k>>8, k&255)
		be := netip.AddrPortFrom(netip.MustParseAddr(ip), 8080)
		key := lb.Key{VIP: netip.MustParseAddr(vip(i)), Port: 80, Protocol: lb.TCP}
		inKernel := kernel.expect(be)
		start := time.Now()
		if _, err := fc.DiscoveryV1().EndpointSlices("scale").Update(ctx, slice(i, ip), metav1.UpdateOptions{}); err != nil {
			b.Fatal(err)
		}
		for !hasBackend(store.Load(), key, be) {
			select {
			case <-storeC:
			case <-time.After(10 * time.Second):
				b.Fatalf("change %d not in the desired state after 10 s", k)
			}
		}
		toDesired = append(toDesired, time.Since(start))
		select {
		case <-inKernel:
		case <-time.After(10 * time.Second):
			b.Fatalf("change %d not in the kernel after 10 s", k)
		}
		toKernel = append(toKernel, time.Since(start))
		time.Sleep(150 * time.Millisecond)
	}
	b.StopTimer()
	report := func(ds []time.Duration, name string) {
		slices.Sort(ds)
		b.ReportMetric(float64(ds[len(ds)/2].Microseconds())/1000, name+"-p50-ms")
		b.ReportMetric(float64(ds[(len(ds)*99+99)/100-1].Microseconds())/1000, name+"-p99-ms")
	}
	report(toDesired, "desired")
	report(toKernel, "kernel")
	b.ReportMetric(float64(heap)/(1<<20), "heap-MB")
}

func hasBackend(d *lb.Desired, k lb.Key, be netip.AddrPort) bool {
	if d == nil {
		return false
	}
	i, ok := slices.BinarySearchFunc(d.Services, k, func(v lb.VirtualService, k lb.Key) int { return v.Key.Compare(k) })
	return ok && slices.ContainsFunc(d.Services[i].Backends, func(b lb.Backend) bool { return b.Addr == be })
}

// liveHeap is the heap in use after a GC.
func liveHeap() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapInuse
}
