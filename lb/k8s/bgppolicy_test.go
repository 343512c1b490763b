package k8s

import (
	"context"
	"fmt"
	"net/netip"
	"testing"

	"k8s.io/client-go/kubernetes/fake"

	"github.com/edgelb/edgelb/lb"
	"github.com/edgelb/edgelb/lb/config"
)

// A bad edgelb.io/bgp-* annotation is a Warning Event InvalidAnnotation
// on that Service only: its route keeps the pool's policy, and another
// Service's annotations still apply to its own route.
func TestBadBGPAnnotationWarnsThatServiceOnly(t *testing.T) {
	cfg, err := config.Parse("test.yaml", []byte(`node: {name: lb1}
cluster: {insecure: true, bindAddr: 127.0.0.1}
kubernetes: {kubeconfig: /nonexistent, defaultClass: true}
bgp: {asn: 64512, peers: [{address: 10.0.0.1, asn: 64500}]}
pools:
  - {name: edge, addresses: ["192.0.2.0/28"], announce: bgp, bgp: {communities: ["65000:1"]}}
dataplane: {backend: none}
`))
	if err != nil {
		t.Fatal(err)
	}
	fc := fake.NewClientset()
	bad := lbService("ns", "bad", 0, "192.0.2.1")
	bad.Annotations = map[string]string{lb.AnnotationBGPCommunities: "65000:7,gold", lb.AnnotationBGPLocalPref: "300"}
	good := lbService("ns", "good", 1, "192.0.2.2")
	good.Annotations = map[string]string{lb.AnnotationBGPCommunities: "65000:9"}
	create(t, fc, bad, good)
	c := newController(t, fc, cfg, "lb1")
	startInformers(t, c)
	ctx, cancel := context.WithCancel(context.Background())
	loop := make(chan struct{})
	go func() { defer close(loop); c.desiredLoop(ctx) }()
	defer func() { cancel(); <-loop }()
	defer runTerm(c)()
	waitWarning(t, fc, "ns", "bad", lb.ReasonInvalidAnnotation, `edgelb.io/bgp-communities: "gold" is not a community`)
	policy := func(ip string) string {
		d := c.opts.Store.Load()
		if d == nil {
			return "(no desired state)"
		}
		p := d.BGPPolicy(netip.MustParseAddr(ip))
		s := fmt.Sprint(p.Communities)
		if p.LocalPref != nil {
			s += fmt.Sprintf(" lp=%d", *p.LocalPref)
		}
		return s
	}
	eventually(t, "both routes' policies", func() error {
		// bad's valid local-pref applies; its bad communities do not.
		if got, got2 := policy("192.0.2.1"), policy("192.0.2.2"); got != "[65000:1] lp=300" || got2 != "[65000:1 65000:9]" {
			return fmt.Errorf("bad's route %s, good's %s", got, got2)
		}
		return nil
	})
	if w := warnings(t, fc, "ns", "good", lb.ReasonInvalidAnnotation); len(w) != 0 {
		t.Errorf("warnings on good: %q", w)
	}
}
