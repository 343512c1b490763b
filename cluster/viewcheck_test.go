package cluster

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"
)

// rankedVIPs returns up to n VIPs whose rendezvous ranking among the
// named members is exactly order (the first wins).
func rankedVIPs(n int, order ...string) []netip.Addr {
	var out []netip.Addr
	for _, v := range vipRange(2000) {
		ok := true
		for i := 1; i < len(order); i++ {
			if score(order[i-1], v) <= score(order[i], v) {
				ok = false
				break
			}
		}
		if ok {
			out = append(out, v)
			if len(out) == n {
				break
			}
		}
	}
	return out
}

// watchOwners samples every member's owned VIPs every 2 ms until stop is
// called, which returns the first VIP seen owned by two members at once
// ("" if none) and, for each member, every VIP it owned at some point.
func watchOwners(ms []*simMember) (stop func() (twice string, owned map[string][]netip.Addr)) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	var first string
	owned := map[string][]netip.Addr{}
	wg.Go(func() {
		for {
			seen := map[netip.Addr]string{}
			for _, m := range ms {
				name := m.c.opts.Name
				for _, v := range own(m.c) {
					if o, ok := seen[v]; ok && first == "" {
						first = fmt.Sprintf("%s owned by %s and %s", v, o, name)
					}
					seen[v] = name
					if !slices.Contains(owned[name], v) {
						owned[name] = append(owned[name], v)
					}
				}
			}
			select {
			case <-done:
				return
			case <-time.After(2 * time.Millisecond):
			}
		}
	})
	return func() (string, map[string][]netip.Addr) {
		close(done)
		wg.Wait()
		return first, owned
	}
}

func healthySeenBy(m *simMember, name string) bool {
	for _, x := range m.c.Members() {
		if x.Name == name {
			return x.Healthy
		}
	}
	return false
}

// agreed reports whether m's heartbeats say every peer has its current
// metadata and it has theirs.
func agreed(m *simMember) bool {
	m.c.mu.Lock()
	defer m.c.mu.Unlock()
	return len(m.c.agree.since) == 0
}

// TestStaleMetaAtHeartbeatDeath is the start-up race the crash benchmark
// showed (two hosts answered for 280 ms): lb2 becomes healthy, lb1 hears
// of it but lb3's gossip is late (its incoming memberlist packets are
// held), and lb1 dies (its heartbeats stop) right then. lb1's VIPs here
// rank lb1 > lb2 > lb3: lb2, which knows it is healthy, takes them; lb3,
// which still sees lb2 unhealthy, would take them too. The heartbeats
// carry the versions of the metadata ownership is computed from, so lb3
// knows its copy of lb2's is behind and lb2 that lb3 has not got its own:
// they take nothing new until they agree. Never two owners, and lb3 never
// takes lb2's VIPs. With the push/pull on a disagreement, lb3 catches up
// without gossip and lb1's VIPs reach lb2 while lb3's gossip is still
// held; without it (delayed past the test), lb2 takes none of lb1's VIPs
// until lb3 has heard of it.
func TestStaleMetaAtHeartbeatDeath(t *testing.T) {
	t.Run("caught up by push/pull", func(t *testing.T) { testStaleMetaAtDeath(t, 0) })
	t.Run("waiting for gossip", func(t *testing.T) { testStaleMetaAtDeath(t, time.Hour) })
}

func testStaleMetaAtDeath(t *testing.T, catchUpAfter time.Duration) {
	dead := rankedVIPs(8, "lb1", "lb2", "lb3")  // lb1's, lb2's next
	kept := rankedVIPs(4, "lb3", "lb1", "lb2")  // lb3's throughout
	other := rankedVIPs(4, "lb2", "lb1", "lb3") // lb2's once healthy, lb1's before
	vips := slices.Concat(dead, kept, other)
	slices.SortFunc(vips, netip.Addr.Compare)
	s, hn, port := newHeartbeatSim(t, vips, 32000, func(o *Options) { o.catchUpAfter = catchUpAfter })
	s.waitConverged(vips, s.members)
	lb1, lb2, lb3 := s.members[0], s.members[1], s.members[2]

	lb2.c.SetHealth("dataplane", errors.New("not programmed"))
	if !eventually(t, 20*time.Second, func() bool {
		ok, _ := s.converged(vips, s.members)
		return ok && len(own(lb2.c)) == 0 && !healthySeenBy(lb1, "lb2") && !healthySeenBy(lb3, "lb2") &&
			agreed(lb1) && agreed(lb2) && agreed(lb3)
	}) {
		t.Fatal("lb2 unhealthy: not settled")
	}
	want := slices.Concat(dead, other)
	slices.SortFunc(want, netip.Addr.Compare)
	if !slices.Equal(own(lb1.c), want) {
		t.Fatalf("lb1 owns %v, want %v", own(lb1.c), want)
	}

	stop := watchOwners(s.members)
	lb3.tr.setHeld(true)
	lb2.c.SetHealth("dataplane", nil)
	// lb1 dies now: its heartbeats stop (memberlist, slow here, still
	// lists it).
	hn.setCut(port["lb1"], true)
	cut := time.Now()
	onLB2 := func() bool {
		o := own(lb2.c)
		for _, v := range dead {
			if !slices.Contains(o, v) {
				return false
			}
		}
		return len(own(lb1.c)) == 0
	}
	var moved bool
	if catchUpAfter == 0 {
		moved = eventually(t, 2*time.Second, onLB2)
	} else {
		// For half a second (the heartbeats count lb1 down after 85 ms),
		// lb2 owns none of lb1's VIPs while lb3 still sees it unhealthy
		// (lb3 may hear of lb2 meanwhile from lb1's own push/pulls: lb1
		// lost its quorum and refreshes its view). lb2's VIPs are read
		// first: lb3 never sees lb2 unhealthy again once it saw it
		// healthy.
		for end := time.Now().Add(500 * time.Millisecond); time.Now().Before(end); time.Sleep(time.Millisecond) {
			o := own(lb2.c)
			if slices.ContainsFunc(dead, func(v netip.Addr) bool { return slices.Contains(o, v) }) && !healthySeenBy(lb3, "lb2") {
				t.Errorf("lb2 took lb1's VIPs while lb3 still saw it unhealthy: %v", o)
				break
			}
		}
	}
	took := time.Since(cut)
	lb3.tr.setHeld(false)
	if catchUpAfter != 0 {
		moved = eventually(t, 20*time.Second, onLB2)
		took = time.Since(cut)
	}
	twice, owned := stop()
	if twice != "" {
		t.Errorf("two owners at once: %s", twice)
	}
	for _, v := range dead {
		if slices.Contains(owned["lb3"], v) {
			t.Errorf("lb3 took %s from its stale view (lb2 unhealthy); lb2 wins it", v)
		}
	}
	if !moved {
		t.Fatalf("lb1's VIPs %v not on lb2 after its death: lb2 owns %v, lb1 %v", dead, own(lb2.c), own(lb1.c))
	}
	t.Logf("lb1's VIPs on lb2 %v after its heartbeats stopped", took.Round(time.Millisecond))
}

func TestHeartbeatOwnerVersionsOnTheWire(t *testing.T) {
	old := heartbeat{Seq: 7, From: "lb1", To: "lb2", Reports: []report{{Name: "lb3", Age: ms(12)}}}
	oldBytes, err := old.marshal()
	if err != nil {
		t.Fatal(err)
	}
	// A release before the versions sends none: "unknown".
	got, err := unmarshalHeartbeat(oldBytes)
	if err != nil || got.Versions != nil {
		t.Fatalf("heartbeat without versions: %+v, %v; want no versions", got, err)
	}
	withV := old
	withV.Versions = &ownerVersions{Sender: 1<<63 + 5, Receiver: 42}
	b, err := withV.marshal()
	if err != nil {
		t.Fatal(err)
	}
	// Older releases read up to the reports and ignore what follows: the
	// fields they know are where they were.
	if !bytes.HasPrefix(b, oldBytes) {
		t.Fatal("the versions moved the fields older releases read")
	}
	got, err = unmarshalHeartbeat(b)
	if err != nil || got.Versions == nil || *got.Versions != *withV.Versions || got.Seq != 7 || !slices.Equal(got.Reports, old.Reports) {
		t.Fatalf("round trip: %+v (versions %v), %v", got, got.Versions, err)
	}
	// An unknown extension before them is skipped; one cut short ends
	// the extensions and leaves the heartbeat valid.
	unknown := append(append(slices.Clone(oldBytes), 9, 3, 1, 2, 3), b[len(oldBytes):]...)
	if got, err = unmarshalHeartbeat(unknown); err != nil || got.Versions == nil || *got.Versions != *withV.Versions {
		t.Fatalf("after an unknown extension: %+v, %v", got, err)
	}
	if got, err = unmarshalHeartbeat(b[:len(b)-3]); err != nil || got.Versions != nil || got.Seq != 7 {
		t.Fatalf("extension cut short: %+v, %v; want the heartbeat without versions", got, err)
	}
}

func TestDisagreeing(t *testing.T) {
	const self = 100
	peer := func(name string, copyOf uint64) Member {
		return Member{Name: name, Meta: Meta{Healthy: true, OwnerVersion: copyOf}}
	}
	for _, tc := range []struct {
		name    string
		m       Member
		heard   map[string]ownerVersions
		unheard map[string]bool
		want    bool
	}{
		{"agree", peer("b", 7), map[string]ownerVersions{"b": {Sender: 7, Receiver: self}}, nil, false},
		{"our copy of b is behind", peer("b", 7), map[string]ownerVersions{"b": {Sender: 8, Receiver: self}}, nil, true},
		{"our copy is newer than b's heartbeat (gossip came first)", peer("b", 8), map[string]ownerVersions{"b": {Sender: 7, Receiver: self}}, nil, false},
		{"b's copy of us is behind", peer("b", 7), map[string]ownerVersions{"b": {Sender: 7, Receiver: self - 1}}, nil, true},
		{"b sends no versions (an older release)", peer("b", 0), nil, nil, false},
		{"b is counted down", func() Member { m := peer("b", 7); m.Silent = true; return m }(), map[string]ownerVersions{"b": {Sender: 9, Receiver: 1}}, nil, false},
		{"b is absent (restarting)", func() Member { m := peer("b", 7); m.Absent = true; return m }(), map[string]ownerVersions{"b": {Sender: 9, Receiver: 1}}, nil, false},
		{"a witness's copy of us is not waited for", func() Member { m := peer("w", 7); m.Witness = true; return m }(), map[string]ownerVersions{"w": {Sender: 7, Receiver: 1}}, nil, false},
		{"a witness's own metadata is", func() Member { m := peer("w", 7); m.Witness = true; return m }(), map[string]ownerVersions{"w": {Sender: 8, Receiver: self}}, nil, true},
		{"b has sent no versions yet, and speaks them", peer("b", 7), nil, map[string]bool{"b": true}, true},
		{"b has sent no versions yet, for too long (judged by memberlist)", peer("b", 7), nil, nil, false},
		{"b's versions came", peer("b", 7), map[string]ownerVersions{"b": {Sender: 7, Receiver: self}}, map[string]bool{"b": true}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			members := []Member{peer("a", self), tc.m}
			got := disagreeing("a", self, members, tc.heard, tc.unheard)
			if (len(got) > 0) != tc.want {
				t.Fatalf("disagreeing %v, want disagreement %v", got, tc.want)
			}
		})
	}
}

// The owner version moves with what Assign reads only: a takeover (Held,
// Gave) leaves it, so that the others do not wait for it; becoming
// unhealthy and healthy again moves it twice, never back.
func TestOwnerVersion(t *testing.T) {
	now := t0
	c := &Cluster{opts: Options{Now: func() time.Time { return now }}}
	m := Meta{Healthy: true, Networks: []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")}}
	v1 := c.bumpOwnerVersionLocked(m).OwnerVersion
	if v1 < uint64(t0.UnixNano()) {
		t.Fatalf("first version %d below the start's wall clock", v1)
	}
	m.Held, m.Gave, m.ConfigVersion = Digest{Count: 3, Sum: 9}, 4, 2
	if v := c.bumpOwnerVersionLocked(m).OwnerVersion; v != v1 {
		t.Fatalf("held, gave and config changed the owner version: %d, was %d", v, v1)
	}
	seen := []uint64{v1}
	for _, change := range []func(*Meta){
		func(m *Meta) { m.Healthy = false },
		func(m *Meta) { m.Healthy = true },
		func(m *Meta) { m.Draining = true },
		func(m *Meta) { m.Refused = []netip.Addr{netip.MustParseAddr("192.0.2.9")} },
		func(m *Meta) { m.Networks = nil },
	} {
		change(&m)
		v := c.bumpOwnerVersionLocked(m).OwnerVersion
		if v <= seen[len(seen)-1] {
			t.Fatalf("owner version %d after a change, was %d", v, seen[len(seen)-1])
		}
		seen = append(seen, v)
	}
	// It is gossiped.
	b := encodeMeta(c.bumpOwnerVersionLocked(m), 512)
	if got, err := decodeMeta(b); err != nil || got.OwnerVersion != seen[len(seen)-1] {
		t.Fatalf("decoded owner version %d, %v; want %d", got.OwnerVersion, err, seen[len(seen)-1])
	}
}

// A heartbeat without versions (an older release) records none, so the
// member is not compared; one with them is; a member that joins again
// (a new process) starts without any.
func TestHeartbeaterRecordsVersions(t *testing.T) {
	keys := func() [][]byte { return [][]byte{testKey} }
	h := newHeartbeater("lb1", HeartbeatOptions{Interval: hbInterval, Multiplier: 3}, nil, keys, func() time.Time { return t0 }, func() {}, slog.New(slog.DiscardHandler))
	h.setTargets([]hbTarget{{Name: "lb2", Addr: netip.MustParseAddrPort("10.0.0.2:7947")}})
	s := sealer{keys: keys}
	send := func(seq uint64, v *ownerVersions) {
		b, err := s.seal(heartbeat{Seq: seq, From: "lb2", To: "lb1", Versions: v})
		if err != nil {
			t.Fatal(err)
		}
		h.receive(b, t0)
	}
	send(1, nil)
	if got := h.heardVersions(); len(got) != 0 {
		t.Fatalf("after a heartbeat without versions: %v, want none", got)
	}
	send(2, &ownerVersions{Sender: 5, Receiver: 6})
	if got := h.heardVersions(); got["lb2"] != (ownerVersions{Sender: 5, Receiver: 6}) {
		t.Fatalf("heard %v, want lb2's 5/6", got)
	}
	h.forgetPeer("lb2")
	if got := h.heardVersions(); len(got) != 0 {
		t.Fatalf("after lb2 joined again: %v, want none", got)
	}
}

// A live peer that speaks versions (an owner version and a heartbeat port
// in its Meta) but whose heartbeats have carried none yet counts as
// behind: a process that just started, or whose peer knows only its first
// Meta, must not take a VIP that peer may still hold (the test bed's
// handover back after a SIGKILL). For ten heartbeat timeouts, at least
// 2 s: then the heartbeat path is taken for broken and memberlist alone
// judges, as before. Versions heard end it; an older release (no owner
// version) or a peer without heartbeats is not waited for.
func TestUnheardPeerCountsAsBehind(t *testing.T) {
	keys := func() [][]byte { return [][]byte{testKey} }
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	h := newHeartbeater("lb1", HeartbeatOptions{Interval: hbInterval, Multiplier: 3}, nil, keys, func() time.Time { return t0 }, func() {}, log)
	c := &Cluster{opts: Options{Name: "lb1"}, log: log, catchUp: make(chan struct{}, 1),
		agree: viewCheck{since: map[string]time.Time{}, unheard: map[string]time.Time{}, warnedUnheard: map[string]bool{}}}
	c.hb.Store(h)
	self := Meta{Healthy: true, OwnerVersion: 4}
	peer := func(ov uint64, port uint16) []Member {
		return []Member{{Name: "lb1", Meta: self}, {Name: "lb2", Meta: Meta{Healthy: true, OwnerVersion: ov, HeartbeatPort: port}}}
	}
	check := func(at time.Time, members []Member, want bool) {
		t.Helper()
		c.mu.Lock()
		_, peers := c.disagreeLocked(members, self, at)
		c.mu.Unlock()
		if (len(peers) > 0) != want {
			t.Fatalf("at +%v: disagreeing %v, want a disagreement: %v", at.Sub(t0), peers, want)
		}
	}
	check(t0, peer(7, 7947), true)
	check(t0.Add(time.Second), peer(7, 7947), true)
	check(t0.Add(unheardFor(3*hbInterval)+time.Second), peer(7, 7947), false) // judged by memberlist now
	if !bytes.Contains(logs.Bytes(), []byte("no heartbeat versions from a live peer")) {
		t.Errorf("no warning once the bound passed:\n%s", logs.String())
	}
	check(t0, peer(0, 7947), false) // an older release
	check(t0, peer(7, 0), false)    // no heartbeats
	// Versions heard: compared as usual.
	s := sealer{keys: keys}
	h.setTargets([]hbTarget{{Name: "lb2", Addr: netip.MustParseAddrPort("10.0.0.2:7947")}})
	b, err := s.seal(heartbeat{Seq: 1, From: "lb2", To: "lb1", Versions: &ownerVersions{Sender: 7, Receiver: 4}})
	if err != nil {
		t.Fatal(err)
	}
	h.receive(b, t0)
	check(t0.Add(10*time.Millisecond), peer(7, 7947), false)
}
