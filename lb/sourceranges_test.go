package lb

import (
	"net/netip"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"

	"github.com/edgelb/edgelb/lb/config"
)

func prefixes(ss ...string) []netip.Prefix {
	out := []netip.Prefix{}
	for _, s := range ss {
		out = append(out, netip.MustParsePrefix(s))
	}
	return out
}

func specRanges(r ...string) svcOpt {
	return func(s *corev1.Service) { s.Spec.LoadBalancerSourceRanges = r }
}

func annotRanges(v string) svcOpt {
	return func(s *corev1.Service) { s.Annotations[AnnotationSourceRanges] = v }
}

// Source ranges come from the spec field, else the annotation; they are
// masked, sorted and deduplicated; a malformed list keeps the previous
// rules of the Service's virtual services, or fails closed without them.
func TestBuildSourceRanges(t *testing.T) {
	dual := []string{"192.0.2.1", "2001:db8::1"}
	prevOpen := &Desired{Services: []VirtualService{{Key: Key{VIP: netip.MustParseAddr("192.0.2.1"), Port: 80, Protocol: TCP}, Source: Source{Namespace: "ns", Name: "a", PortName: "http"}}}}
	prevRanges := &Desired{Services: []VirtualService{
		{Key: Key{VIP: netip.MustParseAddr("192.0.2.1"), Port: 80, Protocol: TCP}, Source: Source{Namespace: "ns", Name: "a"}, SourceRanges: prefixes("10.0.0.0/8")},
		{Key: Key{VIP: netip.MustParseAddr("2001:db8::1"), Port: 80, Protocol: TCP}, Source: Source{Namespace: "ns", Name: "a"}, SourceRanges: prefixes("2001:db8:1::/48")},
	}}
	prevOther := &Desired{Services: []VirtualService{
		{Key: Key{VIP: netip.MustParseAddr("192.0.2.1"), Port: 80, Protocol: TCP}, Source: Source{Namespace: "ns", Name: "other"}, SourceRanges: prefixes("0.0.0.0/0")},
	}}
	cases := []struct {
		name    string
		svc     *corev1.Service
		prev    *Desired
		want    map[string][]netip.Prefix // by VIP; nil: unrestricted
		problem string
	}{
		{name: "none", svc: svc("a", dual), want: map[string][]netip.Prefix{"192.0.2.1": nil, "2001:db8::1": nil}},
		{name: "spec field", svc: svc("a", dual, specRanges("10.0.0.0/8", "2001:db8:1::/48")),
			want: map[string][]netip.Prefix{"192.0.2.1": prefixes("10.0.0.0/8", "2001:db8:1::/48"), "2001:db8::1": prefixes("10.0.0.0/8", "2001:db8:1::/48")}},
		{name: "annotation, spaces, masked, sorted, deduplicated", svc: svc("a", []string{"192.0.2.1"}, annotRanges(" 198.51.100.7/32, 10.0.0.1/8 ,10.0.0.0/8")),
			want: map[string][]netip.Prefix{"192.0.2.1": prefixes("10.0.0.0/8", "198.51.100.7/32")}},
		{name: "spec wins over the annotation", svc: svc("a", []string{"192.0.2.1"}, specRanges("10.1.0.0/16"), annotRanges("10.2.0.0/16")),
			want: map[string][]netip.Prefix{"192.0.2.1": prefixes("10.1.0.0/16")}},
		{name: "spec wins over a malformed annotation", svc: svc("a", []string{"192.0.2.1"}, specRanges("10.1.0.0/16"), annotRanges("nonsense")),
			want: map[string][]netip.Prefix{"192.0.2.1": prefixes("10.1.0.0/16")}},
		{name: "empty annotation: unrestricted", svc: svc("a", []string{"192.0.2.1"}, annotRanges(" ")),
			want: map[string][]netip.Prefix{"192.0.2.1": nil}},
		{name: "IPv6 only", svc: svc("a", []string{"2001:db8::1"}, annotRanges("2001:db8:1::1/48")),
			want: map[string][]netip.Prefix{"2001:db8::1": prefixes("2001:db8:1::/48")}},
		{name: "malformed annotation, first sight: fail closed", svc: svc("a", dual, annotRanges("10.0.0.0/8,10.0.0.0/33")),
			want:    map[string][]netip.Prefix{"192.0.2.1": {}, "2001:db8::1": {}},
			problem: `"10.0.0.0/33" is not a CIDR`},
		{name: "malformed annotation keeps the previous ranges", svc: svc("a", dual, annotRanges("10.0.0.0/8,bad")), prev: prevRanges,
			want:    map[string][]netip.Prefix{"192.0.2.1": prefixes("10.0.0.0/8"), "2001:db8::1": prefixes("2001:db8:1::/48")},
			problem: `"bad" is not a CIDR`},
		{name: "malformed annotation keeps a previously open service open", svc: svc("a", []string{"192.0.2.1"}, annotRanges("bad")), prev: prevOpen,
			want: map[string][]netip.Prefix{"192.0.2.1": nil}, problem: `"bad"`},
		{name: "another Service's previous ranges are not taken", svc: svc("a", []string{"192.0.2.1"}, annotRanges("bad")), prev: prevOther,
			want: map[string][]netip.Prefix{"192.0.2.1": {}}, problem: `"bad"`},
		{name: "malformed spec field (not validated by a fake API server)", svc: svc("a", []string{"192.0.2.1"}, specRanges("10.0.0.0")),
			want: map[string][]netip.Prefix{"192.0.2.1": {}}, problem: `spec.loadBalancerSourceRanges: "10.0.0.0" is not a CIDR`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			neighbour := svc("b", []string{"192.0.2.2"}, specRanges("10.9.0.0/16"))
			d, problems := Build(Snapshot{Services: []*corev1.Service{c.svc, neighbour}, Nodes: threeNodes, Previous: c.prev}, baseOpts(config.ModeNodePort))
			got := map[string][]netip.Prefix{}
			for _, vs := range d.Services {
				if vs.Source.Name == "a" {
					got[vs.VIP.String()] = vs.SourceRanges
				} else if !slices.Equal(vs.SourceRanges, prefixes("10.9.0.0/16")) {
					t.Errorf("the neighbour's ranges are %v", vs.SourceRanges)
				}
			}
			if len(got) != len(c.want) {
				t.Fatalf("got services for %v, want %v", got, c.want)
			}
			for vip, want := range c.want {
				g, ok := got[vip]
				if !ok || (g == nil) != (want == nil) || !slices.Equal(g, want) {
					t.Errorf("%s: ranges %#v, want %#v", vip, g, want)
				}
			}
			if c.problem == "" {
				if len(problems) != 0 {
					t.Errorf("problems = %+v", problems)
				}
				return
			}
			if len(problems) != 1 || problems[0].Reason != "InvalidSourceRanges" || problems[0].Source.Name != "a" ||
				!strings.Contains(problems[0].Message, c.problem) {
				t.Errorf("problems = %+v, want one InvalidSourceRanges with %q", problems, c.problem)
			}
		})
	}
}

// Static services take sourceRanges from the config as they are.
func TestBuildStaticSourceRanges(t *testing.T) {
	opts := baseOpts(config.ModeNodePort)
	opts.Static = []config.StaticService{
		{Name: "open", VIP: netip.MustParseAddr("203.0.113.1"), Ports: []config.StaticPort{{Port: 53, Protocol: "UDP"}}},
		{Name: "closed", VIP: netip.MustParseAddr("203.0.113.2"), Ports: []config.StaticPort{{Port: 53, Protocol: "UDP"}, {Port: 53, Protocol: "TCP"}},
			SourceRanges: prefixes("2001:db8::/32", "10.0.0.0/8")},
	}
	d, problems := Build(Snapshot{}, opts)
	if len(problems) != 0 || len(d.Services) != 3 {
		t.Fatalf("services %v, problems %v", d.Services, problems)
	}
	for _, vs := range d.Services {
		want := prefixes("10.0.0.0/8", "2001:db8::/32")
		if vs.Source.Name == "open" {
			want = nil
		}
		if (vs.SourceRanges == nil) != (want == nil) || !slices.Equal(vs.SourceRanges, want) {
			t.Errorf("%s: ranges %v, want %v", vs.Key, vs.SourceRanges, want)
		}
	}
	if opts.Static[1].SourceRanges[0] != netip.MustParsePrefix("2001:db8::/32") {
		t.Error("Build reordered the config's ranges")
	}
}

// Equal tells an unrestricted service from one closed to everybody.
func TestEqualSourceRanges(t *testing.T) {
	a := VirtualService{Key: Key{VIP: netip.MustParseAddr("192.0.2.1"), Port: 80, Protocol: TCP}}
	b := a
	b.SourceRanges = []netip.Prefix{}
	c := a
	c.SourceRanges = prefixes("10.0.0.0/8")
	if a.Equal(&b) || b.Equal(&c) || a.Equal(&c) || !c.Equal(&c) {
		t.Error("Equal ignores the source ranges")
	}
}
