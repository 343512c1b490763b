package cluster

import (
	"bytes"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"
)

const (
	hbInterval = 50 * time.Millisecond
	hbTimeout  = 3 * hbInterval
)

func ms(n int) time.Duration { return time.Duration(n) * time.Millisecond }

// silentAt and unheardAt are liveness's verdict at now.
func silentAt(l *liveness, peers []string, now time.Time) []string {
	s, _ := l.verdict(peers, now)
	return s
}

func unheardAt(l *liveness, peers []string, now time.Time) []string {
	_, u := l.verdict(peers, now)
	return u
}

func TestLivenessSilentPeerCountedDownAfterTimeout(t *testing.T) {
	l := newLiveness(hbInterval, 3)
	peers := []string{"lb2", "lb3"}
	// lb3 is never heard: memberlist alone judges it (an older release).
	for i := range 4 {
		l.accept("lb2", "lb1", uint64(i+1), t0.Add(ms(50*i)), nil)
	}
	last := t0.Add(ms(150))
	if u := unheardAt(l, peers, last.Add(hbTimeout-time.Millisecond)); len(u) != 0 {
		t.Fatalf("unheard %v before interval × multiplier", u)
	}
	// Not counted for the quorum after interval × multiplier...
	at := last.Add(hbTimeout)
	if s, u := l.verdict(peers, at); len(s) != 0 || !slices.Equal(u, []string{"lb2"}) {
		t.Fatalf("after interval × multiplier: silent %v, unheard %v; want none, [lb2]", s, u)
	}
	// ... and counted down (its VIPs taken) an interval later, when a
	// member cut off from it has let go of its own.
	silent := at.Add(hbInterval + hbInterval/4)
	if s := silentAt(l, peers, silent.Add(-time.Millisecond)); len(s) != 0 {
		t.Fatalf("silent %v before interval × (multiplier + 1¼)", s)
	}
	if s := silentAt(l, peers, silent); !slices.Equal(s, []string{"lb2"}) {
		t.Fatalf("silent %v after interval × (multiplier + 1¼), want [lb2]", s)
	}
	if n := l.next(last); !n.Equal(last.Add(hbTimeout)) {
		t.Errorf("next check %v, want the timeout %v", n, last.Add(hbTimeout))
	}
}

func TestLivenessThirdMemberKeepsPeer(t *testing.T) {
	// lb1 no longer hears lb2 itself, but lb3, which it hears, does:
	// lb2 stays counted (memberlist's indirect probe), so lb1 keeps the
	// view lb3 has.
	l := newLiveness(hbInterval, 3)
	l.accept("lb2", "lb1", 1, t0, nil)
	for i := 1; i <= 10; i++ {
		now := t0.Add(ms(50 * i))
		l.accept("lb3", "lb1", uint64(i), now, []report{{Name: "lb2", Age: ms(20)}, {Name: "lb1", Age: ms(10)}})
		if u := unheardAt(l, []string{"lb2", "lb3"}, now); len(u) != 0 {
			t.Fatalf("at %v: unheard %v while lb3 hears lb2", now.Sub(t0), u)
		}
	}
	// lb3 stops hearing lb2 too (lb2 crashed): its reports age, and lb2
	// is counted down a timeout after it was last heard by anyone.
	end := t0.Add(ms(500))
	lastHeard := end.Add(-ms(20))
	for i := 11; i <= 20; i++ {
		now := t0.Add(ms(50 * i))
		var r []report
		if age := now.Sub(lastHeard); age < hbTimeout {
			r = []report{{Name: "lb2", Age: age}}
		}
		l.accept("lb3", "lb1", uint64(i), now, r)
	}
	if u := unheardAt(l, []string{"lb2"}, lastHeard.Add(hbTimeout-time.Millisecond)); len(u) != 0 {
		t.Fatalf("lb2 unheard before anyone missed it for the timeout: %v", u)
	}
	if s := silentAt(l, []string{"lb2"}, lastHeard.Add(hbTimeout+hbInterval+hbInterval/4)); len(s) != 1 {
		t.Fatalf("lb2 not counted down a timeout and an interval after the last report of it: %v", s)
	}
}

func TestLivenessRecoveryHysteresis(t *testing.T) {
	l := newLiveness(hbInterval, 3)
	seq := uint64(0)
	hear := func(at time.Time) {
		seq++
		if !l.accept("lb2", "lb1", seq, at, nil) {
			t.Fatalf("heartbeat %d refused", seq)
		}
	}
	peers := []string{"lb2"}
	hear(t0)
	if s := silentAt(l, peers, t0.Add(hbTimeout+2*hbInterval)); len(s) != 1 {
		t.Fatal("not counted down")
	}
	// One heartbeat, then silence again (a flapping link): it stays down.
	back := t0.Add(time.Second)
	hear(back)
	if s := silentAt(l, peers, back); len(s) != 1 {
		t.Fatal("counted again at its first heartbeat back")
	}
	if s := silentAt(l, peers, back.Add(hbTimeout)); len(s) != 1 {
		t.Fatal("counted again after one heartbeat and silence")
	}
	// Heard again without a gap: counted again only after a full timeout
	// of heartbeats.
	back = t0.Add(2 * time.Second)
	for i := 0; i <= 4; i++ {
		at := back.Add(ms(50 * i))
		hear(at)
		s, u := l.verdict(peers, at)
		if want := at.Sub(back) < hbTimeout; (len(s) == 1) != want || (len(u) == 1) != want {
			t.Fatalf("%v after it was heard again: silent %v, unheard %v, want both %v", at.Sub(back), s, u, want)
		}
	}
	// A gap long enough to be unheard but not silent: back, it is not
	// counted for the quorum for the timeout, and never counted down.
	gap := back.Add(ms(200) + hbTimeout)
	hear(gap)
	if s, u := l.verdict(peers, gap); len(s) != 0 || len(u) != 1 {
		t.Fatalf("after a gap of the timeout: silent %v, unheard %v; want none, [lb2]", s, u)
	}
}

func TestLivenessPeerThatNoLongerHearsUs(t *testing.T) {
	// lb2 hears lb1 (its reports name it) and then stops reporting it:
	// lb1's heartbeats no longer reach it, so it is about to count lb1
	// down. lb1 stops counting lb2 for its quorum a timeout and an
	// interval (the reports' lag) after lb2 last heard it, before lb2
	// counts it down (a quarter interval later).
	l := newLiveness(hbInterval, 3)
	for i := 0; i <= 6; i++ {
		now := t0.Add(ms(50 * i))
		l.accept("lb2", "lb1", uint64(i+1), now, []report{{Name: "lb1", Age: ms(10)}})
		if u := unheardAt(l, []string{"lb2"}, now); len(u) != 0 {
			t.Fatalf("lb2 unheard at +%v while it reports hearing lb1", now.Sub(t0))
		}
	}
	heard := t0.Add(ms(300 - 10))
	// lb2 keeps sending, without lb1 in its reports.
	for i := 7; i <= 12; i++ {
		l.accept("lb2", "lb1", uint64(i+1), t0.Add(ms(50*i)), nil)
	}
	end := heard.Add(hbTimeout + hbInterval)
	if u := unheardAt(l, []string{"lb2"}, end.Add(-time.Millisecond)); len(u) != 0 {
		t.Fatalf("unheard %v before the timeout and an interval", u)
	}
	if s, u := l.verdict([]string{"lb2"}, end); len(u) != 1 || len(s) != 0 {
		t.Fatalf("lb2 no longer hears lb1: silent %v, unheard %v; want none (it still owns), [lb2]", s, u)
	}
	if end.Add(time.Millisecond).After(heard.Add(hbTimeout + hbInterval + hbInterval/4)) {
		t.Fatal("lb1 lets go after lb2 counts it down")
	}
	// A peer that never reported hearing lb1 (its port blocked one way)
	// counts: memberlist alone.
	for i := range 20 {
		l.accept("lb3", "lb1", uint64(i+1), t0.Add(ms(50*i)), nil)
	}
	if u := unheardAt(l, []string{"lb3"}, t0.Add(ms(50*19))); len(u) != 0 {
		t.Fatalf("unheard %v, though it never heard of lb1", u)
	}
}

func TestLivenessRefusesReplay(t *testing.T) {
	l := newLiveness(hbInterval, 3)
	if !l.accept("lb2", "lb1", 10, t0, nil) {
		t.Fatal("first heartbeat refused")
	}
	if l.accept("lb2", "lb1", 10, t0.Add(hbTimeout), nil) || l.accept("lb2", "lb1", 9, t0.Add(hbTimeout), nil) {
		t.Fatal("replayed heartbeat accepted")
	}
	if u := unheardAt(l, []string{"lb2"}, t0.Add(hbTimeout)); len(u) != 1 {
		t.Fatal("a replayed heartbeat kept the peer counted")
	}
}

func TestHeartbeatSealing(t *testing.T) {
	key := func(k []byte) func() [][]byte { return func() [][]byte { return [][]byte{k} } }
	s := sealer{keys: key(testKey)}
	in := heartbeat{Seq: 42, From: "lb1", To: "lb2", Reports: []report{{Name: "lb3", Age: ms(17)}}}
	b, err := s.seal(in)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(b, []byte("lb3")) {
		t.Error("member names in clear on the wire")
	}
	out, err := s.open(b)
	if err != nil {
		t.Fatal(err)
	}
	if out.Seq != in.Seq || out.From != in.From || out.To != in.To || !slices.Equal(out.Reports, in.Reports) {
		t.Fatalf("opened %+v, sealed %+v", out, in)
	}
	// A rotated keyring: the old primary is still accepted.
	rotated := sealer{keys: func() [][]byte { return [][]byte{bytes.Repeat([]byte{7}, 32), testKey} }}
	if _, err := rotated.open(b); err != nil {
		t.Errorf("secondary key: %v", err)
	}
	if _, err := (sealer{keys: key(bytes.Repeat([]byte{7}, 32))}).open(b); err == nil {
		t.Error("opened with another key")
	}
	b[len(b)-1] ^= 1
	if _, err := s.open(b); err == nil {
		t.Error("opened a tampered heartbeat")
	}
}

// hbNet is an in-memory UDP network for heartbeats, keyed by port, that
// can cut a member off.
type hbNet struct {
	mu    sync.Mutex
	conns map[uint16]*hbConn
	cut   map[uint16]bool
	// mute drops only what port sends.
	mute map[uint16]bool
}

type hbConn struct {
	n      *hbNet
	port   uint16
	in     chan []byte
	closed chan struct{}
	once   sync.Once
}

func (n *hbNet) listen(port uint16) *hbConn {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.conns == nil {
		n.conns, n.cut, n.mute = map[uint16]*hbConn{}, map[uint16]bool{}, map[uint16]bool{}
	}
	c := &hbConn{n: n, port: port, in: make(chan []byte, 256), closed: make(chan struct{})}
	n.conns[port] = c
	return c
}

// setMute drops everything port sends while on (a one-way failure).
func (n *hbNet) setMute(port uint16, on bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.mute[port] = on
}

// setCut drops everything to and from port while on.
func (n *hbNet) setCut(port uint16, on bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.cut[port] = on
}

func (c *hbConn) ReadFrom(b []byte) (int, net.Addr, error) {
	select {
	case p := <-c.in:
		return copy(b, p), &net.UDPAddr{}, nil
	case <-c.closed:
		return 0, nil, net.ErrClosed
	}
}

func (c *hbConn) WriteTo(b []byte, a net.Addr) (int, error) {
	to := uint16(a.(*net.UDPAddr).Port)
	c.n.mu.Lock()
	dst, cut := c.n.conns[to], c.n.cut[to] || c.n.cut[c.port] || c.n.mute[c.port]
	c.n.mu.Unlock()
	if dst == nil || cut {
		return len(b), nil
	}
	select {
	case dst.in <- bytes.Clone(b):
	default:
	}
	return len(b), nil
}

func (c *hbConn) Close() error                     { c.once.Do(func() { close(c.closed) }); return nil }
func (c *hbConn) LocalAddr() net.Addr              { return &net.UDPAddr{Port: int(c.port)} }
func (c *hbConn) SetDeadline(time.Time) error      { return nil }
func (c *hbConn) SetReadDeadline(time.Time) error  { return nil }
func (c *hbConn) SetWriteDeadline(time.Time) error { return nil }

var _ net.PacketConn = (*hbConn)(nil)

// TestHeartbeatsCountSilentMemberDown runs three members whose memberlist
// is slow (probes every second: it takes seconds to declare a member
// dead) with heartbeats every 20 ms × 3 on an in-memory network, and
// cuts one member's heartbeats only — both ways, or only what it sends
// (it still hears the others): the other two count it down and take its
// VIPs over while memberlist still lists it, and it, hearing nobody or
// heard by nobody, owns nothing. Heard again, it counts again after the
// hysteresis.
func TestHeartbeatsCountSilentMemberDown(t *testing.T) {
	for _, tc := range []struct {
		name string
		cut  func(hn *hbNet, port uint16, on bool)
	}{
		{"both ways", (*hbNet).setCut},
		{"one way", (*hbNet).setMute},
	} {
		t.Run(tc.name, func(t *testing.T) { testSilentMember(t, tc.cut) })
	}
}

// newHeartbeatSim starts three members lb1..lb3 whose heartbeats (20 ms
// x 3) go through one hbNet, on ports base+1..base+3, with memberlist's
// detection slow (1 s probes, x4 suspicion) so that the heartbeats decide;
// more sets further options. It returns the simulation, the net and each
// member's port.
func newHeartbeatSim(t *testing.T, vips []netip.Addr, base uint16, more func(o *Options)) (*sim, *hbNet, map[string]uint16) {
	hn := &hbNet{}
	port := map[string]uint16{"lb1": base + 1, "lb2": base + 2, "lb3": base + 3}
	conns := map[string]*hbConn{}
	for name, p := range port {
		conns[name] = hn.listen(p)
	}
	s := newSimWith(t, 3, 0, vips, func(o *Options) {
		o.Heartbeat = HeartbeatOptions{Interval: 20 * time.Millisecond, Multiplier: 3, Port: port[o.Name], Conn: conns[o.Name]}
		o.ProbeInterval, o.ProbeTimeout, o.SuspicionMult = time.Second, 500*time.Millisecond, 4
		if more != nil {
			more(o)
		}
	})
	return s, hn, port
}

func testSilentMember(t *testing.T, cut func(hn *hbNet, port uint16, on bool)) {
	vips := vipRange(30)
	s, hn, port := newHeartbeatSim(t, vips, 31000, nil)
	s.waitConverged(vips, s.members)
	lb1, lb2, lb3 := s.members[0], s.members[1], s.members[2]
	if len(own(lb2.c)) == 0 {
		t.Fatal("lb2 owns nothing to lose")
	}

	// Every 5 ms, from the cut on: never two owners of a VIP.
	stop := make(chan struct{})
	twice := make(chan string, 1)
	go func() {
		for {
			seen := map[netip.Addr]string{}
			for _, m := range s.members {
				for _, v := range own(m.c) {
					if o, ok := seen[v]; ok {
						select {
						case twice <- fmt.Sprintf("%s owned by %s and %s", v, o, m.c.opts.Name):
						default:
						}
					}
					seen[v] = m.c.opts.Name
				}
			}
			select {
			case <-stop:
				return
			case <-time.After(5 * time.Millisecond):
			}
		}
	}()
	defer close(stop)

	cut(hn, port["lb2"], true)
	start := time.Now()
	if !eventually(t, 10*time.Second, func() bool {
		return len(own(lb2.c)) == 0 && len(own(lb1.c))+len(own(lb3.c)) == len(vips)
	}) {
		t.Fatalf("after the cut: lb1 owns %d, lb3 %d, lb2 %d of %d", len(own(lb1.c)), len(own(lb3.c)), len(own(lb2.c)), len(vips))
	}
	t.Logf("lb2's VIPs moved %v after its heartbeats stopped", time.Since(start).Round(time.Millisecond))
	if lb2.c.HasQuorum() {
		t.Error("lb2 is cut off and still has a quorum")
	}
	// memberlist still lists lb2 (its gossip flows): only the heartbeats
	// count it down.
	var listed, silent bool
	for _, m := range lb1.c.Members() {
		if m.Name == "lb2" {
			listed, silent = true, m.Silent
		}
	}
	if !listed || !silent {
		t.Fatalf("lb1's view of lb2: listed %v, silent %v; want listed and silent", listed, silent)
	}

	cut(hn, port["lb2"], false)
	back := time.Now()
	if !eventually(t, 10*time.Second, func() bool { return len(own(lb2.c)) > 0 }) {
		t.Fatal("lb2 owns nothing after it is heard again")
	}
	d := time.Since(back)
	s.waitConverged(vips, s.members)
	if d < 60*time.Millisecond {
		t.Errorf("lb2 counted again %v after it was heard again, before a full timeout (hysteresis)", d)
	}
	select {
	case why := <-twice:
		t.Errorf("two owners at once: %s", why)
	default:
	}
}

// TestDecideSilentMembers: memberlist lists every member on both sides of
// a heartbeat partition ({a, c} | {b}); each side counts the other
// Silent. The side that hears a majority takes b's VIPs; b, hearing
// nobody, owns nothing: never two owners.
func TestDecideSilentMembers(t *testing.T) {
	vips := vipRange(40)
	silent := func(self string, names ...string) []Member {
		out := view("a", "b", "c")
		for i := range out {
			if out[i].Name != self && !slices.Contains(names, out[i].Name) {
				out[i].Silent = true
			}
		}
		return out
	}
	owners := map[netip.Addr][]string{}
	for _, c := range []struct {
		self  string
		heard []string
	}{{"a", []string{"c"}}, {"c", []string{"a"}}, {"b", nil}} {
		d := Decide(Input{Self: c.self, Members: silent(c.self, c.heard...), Size: 3, VIPs: vips, Held: vips, Now: t0, HandoverTimeout: time.Second})
		if c.self == "b" {
			if d.HasQuorum || len(d.Own) != 0 || len(d.Handover) != 0 {
				t.Fatalf("b hears nobody: quorum %v, owns %v, hands over %v", d.HasQuorum, d.Own, d.Handover)
			}
			continue
		}
		if !d.HasQuorum || d.Live != 2 {
			t.Fatalf("%s: quorum %v with %d live, want 2", c.self, d.HasQuorum, d.Live)
		}
		for _, v := range d.Own {
			owners[v] = append(owners[v], c.self)
		}
	}
	checkOneOwner(t, owners, vips, true)
}

// A member that joins memberlist again (a graceful restart's new process,
// or one memberlist had declared dead) counts from its first heartbeat:
// the silence of the process before it must not count it down the moment
// it joins (a restarted owner's VIP was taken by another host for ~200 ms
// before this).
func TestRejoinedPeerStartsAfresh(t *testing.T) {
	var conn net.PacketConn
	h := newHeartbeater("lb1", HeartbeatOptions{Interval: hbInterval, Multiplier: 3}, conn, func() [][]byte { return nil }, func() time.Time { return t0 }, func() {}, slog.New(slog.DiscardHandler))
	h.setTargets([]hbTarget{{Name: "lb2", Addr: netip.MustParseAddrPort("10.0.0.2:7947")}})
	for i := range 4 {
		h.live.accept("lb2", "lb1", uint64(i+1), t0.Add(ms(50*i)), nil)
	}
	late := t0.Add(time.Second)
	h.check(late, false)
	if v := h.last(); !slices.Equal(v.Silent, []string{"lb2"}) {
		t.Fatalf("lb2 silent for a second: verdict %+v, want it silent", v)
	}
	h.now = func() time.Time { return late }
	h.forgetPeer("lb2")
	if v := h.last(); len(v.Silent) != 0 || len(v.Unheard) != 0 {
		t.Fatalf("after lb2 joined again: verdict %+v, want it neither silent nor unheard", v)
	}
}

// A heartbeat says whether its sender's data path fails (extension 2),
// and the receiver keeps what each peer's last one said: the peers of a
// shared gateway's death learn of it within an interval, not a gossip
// round later (vip/datapath gives up only while a peer's path works).
func TestHeartbeatPathFailing(t *testing.T) {
	hb := heartbeat{Seq: 9, From: "lb2", To: "lb1", PathFailing: true, Versions: &ownerVersions{Sender: 3, Receiver: 4}}
	b, err := hb.marshal()
	if err != nil {
		t.Fatal(err)
	}
	got, err := unmarshalHeartbeat(b)
	if err != nil || !got.PathFailing || got.Versions == nil || *got.Versions != *hb.Versions {
		t.Fatalf("round trip: %+v, %v", got, err)
	}
	hb.PathFailing = false
	if b, _ = hb.marshal(); func() bool { g, _ := unmarshalHeartbeat(b); return g.PathFailing }() {
		t.Fatal("a heartbeat without the extension says the path fails")
	}

	keys := func() [][]byte { return [][]byte{testKey} }
	h := newHeartbeater("lb1", HeartbeatOptions{Interval: hbInterval, Multiplier: 3}, nil, keys, func() time.Time { return t0 }, func() {}, slog.New(slog.DiscardHandler))
	h.setTargets([]hbTarget{{Name: "lb2", Addr: netip.MustParseAddrPort("10.0.0.2:7947")}})
	s := sealer{keys: keys}
	for seq, failing := range []bool{true, false} {
		b, err := s.seal(heartbeat{Seq: uint64(seq + 1), From: "lb2", To: "lb1", PathFailing: failing})
		if err != nil {
			t.Fatal(err)
		}
		h.receive(b, t0)
		if got := h.peerPathFails("lb2"); got != failing {
			t.Fatalf("after a heartbeat saying %v: peerPathFails %v", failing, got)
		}
	}
}
