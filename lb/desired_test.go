package lb

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"go4.org/netipx"

	"github.com/edgelb/edgelb/lb/config"
)

func ptr[T any](v T) *T { return &v }

type svcOpt func(*corev1.Service)

func svc(name string, vips []string, opts ...svcOpt) *corev1.Service {
	s := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name, Annotations: map[string]string{}},
		Spec: corev1.ServiceSpec{
			Type:  corev1.ServiceTypeLoadBalancer,
			Ports: []corev1.ServicePort{{Name: "http", Port: 80, NodePort: 30080, Protocol: corev1.ProtocolTCP}},
		},
	}
	for _, v := range vips {
		s.Status.LoadBalancer.Ingress = append(s.Status.LoadBalancer.Ingress, corev1.LoadBalancerIngress{IP: v})
	}
	for _, o := range opts {
		o(s)
	}
	return s
}

func nodeObj(name string, ready bool, labels map[string]string, ips ...string) *corev1.Node {
	st := corev1.ConditionTrue
	if !ready {
		st = corev1.ConditionFalse
	}
	n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}}
	n.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: st}}
	for _, ip := range ips {
		n.Status.Addresses = append(n.Status.Addresses, corev1.NodeAddress{Type: corev1.NodeInternalIP, Address: ip})
	}
	n.Status.Addresses = append(n.Status.Addresses, corev1.NodeAddress{Type: corev1.NodeExternalIP, Address: "203.0.113.1"})
	return n
}

type ep struct {
	ip, node                    string
	ready, serving, terminating bool
}

func slice(svcName string, family discoveryv1.AddressType, port int32, eps ...ep) *EndpointSlice {
	return NewEndpointSlice(apiSlice(svcName, family, port, eps...))
}

// apiSlice is the EndpointSlice API object that slice compacts.
func apiSlice(svcName string, family discoveryv1.AddressType, port int32, eps ...ep) *discoveryv1.EndpointSlice {
	s := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Namespace: "ns", Name: svcName + "-" + string(family), Labels: map[string]string{discoveryv1.LabelServiceName: svcName}},
		AddressType: family,
		Ports:       []discoveryv1.EndpointPort{{Name: ptr("http"), Port: ptr(port), Protocol: ptr(corev1.ProtocolTCP)}},
	}
	for _, e := range eps {
		s.Endpoints = append(s.Endpoints, discoveryv1.Endpoint{
			Addresses: []string{e.ip}, NodeName: ptr(e.node),
			Conditions: discoveryv1.EndpointConditions{Ready: ptr(e.ready), Serving: ptr(e.serving), Terminating: ptr(e.terminating)},
		})
	}
	return s
}

func readyEP(ip, node string) ep { return ep{ip, node, true, true, false} }

var threeNodes = []*corev1.Node{
	nodeObj("n1", true, nil, "10.0.0.1", "fd00::1"),
	nodeObj("n2", true, nil, "10.0.0.2", "fd00::2"),
	nodeObj("n3", true, nil, "10.0.0.3", "fd00::3"),
}

// testPools hold every Service address the tests use, but 203.0.113.0/24.
var testPools = []config.Pool{{Name: "test", Ranges: []netipx.IPRange{
	netipx.RangeOfPrefix(netip.MustParsePrefix("192.0.2.0/24")), netipx.RangeOfPrefix(netip.MustParsePrefix("10.100.0.0/16")),
	netipx.RangeOfPrefix(netip.MustParsePrefix("2001:db8::/32")),
}}}

func baseOpts(mode config.Mode) Options {
	return Options{Mode: mode, Method: NAT, DefaultScheduler: "rr", Class: "edgelb.io/lb", DefaultClass: true, Pools: testPools}
}

// be formats backends as "addr w=N [node] [T]" for compact comparisons.
func be(vs VirtualService) []string {
	var out []string
	for _, b := range vs.Backends {
		s := fmt.Sprintf("%s w=%d %s", b.Addr, b.Weight, b.NodeName)
		if b.Terminating {
			s += " T"
		}
		if b.HealthCheckPort != 0 {
			s += fmt.Sprintf(" hc=%d", b.HealthCheckPort)
		}
		out = append(out, strings.TrimSpace(s))
	}
	return out
}

func TestBuild(t *testing.T) {
	cases := []struct {
		name string
		snap Snapshot
		opts Options
		// want maps "vip:port/proto" to its backends as be() formats them.
		want  map[string][]string
		check func(*testing.T, *Desired)
	}{{
		name: "nodeport mode: every ready node at the nodePort",
		snap: Snapshot{Services: []*corev1.Service{svc("web", []string{"192.0.2.10"})}, Nodes: threeNodes},
		opts: baseOpts(config.ModeNodePort),
		want: map[string][]string{"192.0.2.10:80/tcp": {"10.0.0.1:30080 w=1 n1", "10.0.0.2:30080 w=1 n2", "10.0.0.3:30080 w=1 n3"}},
	}, {
		name: "excluded and NotReady nodes get no traffic",
		snap: Snapshot{Services: []*corev1.Service{svc("web", []string{"192.0.2.10"})}, Nodes: []*corev1.Node{
			nodeObj("n1", true, nil, "10.0.0.1"),
			nodeObj("n2", false, nil, "10.0.0.2"),
			nodeObj("n3", true, map[string]string{LabelExcludeFromLB: ""}, "10.0.0.3"),
			{ObjectMeta: metav1.ObjectMeta{Name: "n4"}}, // no Ready condition yet
		}},
		opts: baseOpts(config.ModeNodePort),
		want: map[string][]string{"192.0.2.10:80/tcp": {"10.0.0.1:30080 w=1 n1"}},
	}, {
		name: "externalTrafficPolicy Local: nodes with ready local endpoints, weighted by their count, health-checked",
		snap: Snapshot{
			Services: []*corev1.Service{svc("web", []string{"192.0.2.10"}, func(s *corev1.Service) {
				s.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal
				s.Spec.HealthCheckNodePort = 32000
			})},
			EndpointSlices: []*EndpointSlice{slice("web", discoveryv1.AddressTypeIPv4, 8080,
				readyEP("10.1.1.1", "n1"), readyEP("10.1.1.2", "n1"), readyEP("10.1.1.3", "n1"),
				readyEP("10.1.3.1", "n3"),
				ep{"10.1.2.1", "n2", false, false, false}, // not ready: n2 has none
			)},
			Nodes: threeNodes,
		},
		opts: baseOpts(config.ModeNodePort),
		want: map[string][]string{"192.0.2.10:80/tcp": {"10.0.0.1:30080 w=3 n1 hc=32000", "10.0.0.3:30080 w=1 n3 hc=32000"}},
	}, {
		name: "direct mode: ready endpoints at the target port, terminating-but-serving drained at weight 0",
		snap: Snapshot{
			Services: []*corev1.Service{svc("web", []string{"192.0.2.10"})},
			EndpointSlices: []*EndpointSlice{slice("web", discoveryv1.AddressTypeIPv4, 8080,
				readyEP("10.1.1.2", "n1"), readyEP("10.1.1.1", "n1"),
				ep{"10.1.1.3", "n2", false, true, true},   // terminating, still serving: drain
				ep{"10.1.1.4", "n2", false, false, true},  // terminating, not serving: gone
				ep{"10.1.1.5", "n3", false, false, false}, // not ready: gone
			)},
			Nodes: threeNodes,
		},
		opts: baseOpts(config.ModeDirect),
		want: map[string][]string{"192.0.2.10:80/tcp": {"10.1.1.1:8080 w=1 n1", "10.1.1.2:8080 w=1 n1", "10.1.1.3:8080 w=0 n2 T"}},
	}, {
		name: "dual-stack: each VIP gets backends of its own family",
		snap: Snapshot{
			Services: []*corev1.Service{svc("web", []string{"192.0.2.10", "2001:db8::10"})},
			EndpointSlices: []*EndpointSlice{
				slice("web", discoveryv1.AddressTypeIPv4, 8080, readyEP("10.1.1.1", "n1")),
				slice("web", discoveryv1.AddressTypeIPv6, 8080, readyEP("fd01::1", "n1")),
			},
			Nodes: threeNodes,
		},
		opts: baseOpts(config.ModeDirect),
		want: map[string][]string{
			"192.0.2.10:80/tcp":     {"10.1.1.1:8080 w=1 n1"},
			"[2001:db8::10]:80/tcp": {"[fd01::1]:8080 w=1 n1"},
		},
	}, {
		name: "dual-stack nodeport: nodes without an address of the family are skipped",
		snap: Snapshot{
			Services: []*corev1.Service{svc("web", []string{"2001:db8::10"})},
			Nodes:    []*corev1.Node{nodeObj("n1", true, nil, "10.0.0.1"), nodeObj("n2", true, nil, "10.0.0.2", "fd00::2")},
		},
		opts: baseOpts(config.ModeNodePort),
		want: map[string][]string{"[2001:db8::10]:80/tcp": {"[fd00::2]:30080 w=1 n2"}},
	}, {
		name: "session affinity and scheduler annotation",
		snap: Snapshot{Services: []*corev1.Service{
			svc("sticky", []string{"192.0.2.10"}, func(s *corev1.Service) {
				s.Spec.SessionAffinity = corev1.ServiceAffinityClientIP
				s.Spec.SessionAffinityConfig = &corev1.SessionAffinityConfig{ClientIP: &corev1.ClientIPConfig{TimeoutSeconds: ptr(int32(600))}}
				s.Annotations[AnnotationScheduler] = "sh"
			}),
			svc("default-timeout", []string{"192.0.2.11"}, func(s *corev1.Service) {
				s.Spec.SessionAffinity = corev1.ServiceAffinityClientIP
			}),
			svc("bad-scheduler", []string{"192.0.2.12"}, func(s *corev1.Service) {
				s.Annotations[AnnotationScheduler] = "fastest"
			}),
		}, Nodes: threeNodes[:1]},
		opts: baseOpts(config.ModeNodePort),
		check: func(t *testing.T, d *Desired) {
			want := map[string]struct {
				sched string
				p     time.Duration
			}{"sticky": {"sh", 600 * time.Second}, "default-timeout": {"rr", 10800 * time.Second}, "bad-scheduler": {"rr", 0}}
			for _, vs := range d.Services {
				w := want[vs.Source.Name]
				if vs.Scheduler != w.sched || vs.Persistence != w.p {
					t.Errorf("%s: scheduler %s persistence %s, want %s %s", vs.Source.Name, vs.Scheduler, vs.Persistence, w.sched, w.p)
				}
			}
		},
	}, {
		name: "only our LoadBalancers count",
		snap: Snapshot{Services: []*corev1.Service{
			svc("ours", []string{"192.0.2.1"}, func(s *corev1.Service) { s.Spec.LoadBalancerClass = ptr("edgelb.io/lb") }),
			svc("theirs", []string{"192.0.2.2"}, func(s *corev1.Service) { s.Spec.LoadBalancerClass = ptr("metallb.io/metallb") }),
			svc("classless", []string{"192.0.2.3"}),
			svc("clusterip", []string{"192.0.2.4"}, func(s *corev1.Service) { s.Spec.Type = corev1.ServiceTypeClusterIP }),
			svc("nodeport", []string{"192.0.2.5"}, func(s *corev1.Service) { s.Spec.Type = corev1.ServiceTypeNodePort }),
			svc("pending", nil),
		}, Nodes: threeNodes[:1]},
		opts: Options{Mode: config.ModeNodePort, Method: NAT, DefaultScheduler: "rr", Class: "edgelb.io/lb", DefaultClass: false, Pools: testPools},
		want: map[string][]string{"192.0.2.1:80/tcp": {"10.0.0.1:30080 w=1 n1"}},
	}, {
		name: "static services from the config",
		opts: Options{Mode: config.ModeNodePort, Method: DR, DefaultScheduler: "wlc", Static: []config.StaticService{{
			Name: "dns", VIP: netip.MustParseAddr("192.0.2.53"),
			Ports:    []config.StaticPort{{Port: 53, Protocol: "UDP"}, {Port: 53, Protocol: "TCP", TargetPort: 5353}},
			Backends: []netip.AddrPort{netip.MustParseAddrPort("10.0.1.6:53"), netip.AddrPortFrom(netip.MustParseAddr("10.0.1.5"), 0)},
		}}},
		want: map[string][]string{
			"192.0.2.53:53/tcp": {"10.0.1.5:5353 w=1", "10.0.1.6:53 w=1"},
			"192.0.2.53:53/udp": {"10.0.1.5:53 w=1", "10.0.1.6:53 w=1"},
		},
		check: func(t *testing.T, d *Desired) {
			for _, vs := range d.Services {
				if vs.Method != DR || vs.Scheduler != "wlc" || !vs.Source.Static() {
					t.Errorf("%s: method %s scheduler %s source %s", vs.Key, vs.Method, vs.Scheduler, vs.Source)
				}
			}
		},
	}, {
		name: "a static service keeps its VIP:port over a Service claiming it",
		snap: Snapshot{Services: []*corev1.Service{svc("web", []string{"192.0.2.53"})}, Nodes: threeNodes[:1]},
		opts: Options{Mode: config.ModeNodePort, DefaultScheduler: "rr", DefaultClass: true, Pools: testPools, Static: []config.StaticService{{
			Name: "static", VIP: netip.MustParseAddr("192.0.2.53"), Ports: []config.StaticPort{{Port: 80, Protocol: "TCP"}},
			Backends: []netip.AddrPort{netip.MustParseAddrPort("10.9.9.9:80")},
		}}},
		want: map[string][]string{"192.0.2.53:80/tcp": {"10.9.9.9:80 w=1"}},
	}}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			d, _ := Build(c.snap, c.opts)
			if !slices.IsSortedFunc(d.Services, func(a, b VirtualService) int { return a.Key.Compare(b.Key) }) {
				t.Errorf("services are not sorted by key")
			}
			if c.want != nil {
				got := map[string][]string{}
				for _, vs := range d.Services {
					got[vs.Key.String()] = be(vs)
				}
				if fmt.Sprint(got) != fmt.Sprint(c.want) {
					t.Errorf("got  %v\nwant %v", got, c.want)
				}
			}
			if c.check != nil {
				c.check(t, d)
			}
		})
	}
}

// Only status addresses inside a pool are put in the desired state: a
// leftover of another load balancer, or a status patched to name the
// gateway, must not be announced by every host. Each one refused is a
// Problem with a reason for a Warning Event; every other address works.
func TestBuildKeepsToThePools(t *testing.T) {
	edge := []config.Pool{{Name: "edge", Ranges: []netipx.IPRange{
		netipx.IPRangeFrom(netip.MustParseAddr("192.0.2.10"), netip.MustParseAddr("192.0.2.50")),
		netipx.RangeOfPrefix(netip.MustParsePrefix("2001:db8:1::/120")),
	}}}
	static := []config.StaticService{{Name: "dns", VIP: netip.MustParseAddr("198.51.100.53"),
		Ports: []config.StaticPort{{Port: 53, Protocol: "UDP"}}, Backends: []netip.AddrPort{netip.MustParseAddrPort("10.0.1.5:53")}}}
	cases := []struct {
		name  string
		svcs  []*corev1.Service
		pools []config.Pool
		// vips are the VIPs of the desired state; problems are
		// "namespace/name Reason: message".
		vips     []string
		problems []string
	}{{
		name:  "addresses inside a pool are announced",
		svcs:  []*corev1.Service{svc("web", []string{"192.0.2.10"}), svc("v6", []string{"2001:db8:1::5"})},
		pools: edge,
		vips:  []string{"192.0.2.10", "198.51.100.53", "2001:db8:1::5"},
	}, {
		name:  "a leftover of another load balancer is refused, the others work",
		svcs:  []*corev1.Service{svc("web", []string{"192.0.2.10"}), svc("leftover", []string{"203.0.113.7"})},
		pools: edge,
		vips:  []string{"192.0.2.10", "198.51.100.53"},
		problems: []string{
			"ns/leftover AddressNotInPool: 203.0.113.7 in the status is in no address pool: not announced",
		},
	}, {
		name:  "the gateway next to the pool is refused",
		svcs:  []*corev1.Service{svc("gw", []string{"192.0.2.1"})},
		pools: edge,
		vips:  []string{"198.51.100.53"},
		problems: []string{
			"ns/gw AddressNotInPool: 192.0.2.1 in the status is in no address pool: not announced",
		},
	}, {
		name:  "dual-stack: the address inside a pool is kept",
		svcs:  []*corev1.Service{svc("dual", []string{"192.0.2.60", "2001:db8:1::7"})},
		pools: edge,
		vips:  []string{"198.51.100.53", "2001:db8:1::7"},
		problems: []string{
			"ns/dual AddressNotInPool: 192.0.2.60 in the status is in no address pool: not announced",
		},
	}, {
		name: "without pools no Service address is announced; static services are",
		svcs: []*corev1.Service{svc("web", []string{"192.0.2.10"})},
		vips: []string{"198.51.100.53"},
		problems: []string{
			"ns/web AddressNotInPool: 192.0.2.10 in the status is in no address pool: not announced",
		},
	}}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			opts := baseOpts(config.ModeNodePort)
			opts.Pools, opts.Static = c.pools, static
			d, problems := Build(Snapshot{Services: c.svcs, Nodes: threeNodes}, opts)
			var vips, got []string
			for _, v := range d.VIPs() {
				vips = append(vips, v.String())
			}
			for _, p := range problems {
				got = append(got, fmt.Sprintf("%s %s: %s", p.Source, p.Reason, p.Message))
			}
			if !slices.Equal(vips, c.vips) {
				t.Errorf("VIPs %v, want %v", vips, c.vips)
			}
			if !slices.Equal(got, c.problems) {
				t.Errorf("problems %q\nwant     %q", got, c.problems)
			}
		})
	}
}

// Problems name the Service they concern.
func TestBuildReportsProblems(t *testing.T) {
	_, problems := Build(Snapshot{Services: []*corev1.Service{
		svc("bad", []string{"192.0.2.1"}, func(s *corev1.Service) { s.Annotations[AnnotationScheduler] = "x" }),
	}}, baseOpts(config.ModeNodePort))
	if len(problems) != 1 || problems[0].Source.Name != "bad" || !strings.Contains(problems[0].Message, "using rr") {
		t.Errorf("problems = %+v", problems)
	}
}

// Build must not modify its input and must be deterministic.
func TestBuildIsPure(t *testing.T) {
	snap := bigSnapshot(50, 5)
	before := fmt.Sprint(snap.Services[0], snap.EndpointSlices[0])
	a, _ := Build(snap, baseOpts(config.ModeDirect))
	b, _ := Build(snap, baseOpts(config.ModeDirect))
	if fmt.Sprint(snap.Services[0], snap.EndpointSlices[0]) != before {
		t.Error("Build modified its input")
	}
	if !slices.EqualFunc(a.Services, b.Services, func(x, y VirtualService) bool { return x.Equal(&y) }) {
		t.Error("two Builds of one snapshot differ")
	}
}

func bigSnapshot(services, endpoints int) Snapshot {
	var snap Snapshot
	for i := 0; i < 20; i++ {
		snap.Nodes = append(snap.Nodes, nodeObj(fmt.Sprintf("node%02d", i), true, nil, fmt.Sprintf("10.0.0.%d", i+1)))
	}
	for i := 0; i < services; i++ {
		name := fmt.Sprintf("svc%05d", i)
		vip := netip.AddrFrom4([4]byte{10, 100, byte(i >> 8), byte(i)}).String()
		snap.Services = append(snap.Services, svc(name, []string{vip}, func(s *corev1.Service) {
			s.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal
		}))
		var eps []ep
		for j := 0; j < endpoints; j++ {
			eps = append(eps, readyEP(netip.AddrFrom4([4]byte{10, 128 + byte(j), byte(i >> 8), byte(i)}).String(), fmt.Sprintf("node%02d", (i+j)%20)))
		}
		snap.EndpointSlices = append(snap.EndpointSlices, slice(name, discoveryv1.AddressTypeIPv4, 8080, eps...))
	}
	return snap
}

// BenchmarkBuild measures the desired state for 10,000 LoadBalancer
// Services with 10 endpoints each (target: under 200 ms).
func BenchmarkBuild(b *testing.B) {
	snap := bigSnapshot(10000, 10)
	for _, mode := range []config.Mode{config.ModeDirect, config.ModeNodePort} {
		b.Run("10kServices_10endpoints_"+string(mode), func(b *testing.B) {
			opts := baseOpts(mode)
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				d, _ := Build(snap, opts)
				if len(d.Services) != 10000 {
					b.Fatalf("%d services", len(d.Services))
				}
			}
		})
	}
}

func FuzzAnnotations(f *testing.F) {
	for _, s := range []string{"192.0.2.1", "192.0.2.1,2001:db8::1", " 192.0.2.1 , 2001:db8::1 ", "1.2.3.4,5.6.7.8", ",", "rr", "mh", "web", "a b", "::ffff:1.2.3.4", "fe80::1%eth0"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if ips, err := ParseIPs(s); err == nil {
			if len(ips) == 0 || len(ips) > 2 {
				t.Fatalf("ParseIPs(%q) = %v without error", s, ips)
			}
			for _, ip := range ips {
				if !ip.IsValid() || ip.Zone() != "" {
					t.Fatalf("ParseIPs(%q) returned %v", s, ip)
				}
			}
		}
		if v, err := ParseScheduler(s); (err == nil) != slices.Contains(config.Schedulers, v) {
			t.Fatalf("ParseScheduler(%q) = %q, %v", s, v, err)
		}
		if v, err := ParseSharingKey(s); err == nil && (v == "" || len(v) > 63) {
			t.Fatalf("ParseSharingKey(%q) = %q without error", s, v)
		}
		if v, err := ParsePool(s); err == nil && v == "" {
			t.Fatalf("ParsePool(%q) accepted an empty name", s)
		}
		svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Annotations: map[string]string{
			AnnotationIPs: s, AnnotationPool: s, AnnotationShared: s, AnnotationScheduler: s,
			AnnotationMode: s, AnnotationMethod: s, AnnotationHealthCheckType: s, AnnotationHealthCheckPort: s,
			AnnotationHealthCheckPath: s, AnnotationHealthCheckInterval: s, AnnotationHealthCheckTimeout: s,
			AnnotationHealthCheckRise: s, AnnotationHealthCheckFall: s, AnnotationMaxConnections: s,
		}}}
		_ = CheckAnnotations(svc)
		if ch, errs := ChoicesOf(svc, &Options{Mode: config.ModeNodePort, Method: NAT}); len(errs) == 0 && ch.Check.Path != "" && config.CheckPath(ch.Check.Path) != nil {
			t.Fatalf("ChoicesOf accepted the path %q", ch.Check.Path)
		}
	})
}

// A bgp VIP uses mh unless its Service names a scheduler; an l2 VIP uses
// the default.
func TestBGPVIPsUseMaglev(t *testing.T) {
	var b netipx.IPSetBuilder
	b.AddPrefix(netip.MustParsePrefix("198.51.100.0/28"))
	b.Add(netip.MustParseAddr("198.51.100.53"))
	bgp, _ := b.IPSet()
	var pb netipx.IPSetBuilder
	pb.AddPrefix(netip.MustParsePrefix("198.51.100.0/28"))
	pb.AddPrefix(netip.MustParsePrefix("192.0.2.0/28"))
	pools, _ := pb.IPSet()
	opts := Options{DefaultScheduler: "wlc", DefaultClass: true, BGP: bgp,
		Pools: []config.Pool{{Name: "p", Ranges: pools.Ranges()}},
		Static: []config.StaticService{
			{Name: "dns", VIP: netip.MustParseAddr("198.51.100.53"), Ports: []config.StaticPort{{Port: 53, Protocol: "UDP"}}},
			{Name: "own", VIP: netip.MustParseAddr("198.51.100.54"), Scheduler: "sh", Ports: []config.StaticPort{{Port: 53, Protocol: "UDP"}}},
			{Name: "l2", VIP: netip.MustParseAddr("192.0.2.53"), Ports: []config.StaticPort{{Port: 53, Protocol: "UDP"}}},
		}}
	snap := Snapshot{Services: []*corev1.Service{
		svc("bgp", []string{"198.51.100.1"}),
		svc("bgp-own", []string{"198.51.100.2"}, func(s *corev1.Service) { s.Annotations[AnnotationScheduler] = "lc" }),
		svc("both", []string{"198.51.100.3", "192.0.2.3"}),
	}}
	d, _ := Build(snap, opts)
	got := map[string]string{}
	for _, vs := range d.Services {
		got[vs.VIP.String()] = vs.Scheduler
	}
	want := map[string]string{"198.51.100.53": "mh", "198.51.100.54": "sh", "192.0.2.53": "wlc",
		"198.51.100.1": "mh", "198.51.100.2": "lc", "198.51.100.3": "mh", "192.0.2.3": "wlc"}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s: scheduler %q, want %q (all: %v)", k, got[k], v, got)
		}
	}
}
