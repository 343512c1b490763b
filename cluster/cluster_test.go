package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/netip"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
)

var testKey = []byte("0123456789abcdef0123456789abcdef")

// vipList is a fixed VIPSource.
type vipList []netip.Addr

func (l vipList) VIPs() ([]netip.Addr, bool) { return l, true }
func (l vipList) Subscribe() <-chan struct{} {
	ch := make(chan struct{}, 1)
	ch <- struct{}{}
	return ch
}

// sim is a cluster of members on memberlist's in-memory network, each
// with a stand-in VIP manager that holds whatever it owns at once.
type sim struct {
	t       *testing.T
	net     *memberlist.MockNetwork
	store   vipList
	members []*simMember
	spare   map[string]*socketTransport
}

type simMember struct {
	c    *Cluster
	opts Options // to start it again as a new process
	addr string
	tr   *socketTransport
	// undrain stops the drain of a stopped member's transport.
	undrain chan struct{}
	cancel  context.CancelCauseFunc
	done    chan error
}

// drain stands in for a dead host on the in-memory network: memberlist's
// MockTransport delivers through unbuffered channels, so once a member has
// shut down, the others' probes and joins to it would block forever instead
// of timing out. Reading and dropping everything sent to it (closing
// streams) makes it look like a host that is gone.
func (m *simMember) drain(stop <-chan struct{}) {
	for {
		select {
		case <-stop:
			return
		case <-m.tr.PacketCh():
		case conn := <-m.tr.StreamCh():
			conn.Close()
		}
	}
}

// socketTransport is a MockTransport whose packets arrive as on a UDP
// socket: each is taken at once into a receive buffer, and dropped when
// the buffer is full. MockTransport alone hands a packet over through an
// unbuffered channel, so its sender waits for the receiver's packet loop;
// two members that acknowledge each other's pings at once (memberlist
// sends an ack from its packet loop) then wait for each other forever,
// and their probes and gossip stop with them.
type socketTransport struct {
	*memberlist.MockTransport
	packets chan *memberlist.Packet
	// While held, packets to this member wait in queue, in order, and
	// arrive when it is released: gossip late by as long (setHeld).
	mu    sync.Mutex
	held  bool
	queue []*memberlist.Packet
}

// setHeld holds the packets to this member (on) or delivers the held ones
// and stops holding (off). Streams (push/pull, join) are not held.
func (t *socketTransport) setHeld(on bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.held = on
	if on {
		return
	}
	for _, p := range t.queue {
		select {
		case t.packets <- p:
		default:
		}
	}
	t.queue = nil
}

// transport is a new member's transport on the sim's network; it lives
// until the test ends.
func (s *sim) transport(name string) *socketTransport {
	tr := &socketTransport{MockTransport: s.net.NewTransport(name), packets: make(chan *memberlist.Packet, 1024)}
	stop := make(chan struct{})
	s.t.Cleanup(func() { close(stop) })
	go func() {
		for {
			select {
			case <-stop:
				return
			case p := <-tr.MockTransport.PacketCh():
				tr.mu.Lock()
				if tr.held {
					tr.queue = append(tr.queue, p)
				} else {
					select {
					case tr.packets <- p:
					default: // the receive buffer is full
					}
				}
				tr.mu.Unlock()
			}
		}
	}()
	return tr
}

func (t *socketTransport) PacketCh() <-chan *memberlist.Packet { return t.packets }

func newSim(t *testing.T, n, quorum int, vips []netip.Addr) *sim {
	return newSimWith(t, n, quorum, vips, nil)
}

// newSimWith is newSim with every member's Options passed through opt.
func newSimWith(t *testing.T, n, quorum int, vips []netip.Addr, opt func(*Options)) *sim {
	return newSimSpares(t, n, quorum, vips, opt)
}

// newSimSpares is newSimWith with transports for more members, named
// spares, made before any member starts (s.spare): MockNetwork's
// NewTransport writes the map of addresses its transports read without a
// lock.
func newSimSpares(t *testing.T, n, quorum int, vips []netip.Addr, opt func(*Options), spares ...string) *sim {
	s := &sim{t: t, net: &memberlist.MockNetwork{}, store: vipList(vips), spare: map[string]*socketTransport{}}
	for _, name := range spares {
		s.spare[name] = s.transport(name)
	}
	var first string
	for i := range n {
		name := fmt.Sprintf("lb%d", i+1)
		tr := s.transport(name)
		ip, port, err := tr.FinalAdvertiseAddr("", 0)
		if err != nil {
			t.Fatal(err)
		}
		addr := fmt.Sprintf("%s:%d", ip, port)
		if first == "" {
			first = addr
		}
		opts := Options{
			Name: name, Join: []string{first}, SecretKey: testKey, Quorum: quorum,
			VIPs: s.store, Transport: tr, HandoverTimeout: 2 * time.Second,
			// Slower than the LAN defaults: the in-memory network shares
			// a busy test machine.
			ProbeInterval: time.Second, ProbeTimeout: 500 * time.Millisecond,
			Log: testLog(),
		}
		if opt != nil {
			opt(&opts)
		}
		c, err := New(opts)
		if err != nil {
			t.Fatal(err)
		}
		s.members = append(s.members, &simMember{c: c, opts: opts, addr: addr, tr: tr})
	}
	for _, m := range s.members {
		m.start()
	}
	t.Cleanup(func() {
		var wg sync.WaitGroup
		for _, m := range s.members {
			wg.Go(func() { m.stop() })
		}
		wg.Wait()
		for _, m := range s.members {
			if m.undrain != nil {
				close(m.undrain)
			}
		}
	})
	return s
}

func (m *simMember) start() {
	if m.undrain != nil {
		close(m.undrain)
		m.undrain = nil
	}
	ctx, cancel := context.WithCancelCause(context.Background())
	m.cancel, m.done = cancel, make(chan error, 1)
	c, done := m.c, m.done
	go func() { done <- c.Run(ctx) }()
	// The stand-in VIP manager: holds what it owns, releases at the end —
	// unless the process restarts gracefully: then it just stops and the
	// VIPs stay as they are.
	go func() {
		sub := c.Subscribe()
		for {
			select {
			case <-sub:
				if errors.Is(context.Cause(ctx), ErrRestart) {
					return
				}
				c.SetHeld(both(c.Owned()))
			case <-time.After(10 * time.Millisecond):
				if errors.Is(context.Cause(ctx), ErrRestart) {
					return
				}
				if ctx.Err() != nil {
					c.SetHeld(both(c.Owned()))
					select {
					case err := <-done:
						done <- err
						return
					default:
					}
				}
			}
		}
	}()
}

func both(own, handover []netip.Addr) []netip.Addr { return append(own, handover...) }

func own(c *Cluster) []netip.Addr {
	o, _ := c.Owned()
	return o
}

func (m *simMember) stop() error { return m.end(nil) }

// end cancels m's Run with cause and waits for it to return; from then on
// its transport drops what is sent to it, like a host that is gone.
func (m *simMember) end(cause error) error {
	if m.cancel == nil {
		return nil
	}
	m.cancel(cause)
	m.cancel = nil
	select {
	case err := <-m.done:
		m.undrain = make(chan struct{})
		go m.drain(m.undrain)
		return err
	case <-time.After(15 * time.Second):
		return fmt.Errorf("%s did not stop", m.c.opts.Name)
	}
}

// converged reports whether the running members each own their share:
// every VIP exactly once.
func (s *sim) converged(vips []netip.Addr, running []*simMember) (bool, string) {
	seen := map[netip.Addr]string{}
	for _, m := range running {
		if len(m.c.Members()) != len(running) {
			return false, fmt.Sprintf("%s sees %d members", m.c.opts.Name, len(m.c.Members()))
		}
		for _, v := range own(m.c) {
			if o, ok := seen[v]; ok {
				return false, fmt.Sprintf("%s owned by %s and %s", v, o, m.c.opts.Name)
			}
			seen[v] = m.c.opts.Name
		}
	}
	if len(seen) != len(vips) {
		return false, fmt.Sprintf("%d of %d VIPs owned", len(seen), len(vips))
	}
	return true, ""
}

func (s *sim) waitConverged(vips []netip.Addr, running []*simMember) {
	s.t.Helper()
	var why string
	// A dead member is declared after the suspicion timeout, up to
	// SuspicionMaxTimeoutMult (6) × the minimum without confirmations:
	// about 13 s here, more on a loaded machine.
	if !eventually(s.t, 90*time.Second, func() bool {
		var ok bool
		ok, why = s.converged(vips, running)
		return ok
	}) {
		s.t.Fatalf("not converged: %s", why)
	}
}

// pass runs one pass of m's ownership loop now (what its loop does on its
// next event or tick), so that a test sees the decision from the current
// view and clock without waiting for the loop. Passes are atomic under
// the Cluster's lock, so one that runs meanwhile changes nothing.
func (m *simMember) pass() { m.c.update() }

func TestMembershipOwnershipAndDrain(t *testing.T) {
	vips := vipRange(60)
	s := newSim(t, 5, 0, vips)
	s.waitConverged(vips, s.members)

	// Every member computes the same owners from its own view.
	want := Assign(vips, s.members[0].c.Members())
	for _, m := range s.members {
		for _, v := range own(m.c) {
			if want[v] != m.c.opts.Name {
				t.Fatalf("%s holds %s, which lb1 gives to %s", m.c.opts.Name, v, want[v])
			}
		}
	}

	for _, m := range s.members {
		if !m.c.HasQuorum() || len(m.c.Owners()) != len(vips) {
			t.Fatalf("%s: quorum %v, %d owners", m.c.opts.Name, m.c.HasQuorum(), len(m.c.Owners()))
		}
	}

	// Drain: the member gives up everything; the others take it over and
	// only its VIPs move.
	d := s.members[2]
	before := map[netip.Addr]string{}
	for _, m := range s.members {
		for _, v := range own(m.c) {
			before[v] = m.c.opts.Name
		}
	}
	// Asked by another member, over gossip, as a dashboard elsewhere does.
	if err := s.members[0].c.AskDrain(d.c.opts.Name, true); err != nil {
		t.Fatal(err)
	}
	if err := s.members[0].c.AskDrain("nobody", true); !errors.Is(err, ErrNoMember) {
		t.Errorf("AskDrain of an unknown member: %v, want ErrNoMember", err)
	}
	if !poll(t, func() bool { return len(both(d.c.Owned())) == 0 }) {
		t.Fatalf("drained %s still holds %v", d.c.opts.Name, both(d.c.Owned()))
	}
	others := slices.Concat(s.members[:2], s.members[3:])
	for _, m := range others {
		for _, v := range own(m.c) {
			if before[v] != m.c.opts.Name && before[v] != d.c.opts.Name {
				t.Errorf("%s moved from %s to %s", v, before[v], m.c.opts.Name)
			}
		}
	}
	s.waitOwnedBy(vips, others)
	if err := s.members[4].c.AskDrain(d.c.opts.Name, false); err != nil {
		t.Fatal(err)
	}
	s.waitConverged(vips, s.members)

	// A stop hands over, then leaves: the rest own everything. (Not the
	// member everyone joined through: with it stopped, a member sometimes
	// keeps seeing it for minutes — a known flake, seen before this test
	// changed, left for the membership work of the fault suite.)
	last := len(s.members) - 1
	if err := s.members[last].stop(); err != nil {
		t.Fatal(err)
	}
	s.waitConverged(vips, s.members[:last])
}

// waitOwnedBy waits until the given members together own every VIP once.
func (s *sim) waitOwnedBy(vips []netip.Addr, ms []*simMember) {
	s.t.Helper()
	if !poll(s.t, func() bool {
		n := 0
		for _, m := range ms {
			n += len(own(m.c))
		}
		return n == len(vips)
	}) {
		s.t.Fatal("the VIPs were not taken over")
	}
}

func TestNoQuorumOwnsNothing(t *testing.T) {
	vips := vipRange(10)
	clk := &clock{}
	s := newSimWith(t, 1, 2, vips, func(o *Options) { o.Now = clk.Now })
	m := s.members[0]
	if !poll(t, func() bool { return len(m.c.Members()) == 1 }) {
		t.Fatalf("sees %d members, want itself", len(m.c.Members()))
	}
	// Alone while two members are needed: it must not take any VIP, now
	// nor once its view is no longer stale (freshTimeout) or long after.
	for _, d := range []time.Duration{0, freshTimeout, time.Minute} {
		clk.Step(d)
		m.pass()
		if len(both(m.c.Owned())) != 0 || m.c.HasQuorum() {
			t.Fatalf("%s later: holds %v without a quorum (quorum %v)", d, both(m.c.Owned()), m.c.HasQuorum())
		}
	}
}

func TestUnhealthyMemberGivesUpAtOnce(t *testing.T) {
	vips := vipRange(30)
	s := newSim(t, 3, 0, vips)
	s.waitConverged(vips, s.members)
	m := s.members[1].c
	m.SetHealth("link", fmt.Errorf("down"))
	if m.Problem() != "link: down" {
		t.Fatalf("Problem() = %q", m.Problem())
	}
	// Giving up is immediate (the next pass of its loop): no handover
	// wait for an unhealthy host.
	s.members[1].pass()
	if held := both(m.Owned()); len(held) != 0 {
		t.Fatalf("unhealthy member holds %v after its next pass", held)
	}
	s.waitOwnedBy(vips, []*simMember{s.members[0], s.members[2]})
	m.SetHealth("link", nil)
	s.waitConverged(vips, s.members)
}

// A VIP one member refuses (its kernel would not add it) moves to another
// member; that member stays healthy and keeps all its other VIPs, and the
// refusal is gossiped so that every member agrees.
func TestRefusedVIPMovesAloneAndTheMemberStaysHealthy(t *testing.T) {
	vips := vipRange(30)
	s := newSim(t, 3, 0, vips)
	s.waitConverged(vips, s.members)
	m := s.members[1].c
	mine := own(m)
	if len(mine) < 2 {
		t.Fatalf("%s owns %v: the test needs two", m.opts.Name, mine)
	}
	bad := mine[0]
	m.SetRefused([]netip.Addr{bad})
	if !poll(t, func() bool {
		for _, o := range s.members {
			if o.c.Owners()[bad] == m.opts.Name || o.c.Owners()[bad] == "" {
				return false
			}
		}
		return true
	}) {
		t.Fatalf("%s refused by %s did not move in every member's view", bad, m.opts.Name)
	}
	s.waitConverged(vips, s.members)
	if got := own(m); !slices.Equal(got, mine[1:]) {
		t.Fatalf("%s owns %v after refusing %s, want %v", m.opts.Name, got, bad, mine[1:])
	}
	if p := m.Problem(); p != "" || !m.MayServe() {
		t.Fatalf("the refusing member is unhealthy: %q", p)
	}
	if !m.OwnedElsewhere(bad) || m.OwnedElsewhere(mine[1]) {
		t.Fatal("OwnedElsewhere does not follow the owners")
	}
}

func TestWrongKeyCannotJoin(t *testing.T) {
	vips := vipRange(5)
	s := newSimSpares(t, 2, 0, vips, nil, "intruder")
	s.waitConverged(vips, s.members)
	tr := s.spare["intruder"]
	refused := &logWatch{msg: "cannot reach peers, retrying", seen: make(chan struct{})}
	c, err := New(Options{Name: "intruder", Join: []string{s.members[0].addr}, SecretKey: []byte("another key, another key, 32 by!"),
		Quorum: 1, VIPs: s.store, Transport: tr, Log: slog.New(refused)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	defer func() { cancel(); <-done }()
	// The intruder's join reached lb1 and was refused: lb1 could not
	// decrypt it.
	select {
	case <-refused.seen:
	case <-time.After(45 * time.Second):
		t.Fatal("the intruder's join attempt did not fail")
	}
	for _, m := range s.members {
		if n := len(m.c.Members()); n != 2 {
			t.Fatalf("%s sees %d members with an intruder around", m.c.opts.Name, n)
		}
	}
	if n := len(c.Members()); n > 1 {
		t.Fatalf("the intruder sees %d members", n)
	}
}

// logWatch is a slog.Handler that closes seen at the first record whose
// message is msg.
type logWatch struct {
	msg  string
	once sync.Once
	seen chan struct{}
}

func (h *logWatch) Enabled(context.Context, slog.Level) bool { return true }
func (h *logWatch) WithAttrs([]slog.Attr) slog.Handler       { return h }
func (h *logWatch) WithGroup(string) slog.Handler            { return h }
func (h *logWatch) Handle(_ context.Context, r slog.Record) error {
	if r.Message == h.msg {
		h.once.Do(func() { close(h.seen) })
	}
	return nil
}

func TestNewRefusesUnencryptedUnlessInsecure(t *testing.T) {
	store := vipList(nil)
	if _, err := New(Options{Name: "a", VIPs: store}); err == nil {
		t.Fatal("no key and not insecure: accepted")
	}
	if _, err := New(Options{Name: "a", VIPs: store, Insecure: true}); err != nil {
		t.Fatal(err)
	}
	// A key memberlist cannot use is refused, never silently ignored
	// (which would gossip in the clear while the log says encrypted).
	if _, err := New(Options{Name: "a", VIPs: store, SecretKey: []byte("31 bytes, not 16, 24 or 32 !!!!")}); err == nil {
		t.Fatal("a 31-byte key: accepted")
	}
}

// testLog shows the members' logs with CLUSTER_LOG=1.
func testLog() *slog.Logger {
	if os.Getenv("CLUSTER_LOG") == "" {
		return nil
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

func poll(t *testing.T, cond func() bool) bool {
	t.Helper()
	// A deadline, not a wait: generous, because the in-memory cluster
	// runs on real timers on a shared test machine.
	return eventually(t, 45*time.Second, cond)
}

// eventually reports whether cond holds within the deadline. It checks
// every 10 ms: what it waits for comes from memberlist's real-time
// gossip, which has no event to wait on.
func eventually(t *testing.T, within time.Duration, cond func() bool) bool {
	t.Helper()
	deadline := time.After(within)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-deadline:
			return cond()
		case <-tick.C:
		}
	}
	return true
}

func TestGracefulStopDoesNotShrinkTheQuorum(t *testing.T) {
	// Three configured members: the quorum is 2 whoever stopped, so the
	// last one left after two graceful stops owns nothing (had stopped
	// members left the count, both sides of a partition could count a
	// quorum once they started again on one side).
	vips := vipRange(8)
	s := newSim(t, 3, 0, vips)
	s.waitConverged(vips, s.members)
	if err := s.members[2].stop(); err != nil {
		t.Fatal(err)
	}
	s.waitConverged(vips, s.members[:2])
	if err := s.members[1].stop(); err != nil {
		t.Fatal(err)
	}
	last := s.members[0].c
	if !poll(t, func() bool { return !last.HasQuorum() && len(own(last)) == 0 }) {
		t.Fatalf("the last member keeps a quorum (%v, need %d) and owns %v", last.HasQuorum(), last.Quorum(), own(last))
	}
}

func TestMembersDecideFromWhatIsGossiped(t *testing.T) {
	// lb1 has more IPv6 networks than fit in the 512 bytes of gossiped
	// metadata, the VIPs' network last. Its peers never learn that it is
	// on that network; lb1 must decide from the same view, or it and lb2
	// both own the VIPs.
	var vips []netip.Addr
	for i := range 10 {
		vips = append(vips, netip.MustParseAddr(fmt.Sprintf("2001:db8:ffff::%x", i+1)))
	}
	s := newSim(t, 2, 0, vips)
	vipNet := netip.MustParsePrefix("2001:db8:ffff::/64")
	var many []netip.Prefix
	for i := range 30 {
		many = append(many, netip.MustParsePrefix(fmt.Sprintf("2001:db8:%x::/64", i+1)))
	}
	s.members[0].c.SetNetworks(append(many, vipNet))
	s.members[1].c.SetNetworks([]netip.Prefix{vipNet})
	s.waitConverged(vips, s.members)
	a, b := s.members[0].c.Owners(), s.members[1].c.Owners()
	if !maps.Equal(a, b) {
		t.Fatalf("lb1 and lb2 disagree on the owners:\n%v\n%v", a, b)
	}
	if got := own(s.members[1].c); len(got) != len(vips) {
		t.Fatalf("lb2, the only member known to be on the VIPs' network, owns %d of %d", len(got), len(vips))
	}
}

func TestOwnersAnnounceAgainWhenAPeerLetsGo(t *testing.T) {
	// A member that lets go of VIPs (here a drain; also after a flap or
	// a claim from a partial view) may have announced some the others
	// own: their AnnounceEpoch changes so that they announce theirs again.
	vips := vipRange(12)
	s := newSim(t, 3, 0, vips)
	s.waitConverged(vips, s.members)
	before := []uint64{s.members[1].c.AnnounceEpoch(), s.members[2].c.AnnounceEpoch()}
	s.members[0].c.Drain()
	if !poll(t, func() bool { return len(both(s.members[0].c.Owned())) == 0 }) {
		t.Fatal("the drained member still holds VIPs")
	}
	if !poll(t, func() bool {
		return s.members[1].c.AnnounceEpoch() != before[0] && s.members[2].c.AnnounceEpoch() != before[1]
	}) {
		t.Fatal("the owners' AnnounceEpoch did not change after a peer let go of VIPs")
	}
	// Nothing changes without a reason once the handovers are done.
	if !poll(t, func() bool {
		for _, m := range s.members {
			if _, h := m.c.Owned(); len(h) > 0 {
				return false
			}
		}
		return true
	}) {
		t.Fatal("handovers did not finish")
	}
	// Once every member has heard every peer's last Gave, passes change
	// neither a Gave nor an AnnounceEpoch.
	if !poll(t, func() bool { return gaveKnown(s.members) }) {
		t.Fatal("the members did not learn each other's Gave")
	}
	epochs, gaves := map[string]uint64{}, map[string]uint32{}
	for _, m := range s.members {
		epochs[m.c.opts.Name], gaves[m.c.opts.Name] = m.c.AnnounceEpoch(), selfMember(m).Gave
	}
	for range 3 {
		for _, m := range s.members {
			m.pass()
		}
	}
	for _, m := range s.members {
		if m.c.AnnounceEpoch() != epochs[m.c.opts.Name] || selfMember(m).Gave != gaves[m.c.opts.Name] {
			t.Fatalf("%s: AnnounceEpoch %d→%d, Gave %d→%d while nobody lets go", m.c.opts.Name,
				epochs[m.c.opts.Name], m.c.AnnounceEpoch(), gaves[m.c.opts.Name], selfMember(m).Gave)
		}
	}
}

// gaveKnown reports whether each member sees every peer with the Gave
// that peer gossips.
func gaveKnown(ms []*simMember) bool {
	gave := map[string]uint32{}
	for _, m := range ms {
		gave[m.c.opts.Name] = selfMember(m).Gave
	}
	for _, m := range ms {
		for _, x := range m.c.Members() {
			if x.Gave != gave[x.Name] {
				return false
			}
		}
	}
	return true
}
