package e2e

import (
	"encoding/json"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/edgelb/edgelb/api"
	"github.com/edgelb/edgelb/test/nslab"
)

// membersOf is what h's API lists as its members (edgelb members list).
func membersOf(h *nslab.Host) ([]api.Member, error) {
	out, err := h.Edgelb("members", "list", "--output", "json", "--api", "http://127.0.0.1:9080")
	if err != nil {
		return nil, err
	}
	var ms []api.Member
	return ms, json.Unmarshal([]byte(out), &ms)
}

// configured reports whether h's API lists exactly want (addresses) as
// the configured members, each alive at config version v (0: any).
func configured(h *nslab.Host, want []string, v uint64) bool {
	ms, err := membersOf(h)
	if err != nil {
		return false
	}
	var got []string
	for _, m := range ms {
		if !m.Configured {
			continue
		}
		if !m.Alive || v > 0 && m.ConfigVersion != v {
			return false
		}
		got = append(got, m.Address)
	}
	slices.Sort(got)
	return slices.Equal(got, want)
}

// Adding and removing a host on the real binary: h4, its file listing the
// three and itself, is added with `edgelb members add` on h1 and started
// with an empty state directory; it joins the running cluster's log (not a
// cluster of its own), runs the committed version and is a configured
// member on every host; a change made through it is committed everywhere.
// Then the owner of the IPv4 VIP is removed with `edgelb members remove`
// on another host: it gives the VIP up, another host holds it and it
// answers, and the configured members are the three left.
func TestAddAndRemoveAHost(t *testing.T) {
	l := startCluster(t, 3)
	h1 := l.Hosts[0]
	apiFlag := []string{"--api", "http://127.0.0.1:9080"}
	addr := func(h *nslab.Host) string { return h.IP4.String() + ":7946" }

	h4 := l.AddHost("h4", l.Key)
	out, err := h1.Edgelb(append([]string{"members", "add", h4.IP4.String()}, apiFlag...)...)
	if err != nil || !strings.HasPrefix(out, "added "+addr(h4)) {
		t.Fatalf("edgelb members add on h1: %v\n%s", err, out)
	}
	start := time.Now()
	h4.Start()
	four := []string{addr(l.Hosts[0]), addr(l.Hosts[1]), addr(l.Hosts[2]), addr(h4)}
	slices.Sort(four)
	for _, h := range l.Hosts {
		if !nslab.Poll(converge, func() bool { return configured(h, four, 1) }) {
			out, _ := h.Edgelb(append([]string{"members", "list"}, apiFlag...)...)
			t.Fatalf("%s does not list the four hosts configured, alive, at version 1:\n%s\n%s", h.Name, out, h4.Log.String())
		}
	}
	t.Logf("h4 added, joined and at version 1 on every host %v after its start", time.Since(start).Round(time.Millisecond))
	if strings.Contains(h4.Log.String(), "cluster configuration seeded") {
		t.Errorf("h4 seeded a cluster configuration of its own:\n%s", h4.Log.String())
	}
	// A write through h4 is committed by the four.
	if out, err := h4.Edgelb(append([]string{"config", "rollback", "1"}, apiFlag...)...); err != nil {
		t.Fatalf("edgelb config rollback 1 through h4: %v\n%s", err, out)
	}
	for _, h := range l.Hosts {
		if !nslab.Poll(converge, func() bool { return configured(h, four, 2) }) {
			t.Fatalf("%s does not run version 2, made through h4", h.Name)
		}
	}

	gone := l.Owner(vip4, converge)
	via := l.Hosts[0]
	if via == gone {
		via = l.Hosts[1]
	}
	out, err = via.Edgelb(append([]string{"members", "remove", gone.Name}, apiFlag...)...)
	if err != nil || !strings.HasPrefix(out, "removed "+addr(gone)) {
		t.Fatalf("edgelb members remove %s on %s: %v\n%s", gone.Name, via.Name, err, out)
	}
	three := slices.DeleteFunc(slices.Clone(four), func(a string) bool { return a == addr(gone) })
	if !nslab.Poll(converge, func() bool { return !gone.Has(vip4) && len(l.Holders(vip4)) == 1 }) {
		t.Fatalf("after its removal %s still holds %s, or no other host does (holders %v)", gone.Name, vip4, nslab.Names(l.Holders(vip4)))
	}
	p := l.Probe(vip4, 300*time.Millisecond)
	if !nslab.Poll(converge, func() bool { return p.Last().OK }) {
		t.Fatalf("no answer from %s after the removal of %s: %+v", vip4, gone.Name, p.Last())
	}
	p.Stop()
	for _, h := range l.Hosts {
		if h != gone && !nslab.Poll(converge, func() bool { return configured(h, three, 2) }) {
			out, _ := h.Edgelb(append([]string{"members", "list"}, apiFlag...)...)
			t.Fatalf("%s does not list the three hosts left as configured:\n%s", h.Name, out)
		}
	}
	t.Logf("%s removed through %s; %s moved to %s", gone.Name, via.Name, vip4, nslab.Names(l.Holders(vip4)))
	if err := gone.Stop(10 * time.Second); err != nil {
		t.Errorf("stopping %s: %v", gone.Name, err)
	}
}

// A fourth host started with a different file, never added: the three
// keep their configuration (same history, same services, the VIPs where
// they were), the newcomer's services appear nowhere and it owns no VIP;
// it says its file differs from what the cluster runs, or that it is not
// a member. (Under last-writer-wins every host took the newcomer's file.)
func TestNewcomerWithADifferentFileChangesNothing(t *testing.T) {
	l := startCluster(t, 3)
	h1 := l.Hosts[0]
	apiFlag := []string{"--api", "http://127.0.0.1:9080"}
	before, err := h1.Edgelb(append([]string{"config", "history"}, apiFlag...)...)
	if err != nil {
		t.Fatalf("edgelb config history: %v\n%s", err, before)
	}
	owner := l.StableOwner(vip4, time.Second)
	newVIP := netip.MustParseAddr("10.99.0.177")
	l.Services = "\n  - {name: newcomer, vip: " + newVIP.String() + ", ports: [{port: 8080}]}"
	h4 := l.AddHost("h4", l.Key)
	h4.Start()
	// h4 is in gossip and its API answers.
	if !nslab.Poll(converge, func() bool {
		ms, err := membersOf(h1)
		return err == nil && slices.ContainsFunc(ms, func(m api.Member) bool { return m.Address == h4.IP4.String()+":7946" && m.Alive })
	}) {
		t.Fatalf("h4 never appeared alive in h1's members:\n%s", h4.Log.String())
	}
	time.Sleep(3 * time.Second) // what LWW needed to spread the newcomer's file
	for _, h := range l.Hosts[:3] {
		after, err := h.Edgelb(append([]string{"config", "history"}, apiFlag...)...)
		if err != nil || after != before {
			t.Errorf("%s: the configuration's history after h4 joined:\n%s\nwant, as before:\n%s", h.Name, after, before)
		}
		if ms, err := membersOf(h); err == nil {
			for _, m := range ms {
				if m.Address == h4.IP4.String()+":7946" && m.Configured {
					t.Errorf("%s lists h4 as a configured member", h.Name)
				}
			}
		}
	}
	if hs := l.Holders(newVIP); len(hs) != 0 {
		t.Errorf("the newcomer's VIP %s is held by %v", newVIP, nslab.Names(hs))
	}
	if hs := l.Holders(vip4); len(hs) != 1 || hs[0] != owner {
		t.Errorf("%s is held by %v, want %s alone as before h4 came", vip4, nslab.Names(hs), owner.Name)
	}
	if h4.Has(vip4) || h4.Has(vip6) {
		t.Error("h4, not a configured member, holds a VIP")
	}
	st, err := h4.Edgelb(append([]string{"status"}, apiFlag...)...)
	if err != nil {
		t.Fatalf("edgelb status on h4: %v\n%s", err, st)
	}
	if !strings.Contains(st, "differ") && !strings.Contains(st, "not configured") && !strings.Contains(st, "not a member") {
		t.Errorf("h4's status says neither that its file differs nor that it is not a member:\n%s", st)
	}
	t.Logf("h4's status:\n%s", st)
}
