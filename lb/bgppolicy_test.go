package lb

import (
	"net/netip"
	"strconv"
	"strings"
	"testing"

	"go4.org/netipx"
	corev1 "k8s.io/api/core/v1"

	"github.com/edgelb/edgelb/lb/config"
)

// bgpOpts has one bgp pool, 192.0.2.0/25, tagging its routes 65000:1
// with local-pref 100, and an l2 pool, 192.0.2.128/25.
func bgpOpts() Options {
	lp := uint32(100)
	o := baseOpts(config.ModeNodePort)
	o.Pools = []config.Pool{
		{Name: "edge", Announce: config.AnnounceBGP, Ranges: []netipx.IPRange{netipx.RangeOfPrefix(netip.MustParsePrefix("192.0.2.0/25"))},
			BGP: &config.BGPPolicy{Communities: []config.Community{65000<<16 | 1}, LocalPref: &lp}},
		{Name: "lan", Ranges: []netipx.IPRange{netipx.RangeOfPrefix(netip.MustParsePrefix("192.0.2.128/25"))}},
	}
	var b netipx.IPSetBuilder
	b.AddRange(o.Pools[0].Ranges[0])
	o.BGP, _ = b.IPSet()
	return o
}

// policyOf is a virtual service's policy, the zero one for nil.
func policyOf(p *config.BGPPolicy) config.BGPPolicy {
	if p == nil {
		return config.BGPPolicy{}
	}
	return *p
}

func policyString(p config.BGPPolicy) string {
	var parts []string
	for _, c := range p.Communities {
		parts = append(parts, c.String())
	}
	for _, c := range p.LargeCommunities {
		parts = append(parts, c.String())
	}
	if p.LocalPref != nil {
		parts = append(parts, "lp="+strconv.FormatUint(uint64(*p.LocalPref), 10))
	}
	return strings.Join(parts, " ")
}

// A Service's annotations add communities to its pool's and replace the
// pool's local preference; the route of a shared VIP carries those of
// every Service on it.
func TestBGPPolicyAnnotations(t *testing.T) {
	cases := []struct {
		name string
		kv   []string
		want string
	}{
		{"none: the pool's", nil, "65000:1 lp=100"},
		{"communities added", []string{AnnotationBGPCommunities, "65000:7, no-export"}, "65000:1 65000:7 no-export lp=100"},
		{"large communities", []string{AnnotationBGPLargeCommunities, "65000:1:2,65000:3:4"}, "65000:1 65000:1:2 65000:3:4 lp=100"},
		{"local-pref replaces the pool's", []string{AnnotationBGPLocalPref, "250"}, "65000:1 lp=250"},
		{"local-pref 0", []string{AnnotationBGPLocalPref, "0"}, "65000:1 lp=0"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			snap := choicesSnap(annotated(c.kv...))
			d, problems := Build(snap, bgpOpts())
			if len(problems) != 0 {
				t.Errorf("problems: %+v", problems)
			}
			if got := policyString(policyOf(d.Services[0].BGP)); got != c.want {
				t.Errorf("virtual service policy %q, want %q", got, c.want)
			}
			if got := policyString(d.BGPPolicy(netip.MustParseAddr("192.0.2.10"))); got != c.want {
				t.Errorf("route policy %q, want %q", got, c.want)
			}
		})
	}
}

// A bad BGP annotation is a Warning on that Service only: its route keeps
// the pool's policy, and the other Services keep theirs.
func TestBadBGPPolicyAnnotations(t *testing.T) {
	cases := []struct{ key, value, want string }{
		{AnnotationBGPCommunities, "65000:1,gold", `"gold" is not a community`},
		{AnnotationBGPCommunities, "0:5", `reserved range`},
		{AnnotationBGPCommunities, "graceful-shutdown", `edgelb adds graceful-shutdown`},
		{AnnotationBGPLargeCommunities, "65000:1", `is not a large community`},
		{AnnotationBGPLocalPref, "high", `is not a local preference`},
	}
	for _, c := range cases {
		t.Run(c.key+"="+c.value, func(t *testing.T) {
			snap := choicesSnap(annotated(c.key, c.value))
			other := svc("api", []string{"192.0.2.11"}, annotated(AnnotationBGPCommunities, "65000:9"))
			snap.Services = append(snap.Services, other)
			d, problems := Build(snap, bgpOpts())
			if len(problems) != 1 || problems[0].Reason != ReasonInvalidAnnotation || problems[0].Source.Name != "web" ||
				!strings.Contains(problems[0].Message, c.key) || !strings.Contains(problems[0].Message, c.want) {
				t.Fatalf("problems = %+v, want one %s on web naming %s: %s", problems, ReasonInvalidAnnotation, c.key, c.want)
			}
			if got := policyString(d.BGPPolicy(netip.MustParseAddr("192.0.2.10"))); got != "65000:1 lp=100" {
				t.Errorf("web's route %q, want the pool's", got)
			}
			if got := policyString(d.BGPPolicy(netip.MustParseAddr("192.0.2.11"))); got != "65000:1 65000:9 lp=100" {
				t.Errorf("api's route %q, want its own", got)
			}
		})
	}
}

// Services sharing a VIP: their communities add up, the highest local
// preference wins.
func TestSharedVIPPolicy(t *testing.T) {
	snap := choicesSnap(annotated(AnnotationBGPCommunities, "65000:7", AnnotationBGPLocalPref, "300"))
	snap.Services = append(snap.Services, svc("dns", []string{"192.0.2.10"}, annotated(AnnotationBGPCommunities, "65000:8", AnnotationBGPLocalPref, "200"), func(s *corev1.Service) {
		s.Spec.Ports[0].Port, s.Spec.Ports[0].Protocol = 53, corev1.ProtocolUDP
	}))
	d, problems := Build(snap, bgpOpts())
	if len(problems) != 0 || len(d.Services) != 2 {
		t.Fatalf("problems %+v, %d services", problems, len(d.Services))
	}
	if got := policyString(d.BGPPolicy(netip.MustParseAddr("192.0.2.10"))); got != "65000:1 65000:7 65000:8 lp=300" {
		t.Errorf("shared route %q", got)
	}
}

// BGP annotations on a Service whose VIP is l2 do nothing, and say so.
func TestBGPAnnotationsOnL2VIP(t *testing.T) {
	snap := Snapshot{Services: []*corev1.Service{svc("web", []string{"192.0.2.200"}, annotated(AnnotationBGPLocalPref, "200"))}, Nodes: threeNodes}
	d, problems := Build(snap, bgpOpts())
	if len(problems) != 1 || problems[0].Reason != ReasonInvalidAnnotation || !strings.Contains(problems[0].Message, "not announced over BGP") {
		t.Fatalf("problems = %+v", problems)
	}
	if len(d.Services) != 1 || d.Services[0].BGP != nil {
		t.Errorf("services = %+v", d.Services)
	}
}

// A static service's bgp policy is merged over its pool's.
func TestStaticBGPPolicy(t *testing.T) {
	o := bgpOpts()
	lp := uint32(50)
	o.Static = []config.StaticService{
		{Name: "dns", VIP: netip.MustParseAddr("192.0.2.53"), Announce: config.AnnounceBGP, Ports: []config.StaticPort{{Port: 53, Protocol: "UDP"}},
			BGP: &config.BGPPolicy{LargeCommunities: []config.LargeCommunity{{Global: 65000, Local1: 5, Local2: 5}}, LocalPref: &lp}},
		{Name: "web", VIP: netip.MustParseAddr("192.0.2.200"), Ports: []config.StaticPort{{Port: 80, Protocol: "TCP"}}},
	}
	d, _ := Build(Snapshot{}, o)
	if got := policyString(d.BGPPolicy(netip.MustParseAddr("192.0.2.53"))); got != "65000:1 65000:5:5 lp=50" {
		t.Errorf("dns route %q", got)
	}
	if got := d.BGPPolicy(netip.MustParseAddr("192.0.2.200")); !got.IsZero() {
		t.Errorf("l2 VIP has a policy: %+v", got)
	}
}
