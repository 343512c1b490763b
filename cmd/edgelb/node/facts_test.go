package node

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/edgelb/edgelb/api"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
)

// A change one member's own keys do not fit is refused before it is
// committed: lb3's file has no node.interface, so a version that makes
// dataplane.method dr, written through lb1, gets 422 naming lb3 and
// node.interface, and nothing is committed. A version every member fits
// is taken.
func TestAChangeAMemberCannotTakeIsRefusedNamingIt(t *testing.T) {
	l := newLabPrepared(t, 3, nil, false, func(h *host) {
		editFile(t, h, func(file string) string {
			file = strings.Replace(file, "method: dr", "method: nat", 1)
			if h.name == "lb3" {
				file = strings.Replace(file, ", interface: eth0", "", 1)
			}
			return file
		})
	})
	lb1 := l.hosts[0]
	l.eventually(t, "every host runs version 1 and lb1 has heard lb3's facts", func() bool {
		for _, h := range l.hosts {
			if h.version() == 0 || h.version() != lb1.version() {
				return false
			}
		}
		for _, m := range lb1.node.memberFacts() {
			if m.Name == "lb3" {
				return true
			}
		}
		return false
	})
	from := lb1.version()
	cc := lb1.node.clusterConfig()
	cur, err := cc.Current(true)
	if err != nil {
		t.Fatal(err)
	}
	dr := strings.Replace(string(cur.Spec), `"method":"nat"`, `"method":"dr"`, 1)
	if dr == string(cur.Spec) {
		t.Fatalf("no nat method in %s", cur.Spec)
	}
	_, err = cc.Put(t.Context(), []byte(dr), from, "test")
	var inv *api.InvalidConfig
	if !errors.As(err, &inv) {
		t.Fatalf("a version lb3 cannot take: %v, want *api.InvalidConfig (422)", err)
	}
	named := false
	for _, e := range inv.Errors {
		if e.Member == "lb3" && e.Field == "node.interface" && strings.Contains(e.Message, "lb3") {
			named = true
		}
		if e.Member != "lb3" {
			t.Errorf("an error not about lb3: %+v", e)
		}
	}
	if !named {
		t.Fatalf("errors %+v: none names lb3 and node.interface", inv.Errors)
	}
	// The dry run says the same.
	if _, err := cc.Validate([]byte(dr)); !errors.As(err, &inv) {
		t.Errorf("the dry run of that version: %v, want *api.InvalidConfig", err)
	}
	if v := lb1.version(); v != from {
		t.Fatalf("lb1 runs version %d after a refused write, want %d", v, from)
	}
	next, err := putService(lb1, from, "fits", "192.0.2.126")
	if err != nil {
		t.Fatalf("a version every member fits: %v", err)
	}
	if next.Version != from+1 {
		t.Fatalf("it is version %d, want %d", next.Version, from+1)
	}
}

// A host that cannot apply a committed version (here its gossip key
// file became unreadable, which every new version's check reads) keeps
// the one it runs, owns no VIPs until it can take one — the others take
// its l2 VIP over and it stops advertising the bgp one — and says why:
// in its status and the members' gossip. A later version it can apply
// makes it whole again.
func TestAHostThatCannotApplyTheCommittedVersionOwnsNoVIPs(t *testing.T) {
	l := newLab(t, 3, nil)
	l.eventually(t, "three nodes converge", l.converged)
	var victim, other *host
	for _, h := range l.hosts {
		if h.holds(l2VIP) && !h.quiet.Is(l2VIP) {
			victim = h
		} else if other == nil {
			other = h
		}
	}
	if victim == nil {
		t.Fatal("nobody holds the l2 VIP")
	}
	key := filepath.Join(victim.dir, labKey)
	data, err := os.ReadFile(key)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(key); err != nil {
		t.Fatal(err)
	}
	running := victim.version()
	next, err := putService(other, running, "extra", "192.0.2.127")
	if err != nil {
		t.Fatalf("a version the writer and its facts check take: %v", err)
	}
	l.eventually(t, "the victim gives its VIPs up and another host owns the l2 VIP", func() bool {
		holders := l.holders(l2VIP)
		return len(holders) == 1 && holders[0] != victim.name && !victim.holds(l2VIP) && !victim.advertises(bgpVIP)
	})
	if v := victim.version(); v != running {
		t.Errorf("the victim runs version %d, want %d (the last it could apply)", v, running)
	}
	st := (&state{node: victim.node}).Status()
	if st.Healthy || !strings.Contains(st.Problem, "cannot apply the committed cluster configuration version") {
		t.Errorf("the victim's status: healthy %v, problem %q", st.Healthy, st.Problem)
	}
	l.eventually(t, "the others see the victim unhealthy, with the version it cannot apply", func() bool {
		for _, m := range (&state{node: other.node}).Members() {
			if m.Name == victim.name {
				return !m.Healthy && m.Unapplied == next.Version
			}
		}
		return false
	})

	if err := os.WriteFile(key, data, 0o600); err != nil {
		t.Fatal(err)
	}
	again, err := putService(other, next.Version, "again", "192.0.2.128")
	if err != nil {
		t.Fatal(err)
	}
	l.eventually(t, "the victim runs the latest version and is healthy again", func() bool {
		_, err := victim.node.live.Unapplied()
		return victim.version() == again.Version && err == nil && victim.node.members.Problem() == "" && victim.advertises(bgpVIP)
	})
}

// IPAM follows the committed configuration only: the Lease holder, cut
// off from the majority of the cluster (the API server still reachable),
// assigns no new address — the Service is pending with the reason — and
// keeps the one it gave; once the link is back the Service gets one.
func TestALeaseHolderCutOffAssignsNoNewAddress(t *testing.T) {
	kube := fake.NewClientset()
	ctx := context.Background()
	l := newLab(t, 3, kube)
	l.eventually(t, "three nodes converge", l.converged)
	create := func(name string) {
		svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name},
			Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer,
				Ports: []corev1.ServicePort{{Name: "dns", Port: 53, Protocol: corev1.ProtocolUDP, NodePort: 30053}}}}
		if _, err := kube.CoreV1().Services("default").Create(ctx, svc, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	status := func(name string) []string {
		s, err := kube.CoreV1().Services("default").Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, in := range s.Status.LoadBalancer.Ingress {
			out = append(out, in.IP)
		}
		return out
	}
	create("before")
	l.eventually(t, "the first Service has an address", func() bool { return len(status("before")) == 1 })
	given := status("before")
	var leader *host
	for _, h := range l.hosts {
		if h.node.ctrl.Leader() {
			leader = h
		}
	}
	if leader == nil {
		t.Fatal("nobody holds the Lease")
	}
	leader.link.cut.Store(true)
	l.eventually(t, "the Lease holder knows it is cut off from the majority", func() bool {
		return leader.node.live.Committed() != nil
	})
	create("during")
	l.eventually(t, "the new Service is pending on the Lease holder with the reason", func() bool {
		for _, s := range leader.node.state.Services() {
			if s.Name == "during" {
				return strings.Contains(s.Problem, "no majority reachable")
			}
		}
		return false
	})
	if got := status("during"); len(got) != 0 {
		t.Fatalf("cut off from the majority, the Lease holder assigned %v", got)
	}
	if !leader.node.ctrl.Leader() {
		t.Fatal("the test wants the Lease holder to keep the Lease (the API server is reachable)")
	}
	if got := status("before"); !slices.Equal(got, given) {
		t.Fatalf("the first Service's status went from %v to %v", given, got)
	}
	leader.link.cut.Store(false)
	l.eventually(t, "after healing the new Service gets an address", func() bool { return len(status("during")) == 1 })
	if got := status("before"); !slices.Equal(got, given) {
		t.Fatalf("the first Service's status went from %v to %v", given, got)
	}
}
