package cluster

import (
	"fmt"
	"testing"
)

// A member may serve the VIPs everyone serves (BGP) only while it is
// healthy, has a quorum and is neither draining nor stopping.
func TestMayServe(t *testing.T) {
	vips := vipRange(3)
	s := newSim(t, 3, 0, vips)
	s.waitConverged(vips, s.members)
	for _, m := range s.members {
		if !poll(t, m.c.MayServe) {
			t.Fatalf("%s may not serve in a converged cluster", m.c.opts.Name)
		}
	}
	m := s.members[1].c
	notServing := func() bool { return !m.MayServe() }

	m.SetHealth("dataplane", fmt.Errorf("broken"))
	if !poll(t, notServing) {
		t.Fatal("an unhealthy member may serve")
	}
	m.SetHealth("dataplane", nil)
	if !poll(t, m.MayServe) {
		t.Fatal("healthy again, it may not serve")
	}
	m.Drain()
	if !poll(t, notServing) {
		t.Fatal("a draining member may serve")
	}
	m.Undrain()
	if !poll(t, m.MayServe) {
		t.Fatal("undrained, it may not serve")
	}
	// Stop the two others: no quorum left.
	for _, o := range []*simMember{s.members[0], s.members[2]} {
		if err := o.stop(); err != nil {
			t.Fatal(err)
		}
	}
	if !poll(t, notServing) {
		t.Fatal("a member without a quorum may serve")
	}
	if err := s.members[1].stop(); err != nil {
		t.Fatal(err)
	}
	if m.MayServe() {
		t.Fatal("a stopped member may serve")
	}
}
