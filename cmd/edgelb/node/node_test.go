package node

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/edgelb/edgelb/api"
	"github.com/edgelb/edgelb/api/clustercfg"
	"github.com/edgelb/edgelb/lb/ipvs"
	"github.com/edgelb/edgelb/lb/k8s"
)

// Three nodes in one process, from start to a graceful restart: the l2
// VIP has one owner and the bgp VIP is on every host, quiet and
// advertised; a configuration change made through one node reaches every
// node; a refused one changes nothing; a drain hands the VIP over before
// the old owner lets it go; a cut-off node owns nothing while the two
// others elect one owner; a graceful restart keeps the VIP in place.
func TestThreeNodes(t *testing.T) {
	l := newLab(t, 3, nil)
	l.eventually(t, "three nodes converge: one l2 owner, the bgp VIP on every host", l.converged)

	t.Run("a configuration change through one node reaches every node", func(t *testing.T) {
		via := l.hosts[1].node
		cc := &clustercfg.Config{Versions: via.live.versions, Host: via.live.host}
		cur, err := cc.Current(false)
		if err != nil {
			t.Fatal(err)
		}
		var spec map[string]any
		if err := json.Unmarshal(cur.Spec, &spec); err != nil {
			t.Fatal(err)
		}
		svcs := spec["services"].([]any)
		spec["services"] = append(svcs, map[string]any{"name": "ntp", "vip": "192.0.2.123",
			"ports": []any{map[string]any{"port": 123, "protocol": "UDP"}}, "backends": []any{"10.0.1.7:123"}})
		body, _ := json.Marshal(spec)
		next, err := cc.Put(context.Background(), body, cur.Version, "test")
		if err != nil {
			t.Fatal(err)
		}
		ntp := netip.MustParseAddr("192.0.2.123")
		l.eventually(t, "every node programs the new service and runs the new version", func() bool {
			for _, h := range l.hosts {
				if _, v := h.node.live.Config(); v != next.Version || !h.programmed(ntp) {
					return false
				}
			}
			return len(l.holders(ntp)) == 1
		})
		// The change was made from the configuration as the API shows it,
		// the BGP password as a placeholder: every node keeps the password.
		if bytes.Contains(cur.Spec, []byte("md5-lab-key")) {
			t.Errorf("the configuration as the API shows it has the BGP password: %s", cur.Spec)
		}
		for _, h := range l.hosts {
			if cfg, _ := h.node.live.Config(); cfg.BGP == nil || len(cfg.BGP.Peers) != 1 || cfg.BGP.Peers[0].Password != "md5-lab-key" {
				t.Errorf("%s runs BGP %+v after a change made from the redacted configuration, want the password kept", h.name, cfg.BGP)
			}
		}

		// A version this host refuses is refused before anything
		// changes, with the field named, and the version stays.
		bad := []byte(`{"services":[{"name":"x","vip":"192.0.2.200","ports":[{"port":80}],"backends":["not an address"]}]}`)
		_, err = cc.Put(context.Background(), bad, next.Version, "test")
		var inv *api.InvalidConfig
		if !errors.As(err, &inv) || len(inv.Errors) == 0 || inv.Errors[0].Field != "spec.services[0].backends[0]" {
			t.Fatalf("a bad version: %v, want the field spec.services[0].backends[0]", err)
		}
		// A multicast VIP (the one that once took every VIP down) is
		// refused the same way.
		multicast := []byte(`{"services":[{"name":"x","vip":"ff0e::1","ports":[{"port":80}],"backends":["[2001:db8::5]:80"]}]}`)
		_, err = cc.Put(context.Background(), multicast, next.Version, "test")
		if !errors.As(err, &inv) || len(inv.Errors) == 0 || inv.Errors[0].Field != "spec.services[0].vip" {
			t.Fatalf("a multicast VIP: %v, want the field spec.services[0].vip", err)
		}
		for _, h := range l.hosts {
			if _, v := h.node.live.Config(); v != next.Version {
				t.Errorf("%s runs version %d after a refused one, want %d", h.name, v, next.Version)
			}
		}
	})

	t.Run("a VIP a host's kernel refuses costs that VIP only", func(t *testing.T) {
		l.eventually(t, "converged", l.converged)
		// The kernels of lb1 and lb2 refuse one new l2 VIP, and lb1's a
		// new bgp VIP: validation cannot know (an address family off on
		// one interface, a kernel limit).
		refusedL2, refusedBGP := netip.MustParseAddr("192.0.2.124"), netip.MustParseAddr("198.51.100.54")
		for _, h := range l.hosts[:2] {
			h.vip.Mu.Lock()
			h.vip.FailAdd[refusedL2] = true
			h.vip.Mu.Unlock()
		}
		lb1 := l.hosts[0]
		lb1.vip.Mu.Lock()
		lb1.vip.FailAdd[refusedBGP] = true
		lb1.vip.Mu.Unlock()
		done := l.watch(l2VIP)
		editSpec(t, l.hosts[1], func(spec map[string]any) {
			spec["services"] = append(spec["services"].([]any),
				map[string]any{"name": "web", "vip": refusedL2.String(), "ports": []any{map[string]any{"port": 80}}, "backends": []any{"10.0.1.7:80"}},
				map[string]any{"name": "web6", "vip": refusedBGP.String(), "announce": "bgp", "ports": []any{map[string]any{"port": 80}}, "backends": []any{"10.0.1.7:80"}})
		})
		lb3 := l.hosts[2]
		l.eventually(t, "the l2 VIP refused by lb1 and lb2 is on lb3; the bgp VIP refused by lb1 is advertised by lb2 and lb3 only", func() bool {
			return slices.Equal(l.holders(refusedL2), []string{lb3.name}) &&
				!lb1.advertises(refusedBGP) && l.hosts[1].advertises(refusedBGP) && lb3.advertises(refusedBGP)
		})
		for _, h := range l.hosts {
			if p := h.node.members.Problem(); p != "" || !h.node.members.MayServe() {
				t.Errorf("%s is unhealthy for a refused VIP: %q", h.name, p)
			}
			if !h.advertises(bgpVIP) {
				t.Errorf("%s stopped advertising the other bgp VIP", h.name)
			}
		}
		if fewest, _, announced := done(); fewest == 0 || announced > 1 {
			t.Errorf("the other l2 VIP was held by as few as %d hosts and announced by %d at once: want one all along", fewest, announced)
		}
		// The API says who refuses what, and why here, once the refusals
		// have been gossiped (RefusedBy and the owner come from the peers).
		var shown string
		defer func() {
			if t.Failed() {
				t.Logf("lb1 last showed %s", shown)
			}
		}()
		l.eventually(t, "lb1's view names the refusals", func() bool {
			shown = ""
			for _, v := range lb1.node.state.VIPs() {
				ok := true
				switch v.Address {
				case refusedL2.String():
					ok = v.Owner == lb3.name && v.Refused && slices.Equal(v.RefusedBy, []string{"lb1", "lb2"}) && strings.Contains(v.Problem, "injected failure")
				case refusedBGP.String():
					ok = !v.Local && v.Refused && v.Problem != ""
				case l2VIP.String(), bgpVIP.String():
					ok = !v.Refused && len(v.RefusedBy) == 0 && v.Problem == ""
				}
				if !ok {
					shown = fmt.Sprintf("%+v", v)
					return false
				}
			}
			return true
		})
		// Back as it was: the VIPs go, the refusals are forgotten.
		for _, h := range l.hosts {
			h.vip.Mu.Lock()
			clear(h.vip.FailAdd)
			h.vip.Mu.Unlock()
		}
		editSpec(t, l.hosts[1], func(spec map[string]any) {
			svcs := spec["services"].([]any)
			spec["services"] = svcs[:len(svcs)-2]
		})
		l.eventually(t, "the refused VIPs are gone from every host", func() bool {
			return len(l.holders(refusedL2)) == 0 && !slices.ContainsFunc(l.hosts, func(h *host) bool { return h.advertises(refusedBGP) })
		})
	})

	t.Run("a drain hands the l2 VIP over before letting it go", func(t *testing.T) {
		l.eventually(t, "converged", l.converged)
		old := l.host(l.holders(l2VIP)[0])
		done := l.watch(l2VIP)
		old.node.members.Drain()
		l.eventually(t, "another host owns the VIP and the drained one let it go", func() bool {
			h := l.holders(l2VIP)
			return len(h) == 1 && h[0] != old.name && !old.holds(l2VIP)
		})
		fewest, most, announced := done()
		if announced > 1 {
			t.Errorf("%d hosts announced the VIP at once", announced)
		}
		if most < 2 {
			t.Error("the new owner did not hold the VIP before the old one let it go (make-before-break)")
		}
		if fewest == 0 {
			t.Error("for a moment no host held the VIP")
		}
		old.node.members.Undrain()
	})

	t.Run("a node cut off owns nothing, the others elect one owner", func(t *testing.T) {
		l.eventually(t, "one owner again", func() bool { return len(l.holders(l2VIP)) == 1 })
		cut := l.host(l.holders(l2VIP)[0])
		cut.link.cut.Store(true)
		l.eventually(t, "the cut-off node has no quorum and holds and advertises nothing; another owns the VIP", func() bool {
			h := l.holders(l2VIP)
			return !cut.node.members.HasQuorum() && !cut.holds(l2VIP) && !cut.advertises(bgpVIP) &&
				len(h) == 1 && h[0] != cut.name
		})
		for _, h := range l.hosts {
			if h != cut && !h.advertises(bgpVIP) {
				t.Errorf("%s stopped advertising the bgp VIP while it has a quorum", h.name)
			}
		}
		cut.link.cut.Store(false)
		l.eventually(t, "healed: the three converge again", l.converged)
	})

	t.Run("a graceful restart keeps the VIP where it is", func(t *testing.T) {
		l.eventually(t, "converged", l.converged)
		owner := l.host(l.holders(l2VIP)[0])
		done := l.watch(l2VIP)
		l.stop(owner, ErrRestart)
		if !owner.holds(l2VIP) {
			t.Fatal("the restarting host let its VIP go")
		}
		l.start(owner)
		l.eventually(t, "the new process runs and holds the VIP, and nobody else took it", func() bool {
			return slices.Equal(l.holders(l2VIP), []string{owner.name}) && owner.node.members.HasQuorum()
		})
		if fewest, most, announced := done(); fewest != 1 || most != 1 || announced > 1 {
			t.Errorf("during the restart %d to %d hosts held the VIP, %d announced it: want the restarting one all along (adopted)", fewest, most, announced)
		}
		l.eventually(t, "converged", l.converged)
	})

	t.Run("a host that does not come back loses its VIP after the restart hold", func(t *testing.T) {
		owner := l.host(l.holders(l2VIP)[0])
		l.stop(owner, ErrRestart)
		owner.link.cut.Store(true)
		// The others keep the restarting member as the VIP's owner for
		// cluster.restartHold (30 s, longer than eventually waits): step
		// the clock past it.
		l.clock.Step(31 * time.Second)
		l.eventually(t, "another host owns the VIP", func() bool {
			for _, h := range l.hosts {
				if h != owner && h.holds(l2VIP) && !h.quiet.Is(l2VIP) {
					return true
				}
			}
			return false
		})
		owner.link.cut.Store(false)
		l.start(owner)
		l.eventually(t, "converged", l.converged)
	})
}

// Three nodes watching one API server (client-go's fake clientset): one
// of them takes the Lease and writes the Service's address from the
// pool into its status; every node programs it, one owns it; its
// NodePorts on the Ready nodes are the backends.
func TestThreeNodesWithKubernetes(t *testing.T) {
	kube := fake.NewClientset()
	ctx := context.Background()
	for i, ip := range []string{"10.0.1.11", "10.0.1.12"} {
		n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("node%d", i+1)},
			Status: corev1.NodeStatus{
				Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue}},
				Addresses:  []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: ip}},
			}}
		if _, err := kube.CoreV1().Nodes().Create(ctx, n, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	l := newLab(t, 3, kube)
	l.eventually(t, "three nodes converge on the static services", l.converged)

	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "web"},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer,
			Ports: []corev1.ServicePort{{Name: "dns", Port: 53, Protocol: corev1.ProtocolUDP, NodePort: 30053}}}}
	if _, err := kube.CoreV1().Services("default").Create(ctx, svc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	var ip netip.Addr
	l.eventually(t, "the Service's status has an address of the pool", func() bool {
		s, err := kube.CoreV1().Services("default").Get(ctx, "web", metav1.GetOptions{})
		if err != nil || len(s.Status.LoadBalancer.Ingress) != 1 {
			return false
		}
		ip, err = netip.ParseAddr(s.Status.LoadBalancer.Ingress[0].IP)
		return err == nil
	})
	if lo, hi := netip.MustParseAddr("192.0.2.100"), netip.MustParseAddr("192.0.2.110"); ip.Less(lo) || hi.Less(ip) {
		t.Fatalf("the Service got %s, outside its pool", ip)
	}
	leaders := 0
	for _, h := range l.hosts {
		if h.node.ctrl.Leader() {
			leaders++
		}
	}
	if leaders != 1 {
		t.Errorf("%d hosts hold the Lease, want 1", leaders)
	}
	l.eventually(t, "every node programs the Service's NodePorts, one owns its address", func() bool {
		for _, h := range l.hosts {
			all, _ := h.ipvs.GetVirtualServers()
			i := slices.IndexFunc(all, func(vs *ipvs.VirtualServer) bool { return vs.Address == ip })
			if i < 0 {
				return false
			}
			rss, _ := h.ipvs.GetRealServers(all[i])
			if len(rss) != 2 || rss[0].Port != 30053 {
				return false
			}
		}
		return len(l.holders(ip)) == 1
	})

	// A virtual service one host's kernel refuses is a Warning Event on
	// its Service from that host — which need not hold the Lease — while
	// every other host programs it.
	var refusing *host
	for _, h := range l.hosts {
		if !h.node.ctrl.Leader() {
			refusing = h
			break
		}
	}
	refusing.ipvs.SetFail(func(m string) error {
		if m == "AddVirtualServer" {
			return errors.New("scheduler module not loaded")
		}
		return nil
	})
	web2 := svc.DeepCopy()
	web2.Name, web2.Spec.Ports[0].NodePort = "web2", 30054
	if _, err := kube.CoreV1().Services("default").Create(ctx, web2, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	l.eventually(t, "a Warning VirtualServiceRefused on web2 from the refusing host", func() bool {
		evs, err := kube.CoreV1().Events("default").List(ctx, metav1.ListOptions{})
		if err != nil {
			return false
		}
		return slices.ContainsFunc(evs.Items, func(e corev1.Event) bool {
			return e.InvolvedObject.Name == "web2" && e.Type == corev1.EventTypeWarning && e.Reason == k8s.ReasonVirtualServiceRefused &&
				e.Source.Host == refusing.name && strings.Contains(e.Message, "scheduler module not loaded")
		})
	})
	stateOf := func(h *host, name string) string {
		for _, s := range h.node.state.Services() {
			if s.Namespace == "default" && s.Name == name {
				return s.State
			}
		}
		return ""
	}
	// The other hosts see web2 when their own informers do: the Event
	// from the refusing host can come first.
	l.eventually(t, "web2 partial on the refusing host and served on the others", func() bool {
		for _, h := range l.hosts {
			want := "served"
			if h == refusing {
				want = "partial"
			}
			if stateOf(h, "web2") != want {
				return false
			}
		}
		return true
	})
	refusing.ipvs.SetFail(nil)

}

// Three nodes with cluster.insecure: gossip still shares the VIPs — one
// l2 owner, the bgp VIP everywhere, a drain of the owner (through its own
// API) hands the l2 VIP over — but the API changes nothing that would
// have to reach another host: a drain of another member and a new
// version of the configuration are refused (409 in the API) and say
// what to do instead.
func TestThreeInsecureNodes(t *testing.T) {
	l := newLabWith(t, 3, nil, true)
	l.eventually(t, "three insecure nodes converge: one l2 owner, the bgp VIP on every host", l.converged)
	owner := l.host(l.holders(l2VIP)[0])
	via := l.hosts[0]
	if via == owner {
		via = l.hosts[1]
	}
	ctx := context.Background()
	err := via.node.state.Drain(ctx, owner.name)
	if !errors.Is(err, api.ErrNotReplicated) || !strings.Contains(err.Error(), owner.name+" through its own API") {
		t.Errorf("a drain of %s through %s's API: %v, want ErrNotReplicated saying to use %s's own API", owner.name, via.name, err, owner.name)
	}
	cc := via.node.clusterConfig()
	cur, err := cc.Current(false)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cc.Put(context.Background(), cur.Spec, cur.Version, "test"); !errors.Is(err, api.ErrNotReplicated) || !strings.Contains(err.Error(), "config file") {
		t.Errorf("a configuration change through %s's API: %v, want ErrNotReplicated saying to edit the config files", via.name, err)
	}
	if _, v := via.node.live.Config(); v != cur.Version {
		t.Errorf("%s runs version %d after a refused change, want %d", via.name, v, cur.Version)
	}
	if owner.node.members.Draining() {
		t.Fatalf("%s drains after a refused drain", owner.name)
	}

	if err := owner.node.state.Drain(ctx, owner.name); err != nil {
		t.Fatal(err)
	}
	l.eventually(t, "another host owns the l2 VIP and the drained one let it go", func() bool {
		h := l.holders(l2VIP)
		return len(h) == 1 && h[0] != owner.name && !owner.holds(l2VIP)
	})
	if err := owner.node.state.Undrain(ctx, owner.name); err != nil {
		t.Fatal(err)
	}
}
