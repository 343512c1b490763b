package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/edgelb/edgelb/api"
	"github.com/edgelb/edgelb/lb"
	"github.com/edgelb/edgelb/test/nslab"
)

// A static service applied on h1 (edgelb config apply, PUT
// /api/v1/config) reaches h2 and h3 over the gossip: each runs the new
// version, lists the service, and exactly one host holds its VIP, which
// answers.
func TestClusterConfigurationChangeReachesEveryHost(t *testing.T) {
	l := startCluster(t, 3)
	h1 := l.Hosts[0]
	vip := netip.MustParseAddr("10.99.0.150")
	spec := filepath.Join(l.Dir, "spec.yaml")
	nslab.WriteFile(t, spec, fmt.Sprintf(`services:
  - {name: web4, vip: %s, ports: [{port: 8080}]}
  - {name: web6, vip: "%s", ports: [{port: 8080}]}
  - {name: added, vip: %s, ports: [{port: 8080}]}
`, vip4, vip6, vip))
	api1 := []string{"--api", "http://127.0.0.1:9080"}
	if out, err := h1.Edgelb(append([]string{"config", "diff", "-f", spec}, api1...)...); err != nil || !strings.Contains(out, "+ vip "+vip.String()) {
		t.Fatalf("edgelb config diff on h1: %v\n%s", err, out)
	}
	out, err := h1.Edgelb(append([]string{"config", "apply", "-f", spec}, api1...)...)
	if err != nil || !strings.HasPrefix(out, "applied: version 2") {
		t.Fatalf("edgelb config apply on h1: %v\n%s", err, out)
	}
	for _, h := range l.Hosts {
		if !nslab.Poll(converge, func() bool {
			out, err := h.Edgelb("status", "--output", "json", "--api", "http://127.0.0.1:9080")
			if err != nil {
				return false
			}
			var st struct {
				Members  []api.Member  `json:"members"`
				Services []api.Service `json:"services"`
			}
			if json.Unmarshal([]byte(out), &st) != nil {
				return false
			}
			for _, m := range st.Members {
				if m.ConfigVersion != 2 {
					return false
				}
			}
			return len(st.Members) == 3 && slices.ContainsFunc(st.Services, func(s api.Service) bool { return s.Name == "added" })
		}) {
			out, _ := h.Edgelb("status", "--api", "http://127.0.0.1:9080")
			t.Fatalf("%s does not run version 2 with the service added:\n%s\n%s", h.Name, out, h.Log.String())
		}
	}
	owner := l.Owner(vip, converge)
	p := l.Probe(vip, 300*time.Millisecond)
	if !nslab.Poll(converge, func() bool { return p.Last().OK }) {
		t.Fatalf("no answer from %s (owner %s): %+v", vip, owner.Name, p.Last())
	}
	p.Stop()
	t.Logf("%s added on h1, held by %s", vip, owner.Name)
}

// A partition's two sides both try to change the configuration: the
// write through the cut-off host is refused (503, naming the hosts it
// cannot reach) and never appears, the majority's is acknowledged, and
// after the partition heals every host runs the majority's version, with
// no other version 2 in any history. (Before the consensus log, both
// writes were acknowledged and one was marked lost after healing.) A host
// restarted alone keeps that version.
func TestClusterConfigurationAfterAPartitionIsTheMajoritys(t *testing.T) {
	l := startCluster(t, 3)
	h1, h2, h3 := l.Hosts[0], l.Hosts[1], l.Hosts[2]
	apply := func(h *nslab.Host, name string) (string, error) {
		t.Helper()
		spec := filepath.Join(l.Dir, name+".yaml")
		nslab.WriteFile(t, spec, fmt.Sprintf(`services:
  - {name: web4, vip: %s, ports: [{port: 8080}]}
  - {name: web6, vip: "%s", ports: [{port: 8080}]}
  - {name: %s, vip: 10.99.0.151, ports: [{port: 8080}]}
`, vip4, vip6, name))
		return h.Edgelb("config", "apply", "-f", spec, "--api", "http://127.0.0.1:9080")
	}
	history := func(h *nslab.Host) []api.ConfigVersion {
		out, err := h.Edgelb("config", "history", "--output", "json", "--api", "http://127.0.0.1:9080")
		var hs []api.ConfigVersion
		if err != nil || json.Unmarshal([]byte(out), &hs) != nil {
			return nil
		}
		return hs
	}
	l.Partition(h1)
	// h1 must first see that it lost the majority (an election timeout).
	var out string
	var err error
	if !nslab.Poll(converge, func() bool {
		out, err = apply(h1, "minority")
		return err != nil && strings.Contains(out+err.Error(), "no majority")
	}) {
		t.Fatalf("edgelb config apply through the cut-off h1: %v\n%s\nwant a refusal naming no majority", err, out)
	}
	if out, err := apply(h2, "majority"); err != nil || !strings.HasPrefix(out, "applied: version 2") {
		t.Fatalf("edgelb config apply on h2 (majority): %v\n%s", err, out)
	}
	l.Heal()
	var winner string
	for _, h := range l.Hosts {
		if !nslab.Poll(2*converge, func() bool {
			hs := history(h)
			current := ""
			for _, v := range hs {
				if v.Lost || v.Version > 2 {
					return false
				}
				if v.Version == 2 && v.Current {
					current = v.UpdatedBy + "@" + v.Member
				}
			}
			if current == "" || winner != "" && current != winner {
				return false
			}
			winner = current
			return true
		}) {
			t.Fatalf("%s does not run the majority's version 2 alone: %+v\n%s", h.Name, history(h), h.Log.String())
		}
		st, err := h.Edgelb("status", "--api", "http://127.0.0.1:9080")
		if err != nil || !strings.Contains(st, "majority") || strings.Contains(st, "minority") {
			t.Fatalf("%s status after healing, want the service majority and not minority: %v\n%s", h.Name, err, st)
		}
	}
	t.Logf("after the partition every host runs version 2 made on %s", winner)

	// Restarted alone, h3 comes back with that version from its state
	// directory, not its file's.
	if err := h3.Stop(converge); err != nil {
		t.Fatal(err)
	}
	h1.Stop(converge)
	h2.Stop(converge)
	h3.Start()
	if !nslab.Poll(converge, func() bool {
		for _, v := range history(h3) {
			if v.Current {
				return v.Version == 2 && v.UpdatedBy+"@"+v.Member == winner
			}
		}
		return false
	}) {
		t.Fatalf("h3 restarted alone runs %+v", history(h3))
	}
}

// A pool change applied through a host that may not hold the Lease
// reaches every host; the Lease holder allocates the next Service from
// the new pool; the Service whose address fell out of every pool keeps it
// in its status (never renumbered), is reported with a Warning Event
// AddressNotInPool, and its address is announced by no host (never an
// address that is not in a pool). Against a real kube-apiserver.
func TestPoolChangeReachesTheLeaseHolder(t *testing.T) {
	const ns, class = "pools", "edgelb.io/pools"
	l := nslab.New(t, 3)
	env := l.StartKube(ns, class, "pools")
	for _, h := range l.Hosts {
		h.Start()
	}
	if !l.Configured(converge) {
		t.Fatal("the hosts run no committed cluster configuration")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	create := func(name string) netip.Addr { return createLBService(ctx, t, env, ns, name, class) }
	first := create("first")
	if first != netip.MustParseAddr("10.99.0.128") {
		t.Fatalf("first got %s, want the pool's first address 10.99.0.128", first)
	}
	l.Owner(first, converge)

	lease, err := env.Admin.CoordinationV1().Leases("kube-system").Get(ctx, "pools", metav1.GetOptions{})
	if err != nil || lease.Spec.HolderIdentity == nil {
		t.Fatalf("no Lease holder: %v", err)
	}
	via := l.Hosts[0]
	for _, h := range l.Hosts {
		if !strings.Contains(*lease.Spec.HolderIdentity, h.Name) {
			via = h
		}
	}
	// The new layout: the old range is gone, another one replaces it. The
	// spec keeps the file's other cluster-wide keys.
	spec := filepath.Join(l.Dir, "pools.yaml")
	nslab.WriteFile(t, spec, fmt.Sprintf(`dataplane: {backend: none}
services: []
pools:
  - {name: %s, addresses: ["10.99.0.200-10.99.0.210"]}
`, ns))
	start := time.Now()
	if out, err := via.Edgelb("config", "apply", "-f", spec, "--api", "http://127.0.0.1:9080"); err != nil || !strings.HasPrefix(out, "applied: version 2") {
		t.Fatalf("edgelb config apply on %s: %v\n%s", via.Name, err, out)
	}
	for _, h := range l.Hosts {
		if !nslab.Poll(converge, func() bool {
			return strings.Contains(h.Log.String(), `msg="running a new cluster configuration" component=config version=2`)
		}) {
			t.Fatalf("%s does not run version 2:\n%s", h.Name, h.Log.String())
		}
	}
	t.Logf("applied on %s (the Lease is %s's); every host runs it after %v", via.Name, *lease.Spec.HolderIdentity, time.Since(start).Round(time.Millisecond))

	second := create("second")
	if second != netip.MustParseAddr("10.99.0.200") {
		t.Errorf("second got %s, want the new pool's first address 10.99.0.200", second)
	}
	l.Owner(second, converge)
	svc, err := env.Admin.CoreV1().Services(ns).Get(ctx, "first", metav1.GetOptions{})
	if err != nil || len(lb.VIPs(svc)) != 1 || lb.VIPs(svc)[0] != first {
		t.Errorf("first was renumbered: %v %v", lb.VIPs(svc), err)
	}
	var events string
	if !nslab.Poll(time.Minute, func() bool {
		events, err = env.Kubectl(ctx, "get", "events", "-n", ns, "--field-selector", "involvedObject.name=first,reason=AddressNotInPool",
			"-o", "custom-columns=TYPE:.type,MESSAGE:.message")
		return err == nil && strings.Contains(events, "Warning")
	}) {
		t.Errorf("no Warning Event AddressNotInPool on first: %s %v", events, err)
	}
	t.Logf("first's events:\n%s", events)
	if !nslab.Poll(converge, func() bool { return len(l.Holders(first)) == 0 }) {
		t.Errorf("%s, in no pool now, is still announced by %v", first, nslab.Names(l.Holders(first)))
	}
}

// A change one host's own keys do not fit is refused before it is
// committed, naming that host and the field: a bgp peer at h3's own
// cluster.bindAddr, applied through h1, is fine for h1 and h2 and not
// for h3. Nothing is committed: every host keeps version 1.
func TestAChangeOneHostCannotTakeIsRefusedNamingIt(t *testing.T) {
	l := startCluster(t, 3)
	h1, h3 := l.Hosts[0], l.Hosts[2]
	spec := filepath.Join(l.Dir, "bgp.yaml")
	nslab.WriteFile(t, spec, fmt.Sprintf(`services:
  - {name: web4, vip: %s, ports: [{port: 8080}]}
  - {name: web6, vip: "%s", ports: [{port: 8080}]}
bgp:
  asn: 64512
  peers: [{address: %s, asn: 64500}]
`, vip4, vip6, h3.IP4))
	var out string
	var err error
	// h1 must have heard h3's facts: they come with its gossip.
	if !nslab.Poll(converge, func() bool {
		out, err = h1.Edgelb("config", "apply", "-f", spec, "--api", "http://127.0.0.1:9080")
		return err != nil && strings.Contains(out+err.Error(), h3.Name+": spec.bgp.peers[0].address")
	}) {
		t.Fatalf("edgelb config apply on h1 of a peer at h3's own address: %v\n%s\nwant a refusal naming %s and the field", err, out, h3.Name)
	}
	t.Logf("refused: %s%v", out, err)
	for _, h := range l.Hosts {
		out, err := h.Edgelb("status", "--output", "json", "--api", "http://127.0.0.1:9080")
		var st struct {
			Members []api.Member `json:"members"`
		}
		if err != nil || json.Unmarshal([]byte(out), &st) != nil {
			t.Fatalf("%s status: %v\n%s", h.Name, err, out)
		}
		for _, m := range st.Members {
			if m.ConfigVersion != 1 || m.Unapplied != 0 {
				t.Errorf("%s sees %s at version %d (unapplied %d), want 1", h.Name, m.Name, m.ConfigVersion, m.Unapplied)
			}
		}
	}
}

// A host that cannot apply a committed version owns no VIPs until it can,
// and says why, on the real binary: the owner of the IPv4 VIP loses its
// gossip key file (which every new version's check reads), a version made
// through another host is committed all the same, and the VIP moves to a
// host that runs it; the owner's status names the version it cannot
// apply. With the file back, the next version makes it healthy again.
func TestAHostThatCannotApplyTheCommittedVersionOwnsNoVIPs(t *testing.T) {
	l := nslab.New(t, 3)
	// Each host its own copy of the key file.
	for _, h := range l.Hosts {
		key, err := os.ReadFile(h.Key)
		if err != nil {
			t.Fatal(err)
		}
		h.Key = filepath.Join(l.Dir, h.Name+".key")
		nslab.WriteFile(t, h.Key, string(key))
		h.Start()
	}
	if !l.Configured(converge) {
		t.Fatal("the hosts run no committed cluster configuration")
	}
	victim := l.Owner(vip4, converge)
	var other *nslab.Host
	for _, h := range l.Hosts {
		if h != victim {
			other = h
			break
		}
	}
	key, err := os.ReadFile(victim.Key)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(victim.Key); err != nil {
		t.Fatal(err)
	}
	defer os.WriteFile(victim.Key, key, 0o600)
	apply := func(name string) {
		t.Helper()
		spec := filepath.Join(l.Dir, name+".yaml")
		nslab.WriteFile(t, spec, fmt.Sprintf(`services:
  - {name: web4, vip: %s, ports: [{port: 8080}]}
  - {name: web6, vip: "%s", ports: [{port: 8080}]}
  - {name: %s, vip: 10.99.0.152, ports: [{port: 8080}]}
`, vip4, vip6, name))
		if out, err := other.Edgelb("config", "apply", "-f", spec, "--api", "http://127.0.0.1:9080"); err != nil {
			t.Fatalf("edgelb config apply on %s: %v\n%s", other.Name, err, out)
		}
	}
	status := func(h *nslab.Host) api.Status {
		out, err := h.Edgelb("status", "--output", "json", "--api", "http://127.0.0.1:9080")
		var st struct {
			Status api.Status `json:"status"`
		}
		if err != nil || json.Unmarshal([]byte(out), &st) != nil {
			return api.Status{}
		}
		return st.Status
	}
	apply("unfit")
	if !nslab.Poll(converge, func() bool {
		hs := l.Holders(vip4)
		return len(hs) == 1 && hs[0] != victim
	}) {
		t.Fatalf("%s still holds %s (holders %v)\n%s", victim.Name, vip4, nslab.Names(l.Holders(vip4)), victim.Log.String())
	}
	st := status(victim)
	if st.Healthy || st.ConfigUnapplied != 2 || !strings.Contains(st.Problem, "cannot apply the committed cluster configuration version 2") {
		t.Fatalf("%s status: healthy %v, configUnapplied %d, problem %q", victim.Name, st.Healthy, st.ConfigUnapplied, st.Problem)
	}
	t.Logf("%s: %s", victim.Name, st.Problem)
	if err := os.WriteFile(victim.Key, key, 0o600); err != nil {
		t.Fatal(err)
	}
	apply("fits")
	if !nslab.Poll(converge, func() bool {
		st := status(victim)
		return st.Healthy && st.ConfigUnapplied == 0
	}) {
		t.Fatalf("%s is not healthy again: %+v\n%s", victim.Name, status(victim), victim.Log.String())
	}
}
