package bgp

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/edgelb/edgelb/lb"
	"github.com/edgelb/edgelb/test/nslab"
)

// A Kubernetes Service's edgelb.io/bgp-* annotations reach the router: its
// route carries the pool's community and its own, and its local-pref
// (iBGP). A Service with a bad annotation gets a Warning Event
// InvalidAnnotation, and its route the pool's policy alone.
func TestServiceAnnotationsWithFRR(t *testing.T) {
	const ns, class = "bgppolicy", "edgelb.io/bgppolicy"
	l := nslab.New(t, 3)
	env := l.StartKube(ns, class, "bgppolicy")
	// StartKube's pool is on the LAN; these Services take a bgp pool's.
	head, _, _ := strings.Cut(l.Extra, "pools:")
	l.Extra = head + fmt.Sprintf(`pools:
  - name: %s
    addresses: ["10.99.1.96/28"]
    announce: bgp
    bgp: {communities: ["65000:1"]}
bgp:
  asn: %d
  peers:
    - {address: %s, asn: %d, holdTime: 3s}
`, ns, clusterAS, routerIP, clusterAS)
	r := startRouter(t, l, clusterAS, []neighbor{{addr: l.Hosts[0].IP4}, {addr: l.Hosts[1].IP4}, {addr: l.Hosts[2].IP4}})
	defer func() {
		if t.Failed() {
			for _, h := range l.Hosts {
				t.Logf("%s log:\n%s", h.Name, h.Log)
			}
		}
	}()
	for _, h := range l.Hosts {
		h.Start()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	create := func(name string, annotations map[string]string) netip.Addr {
		t.Helper()
		_, err := env.Admin.CoreV1().Services(ns).Create(ctx, &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Annotations: annotations},
			Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer, LoadBalancerClass: new(string(class)),
				Ports: []corev1.ServicePort{{Name: "http", Port: 8080, TargetPort: intstr.FromInt32(8080), Protocol: corev1.ProtocolTCP}}},
		}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		var vip netip.Addr
		if !nslab.Poll(time.Minute, func() bool {
			svc, err := env.Admin.CoreV1().Services(ns).Get(ctx, name, metav1.GetOptions{})
			if err != nil || len(lb.VIPs(svc)) == 0 {
				return false
			}
			vip = lb.VIPs(svc)[0]
			return true
		}) {
			t.Fatalf("Service %s got no address", name)
		}
		return vip
	}
	gold := create("gold", map[string]string{lb.AnnotationBGPCommunities: "65000:7, no-export",
		lb.AnnotationBGPLargeCommunities: "65000:1:2", lb.AnnotationBGPLocalPref: "300"})
	bad := create("bad", map[string]string{lb.AnnotationBGPCommunities: "gold"})
	r.waitNextHops(gold, l.Hosts...)
	r.waitNextHops(bad, l.Hosts...)

	check := func(vip netip.Addr, communities, large string, lp uint32) {
		t.Helper()
		prefix := vip.String() + "/32"
		var last string
		if !nslab.Poll(10*time.Second, func() bool {
			paths := r.paths(prefix)
			last = fmt.Sprintf("%+v", paths)
			for _, h := range l.Hosts {
				p, ok := paths[h.IP4.String()]
				if !ok || p.Community == nil || p.Community.String != communities || p.LocPrf == nil || *p.LocPrf != lp ||
					(large == "") != (p.LargeCommunity == nil) || (p.LargeCommunity != nil && p.LargeCommunity.String != large) {
					return false
				}
			}
			return true
		}) {
			detail, _ := r.vtysh("show bgp ipv4 unicast " + prefix)
			t.Errorf("%s: want communities %q, large %q, local-pref %d on every host's path:\n%s\n%s", prefix, communities, large, lp, detail, last)
			return
		}
		detail, _ := r.vtysh("show bgp ipv4 unicast " + prefix)
		t.Logf("the router's paths to %s:\n%s", prefix, detail)
	}
	check(gold, "65000:1 65000:7 no-export", "65000:1:2", 300)
	// The bad Service: the pool's community, and GoBGP's default
	// local-pref for iBGP (100).
	check(bad, "65000:1", "", 100)

	var events string
	if !nslab.Poll(time.Minute, func() bool {
		var err error
		events, err = env.Kubectl(ctx, "get", "events", "-n", ns, "--field-selector", "reason=InvalidAnnotation",
			"-o", "custom-columns=OBJECT:.involvedObject.name,TYPE:.type,MESSAGE:.message")
		return err == nil && strings.Contains(events, "bad") && strings.Contains(events, `"gold" is not a community`)
	}) {
		t.Fatalf("no Warning InvalidAnnotation on bad:\n%s", events)
	}
	t.Logf("kubectl get events:\n%s", events)
	for _, line := range strings.Split(events, "\n") {
		if strings.HasPrefix(line, "gold ") {
			t.Errorf("a Warning on gold: %s", line)
		}
	}
}
