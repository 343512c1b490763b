package lb

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/edgelb/edgelb/lb/config"
)

// world is a ServiceSource over maps, and the Snapshot Build reads.
type world struct {
	svcs   map[string]*corev1.Service
	slices map[string][]*EndpointSlice
	nodes  []*corev1.Node
}

func (w *world) Service(k string) *corev1.Service { return w.svcs[k] }
func (w *world) EndpointSlices(k string) []*EndpointSlice {
	return w.slices[k]
}

func (w *world) keys() []string {
	var out []string
	for k := range w.svcs {
		out = append(out, k)
	}
	return out
}

// snapshot is what the daemon hands Build: Services oldest first.
func (w *world) snapshot() Snapshot {
	var s Snapshot
	for _, svc := range w.svcs {
		s.Services = append(s.Services, svc)
	}
	slices.SortFunc(s.Services, func(a, b *corev1.Service) int {
		if c := a.CreationTimestamp.Compare(b.CreationTimestamp.Time); c != 0 {
			return c
		}
		return strings.Compare(a.Namespace+"/"+a.Name, b.Namespace+"/"+b.Name)
	})
	for _, sl := range w.slices {
		s.EndpointSlices = append(s.EndpointSlices, sl...)
	}
	s.Nodes = w.nodes
	return s
}

func problemSet(ps []Problem) []string {
	var out []string
	for _, p := range ps {
		if strings.Contains(p.Message, "already used by") {
			// Build names the claimant sorted before, Incremental the
			// winner: only who lost is compared.
			out = append(out, p.Source.String()+" lost a key")
			continue
		}
		out = append(out, fmt.Sprintf("%s %s %s", p.Source, p.Reason, p.Message))
	}
	slices.Sort(out)
	return out
}

// TestIncrementalIsBuild walks random changes (Services added, changed and
// deleted, sharing VIPs and ports so that they compete for keys,
// endpoints moving, nodes going unready) and checks after each that the
// incremental result is Build's, and that every key whose virtual
// service changed is listed as changed.
func TestIncrementalIsBuild(t *testing.T) {
	for _, mode := range []config.Mode{config.ModeDirect, config.ModeNodePort} {
		t.Run(string(mode), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(1, uint64(len(mode))))
			opts := baseOpts(mode)
			opts.Static = []config.StaticService{{Name: "static", VIP: netip.MustParseAddr("192.0.2.1"),
				Ports: []config.StaticPort{{Port: 80, Protocol: "TCP"}}, Backends: []netip.AddrPort{netip.MustParseAddrPort("10.9.9.9:80")}}}
			opts.BackendStates = []config.BackendAdmin{{Service: "ns/s3", Backend: netip.MustParseAddrPort("10.1.3.1:8080"), State: config.BackendDrain}}
			w := &world{svcs: map[string]*corev1.Service{}, slices: map[string][]*EndpointSlice{}, nodes: threeNodes}
			in := NewIncremental()
			in.SetOptions(opts)
			in.SetNodes(w.nodes)
			prev := in.UpdateAll(w, w.keys()).Desired
			for step := range 400 {
				i := rng.IntN(8)
				name := fmt.Sprintf("s%d", i)
				key := "ns/" + name
				var keys []string
				switch op := rng.IntN(10); {
				case op < 4: // add or change the Service
					vip := fmt.Sprintf("192.0.2.%d", 1+rng.IntN(4))
					s := svc(name, []string{vip}, func(s *corev1.Service) {
						s.CreationTimestamp = metav1.NewTime(time.Unix(int64(i%3), 0))
						s.Spec.Ports[0].Port = int32(80 + rng.IntN(2))
						if rng.IntN(3) == 0 {
							s.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal
						}
						if rng.IntN(5) == 0 {
							s.Annotations[AnnotationSourceRanges] = "not a range"
						}
						if rng.IntN(6) == 0 {
							s.Spec.Type = corev1.ServiceTypeClusterIP
						}
					})
					w.svcs[key] = s
					keys = []string{key}
				case op < 5:
					delete(w.svcs, key)
					keys = []string{key}
				case op < 9: // endpoints move
					var eps []ep
					for j := range rng.IntN(4) {
						eps = append(eps, ep{fmt.Sprintf("10.1.%d.%d", i, 1+j+rng.IntN(2)), fmt.Sprintf("n%d", 1+rng.IntN(3)), rng.IntN(4) > 0, true, rng.IntN(4) == 0})
					}
					w.slices[key] = []*EndpointSlice{slice(name, discoveryv1.AddressTypeIPv4, 8080, eps...)}
					keys = []string{key}
				default: // a node flaps
					n := rng.IntN(3)
					nodes := slices.Clone(w.nodes)
					nodes[n] = nodeObj(nodes[n].Name, rng.IntN(2) == 0, nil, fmt.Sprintf("10.0.0.%d", n+1), fmt.Sprintf("fd00::%d", n+1))
					w.nodes = nodes
				}
				got := in.Update(w, append(keys, in.SetNodes(w.nodes)...))
				snap := w.snapshot()
				snap.Previous = prev
				want, wantProblems := Build(snap, opts)
				if len(got.Desired.Services) != len(want.Services) {
					t.Fatalf("step %d: %d virtual services, Build has %d", step, len(got.Desired.Services), len(want.Services))
				}
				for j := range want.Services {
					if !got.Desired.Services[j].Equal(&want.Services[j]) {
						t.Fatalf("step %d: %v, Build has %v", step, &got.Desired.Services[j], &want.Services[j])
					}
				}
				if g, w := problemSet(got.Problems), problemSet(wantProblems); !slices.Equal(g, w) {
					t.Fatalf("step %d: problems\n%q\nBuild's\n%q", step, g, w)
				}
				assertChangedListed(t, step, prev, got)
				prev = got.Desired
			}
		})
	}
}

// assertChangedListed checks that every key added, removed or changed
// between prev and c.Desired is in c.Changed.
func assertChangedListed(t *testing.T, step int, prev *Desired, c Change) {
	t.Helper()
	old := map[Key]*VirtualService{}
	for i := range prev.Services {
		old[prev.Services[i].Key] = &prev.Services[i]
	}
	listed := func(k Key) bool { _, ok := slices.BinarySearchFunc(c.Changed, k, Key.Compare); return ok }
	for i := range c.Desired.Services {
		vs := &c.Desired.Services[i]
		if o := old[vs.Key]; (o == nil || !o.Equal(vs)) && !listed(vs.Key) {
			t.Fatalf("step %d: %s changed but is not listed", step, vs.Key)
		}
		delete(old, vs.Key)
	}
	for k := range old {
		if !listed(k) {
			t.Fatalf("step %d: %s removed but is not listed", step, k)
		}
	}
}

// TestIncrementalTouchesOneService checks that an endpoint change of one
// Service among many lists only its keys as changed.
func TestIncrementalTouchesOneService(t *testing.T) {
	snap := bigSnapshot(100, 3)
	w := &world{svcs: map[string]*corev1.Service{}, slices: map[string][]*EndpointSlice{}, nodes: snap.Nodes}
	for _, s := range snap.Services {
		w.svcs[s.Namespace+"/"+s.Name] = s
	}
	for _, s := range snap.EndpointSlices {
		k := s.Namespace + "/" + s.Service
		w.slices[k] = append(w.slices[k], s)
	}
	in := NewIncremental()
	in.SetOptions(baseOpts(config.ModeDirect))
	in.SetNodes(w.nodes)
	first := in.UpdateAll(w, w.keys())
	if len(first.Desired.Services) != 100 {
		t.Fatalf("%d virtual services", len(first.Desired.Services))
	}
	w.slices["ns/svc00042"] = []*EndpointSlice{slice("svc00042", discoveryv1.AddressTypeIPv4, 8080, readyEP("10.200.0.1", "node01"))}
	c := in.Update(w, []string{"ns/svc00042"})
	if len(c.Changed) != 1 || c.Changed[0].VIP != netip.MustParseAddr("10.100.0.42") {
		t.Fatalf("changed %v, want only svc00042's key", c.Changed)
	}
	for i := range c.Desired.Services {
		vs := &c.Desired.Services[i]
		if vs.Source.Name == "svc00042" {
			if got := be(*vs); !slices.Equal(got, []string{"10.200.0.1:8080 w=1 node01"}) {
				t.Fatalf("svc00042's backends %v", got)
			}
		} else if !vs.Equal(&first.Desired.Services[i]) {
			t.Fatalf("%s changed", vs)
		}
	}
}

// BenchmarkIncrementalUpdate measures one endpoint change at 10,000
// Services × 10 endpoints: that Service rebuilt and the state assembled
// (against BenchmarkBuild's full rebuild).
func BenchmarkIncrementalUpdate(b *testing.B) {
	snap := bigSnapshot(10000, 10)
	w := &world{svcs: map[string]*corev1.Service{}, slices: map[string][]*EndpointSlice{}, nodes: snap.Nodes}
	for _, s := range snap.Services {
		w.svcs[s.Namespace+"/"+s.Name] = s
	}
	for _, s := range snap.EndpointSlices {
		k := s.Namespace + "/" + s.Service
		w.slices[k] = append(w.slices[k], s)
	}
	for _, mode := range []config.Mode{config.ModeDirect, config.ModeNodePort} {
		b.Run("10kServices_10endpoints_"+string(mode), func(b *testing.B) {
			in := NewIncremental()
			in.SetOptions(baseOpts(mode))
			in.SetNodes(w.nodes)
			in.UpdateAll(w, w.keys())
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				k := fmt.Sprintf("svc%05d", i%10000)
				w.slices["ns/"+k] = []*EndpointSlice{slice(k, discoveryv1.AddressTypeIPv4, 8080, readyEP(fmt.Sprintf("10.200.%d.%d", i>>8&255, i&255), "node01"))}
				if c := in.Update(w, []string{"ns/" + k}); len(c.Changed) != 1 {
					b.Fatalf("changed %v", c.Changed)
				}
			}
		})
	}
}
