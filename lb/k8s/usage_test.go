package k8s

import (
	"testing"

	"k8s.io/client-go/kubernetes/fake"

	"github.com/edgelb/edgelb/lb/ipam"
)

// A host that does not hold the Lease tells the pools' usage from the
// Services' status in its cache, as the leader's allocation counts it:
// each address once (two Services sharing one), only Services of
// edgelb's class, and an address outside every pool in none.
func TestPoolUsageWithoutLease(t *testing.T) {
	c := newController(t, fake.NewClientset(), testConfig(t, mainPool+"\n"+`  - {name: other, addresses: ["198.51.100.0/30"]}`), "lb2")
	startInformers(t, c)
	shared1, shared2 := lbService("ns", "a", 0, "192.0.2.1"), lbService("ns", "b", 1, "192.0.2.1")
	twoIPs := lbService("ns", "c", 2, "192.0.2.2", "198.51.100.3")
	foreign := lbService("ns", "d", 3, "192.0.2.5")
	class := "other.example/lb"
	foreign.Spec.LoadBalancerClass = &class
	outside := lbService("ns", "e", 4, "203.0.113.9")
	cacheAdd(t, c, shared1, shared2, twoIPs, foreign, outside)
	if c.Leader() {
		t.Fatal("the test needs a host without the Lease")
	}
	got := c.PoolUsage()
	want := []ipam.PoolUsage{{Name: "main", Size: 16, Used: 2}, {Name: "other", Size: 4, Used: 1}}
	if len(got) != len(want) || got[0] != want[0] || got[1] != want[1] {
		t.Errorf("PoolUsage() = %+v, want %+v", got, want)
	}
}
