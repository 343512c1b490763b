package k8s

import (
	"context"
	"slices"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
)

// A new cluster configuration with another pool layout renumbers no
// Service: x, whose address is now outside every pool, keeps it; a
// Service that had no address (the old pool was full) gets one from the
// new pool.
func TestSetConfigRenumbersNothing(t *testing.T) {
	fc := fake.NewClientset()
	h := watchHistory(t, fc)
	c := newController(t, fc, testConfig(t, `  - {name: tiny, addresses: ["192.0.2.0/32"]}`), "lb1")
	startInformers(t, c)
	defer runTerm(c)()
	waitLeader(t, c)
	x := lbService("ns", "x", 0)
	create(t, fc, x)
	got := waitAddressed(t, fc, "ns/x")
	if !slices.Equal(got["ns/x"], []string{"192.0.2.0"}) {
		t.Fatalf("x has %v", got["ns/x"])
	}
	y := lbService("ns", "y", 1)
	create(t, fc, y)
	waitWarning(t, fc, "ns", "y", "PoolExhausted", "no free")

	c.SetConfig(testConfig(t, `  - {name: new, addresses: ["198.51.100.0/28"]}`))
	got = waitAddressed(t, fc, "ns/x", "ns/y")
	// x is synced again (any change to it does that) and keeps its address.
	cur, err := fc.CoreV1().Services("ns").Get(context.Background(), "x", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cur.Labels = map[string]string{"touched": "yes"}
	if _, err := fc.CoreV1().Services("ns").Update(context.Background(), cur, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	z := lbService("ns", "z", 2)
	create(t, fc, z)
	got = waitAddressed(t, fc, "ns/x", "ns/y", "ns/z")
	if !slices.Equal(got["ns/x"], []string{"192.0.2.0"}) || !slices.Equal(got["ns/y"], []string{"198.51.100.0"}) ||
		!slices.Equal(got["ns/z"], []string{"198.51.100.1"}) {
		t.Errorf("after the new pools: %v", got)
	}
	if p := c.config().Pools; len(p) != 1 || p[0].Name != "new" {
		t.Errorf("the controller runs pools %+v", p)
	}
	h.check(t)
}
