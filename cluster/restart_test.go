package cluster

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"
)

// clock is real time plus an offset that tests step forward, so that the
// restart hold can pass without waiting for it while memberlist keeps its
// own real timers.
type clock struct {
	mu     sync.Mutex
	offset time.Duration
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return time.Now().Add(c.offset)
}

func (c *clock) Step(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.offset += d
}

const testHold = 10 * time.Second

// newRestartSim is newSim with a steppable clock and restartHold 10 s.
func newRestartSim(t *testing.T, n int, vips []netip.Addr) (*sim, *clock) {
	return newRestartSimQuorum(t, n, 0, vips)
}

func newRestartSimQuorum(t *testing.T, n, quorum int, vips []netip.Addr) (*sim, *clock) {
	clk := &clock{}
	s := newSimWith(t, n, quorum, vips, func(o *Options) {
		o.Now = clk.Now
		o.RestartHold = testHold
	})
	return s, clk
}

// waitSettled waits until the members own every VIP once and none is
// still handing a VIP over.
func (s *sim) waitSettled(vips []netip.Addr, running []*simMember) {
	s.t.Helper()
	s.waitConverged(vips, running)
	if !poll(s.t, func() bool {
		for _, m := range running {
			if _, h := m.c.Owned(); len(h) != 0 {
				return false
			}
		}
		ok, _ := s.converged(vips, running)
		return ok
	}) {
		s.t.Fatal("handovers did not finish")
	}
}

// restart stops m for a graceful restart: Run must return nil through the
// restart path, leaving the VIPs it held (returned) where they are.
func (m *simMember) restart(t *testing.T) []netip.Addr {
	t.Helper()
	kept := both(m.c.Owned())
	start := time.Now()
	if err := m.end(ErrRestart); err != nil {
		t.Fatalf("restarting %s: %v", m.c.opts.Name, err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("%s took %s to leave for its restart", m.c.opts.Name, d)
	}
	if got := both(m.c.Owned()); !slices.Equal(got, kept) {
		t.Fatalf("%s gave up VIPs for a restart: held %v, now %v", m.c.opts.Name, kept, got)
	}
	return kept
}

// comeBack starts m again as a new process (a new Cluster with the same
// name and address) that adopts the VIPs kept for it; setup runs before
// its Run starts.
func (m *simMember) comeBack(t *testing.T, kept []netip.Addr, setup func(*Cluster)) {
	t.Helper()
	c, err := New(m.opts)
	if err != nil {
		t.Fatal(err)
	}
	if setup != nil {
		setup(c)
	}
	c.Adopt(kept)
	m.c = c
	m.start()
}

// watchOthers checks, until stop is called, that none of others holds any
// of vips (owned or handed over) and that each keeps its quorum. It
// returns the first violation.
func watchOthers(others []*simMember, vips []netip.Addr) (stop func() string) {
	done := make(chan struct{})
	result := make(chan string, 1)
	go func() {
		for {
			for _, m := range others {
				for _, v := range both(m.c.Owned()) {
					if slices.Contains(vips, v) {
						result <- fmt.Sprintf("%s holds %s of the restarting member", m.c.opts.Name, v)
						return
					}
				}
				if !m.c.HasQuorum() {
					result <- fmt.Sprintf("%s lost its quorum", m.c.opts.Name)
					return
				}
			}
			select {
			case <-done:
				result <- ""
				return
			case <-time.After(2 * time.Millisecond):
			}
		}
	}()
	return func() string {
		close(done)
		return <-result
	}
}

// absentRestarting reports whether m sees name as away for a restart.
func absentRestarting(m *simMember, name string) bool {
	for _, x := range m.c.Members() {
		if x.Name == name {
			return x.Absent && x.Restarting
		}
	}
	return false
}

func TestGracefulRestartKeepsVIPs(t *testing.T) {
	vips := vipRange(30)
	s, _ := newRestartSim(t, 3, vips)
	s.waitSettled(vips, s.members)
	// lb1's address is everyone's join address; restart another member.
	r, others := s.members[1], []*simMember{s.members[0], s.members[2]}
	mine := own(r.c)
	if len(mine) < 2 {
		t.Fatalf("%s owns %v; the test needs at least two VIPs", r.c.opts.Name, mine)
	}
	stop := watchOthers(others, mine)

	kept := r.restart(t)
	if !slices.Equal(kept, mine) {
		t.Fatalf("kept %v, want %v", kept, mine)
	}
	for _, m := range others {
		if !poll(t, func() bool { return absentRestarting(m, r.c.opts.Name) }) {
			t.Fatalf("%s does not hold %s as restarting: %+v", m.c.opts.Name, r.c.opts.Name, m.c.Members())
		}
		if q := m.c.Quorum(); q != 2 {
			t.Fatalf("%s: quorum %d, want still 2 of 3", m.c.opts.Name, q)
		}
	}
	// Away: the others' next passes take none of its VIPs (watchOthers).
	passes(others)

	// The new process adopts all but one (say its lifetime ran out) and
	// is not healthy yet (its dataplane is not programmed).
	lost, adopted := kept[0], kept[1:]
	r.comeBack(t, adopted, func(c *Cluster) { c.SetHealth("dataplane", errors.New("not programmed yet")) })
	if !r.c.Restarting() {
		t.Fatal("the new process is not in its start-up grace")
	}
	if !poll(t, func() bool { return r.c.HasQuorum() && slices.Equal(own(r.c), adopted) }) {
		t.Fatalf("new %s: quorum %v, owns %v, want the adopted %v", r.c.opts.Name, r.c.HasQuorum(), own(r.c), adopted)
	}
	for _, m := range others {
		if !poll(t, func() bool {
			for _, x := range m.c.Members() {
				if x.Name == r.c.opts.Name {
					return !x.Absent && x.Restarting && !x.Healthy
				}
			}
			return false
		}) {
			t.Fatalf("%s does not see %s back and restarting: %+v", m.c.opts.Name, r.c.opts.Name, m.c.Members())
		}
	}
	// Its next passes, once its VIP manager holds what it was given,
	// confirm no VIP while it has announced none.
	settle(t, r)
	if self := selfMember(r); self.Held != (Digest{}) {
		t.Fatalf("restarting %s gossips held %+v, want none confirmed", r.c.opts.Name, self.Held)
	}
	// It never gains a VIP it did not hold while restarting.
	if slices.Contains(both(r.c.Owned()), lost) {
		t.Fatalf("restarting %s took %s, which it did not adopt", r.c.opts.Name, lost)
	}
	if why := stop(); why != "" {
		t.Fatal(why)
	}

	// Programmed: the grace ends and the ordinary rules apply; it keeps
	// its VIPs, and takes the one it lost back.
	stop = watchOthers(others, adopted)
	r.c.SetHealth("dataplane", nil)
	if !poll(t, func() bool { return !r.c.Restarting() }) {
		t.Fatal("the start-up grace did not end")
	}
	s.waitConverged(vips, s.members)
	if got := own(r.c); !slices.Equal(got, mine) {
		t.Fatalf("%s owns %v after its restart, want %v", r.c.opts.Name, got, mine)
	}
	if !poll(t, func() bool { return selfMember(r).Held == DigestOf(mine) }) {
		t.Fatalf("%s gossips held %+v after its grace, want the digest of %v", r.c.opts.Name, selfMember(r).Held, mine)
	}
	if why := stop(); why != "" {
		t.Fatal(why)
	}
}

// passes runs a pass of each member's loop (simMember.pass).
func passes(ms []*simMember) {
	for _, m := range ms {
		m.pass()
	}
}

// settle runs a pass of m's loop, waits until its stand-in VIP manager
// holds what that pass decided, and runs another, so that what m gossips
// and owns next reflects what it holds.
func settle(t *testing.T, m *simMember) {
	t.Helper()
	m.pass()
	if !poll(t, func() bool {
		want := both(m.c.Owned())
		slices.SortFunc(want, netip.Addr.Compare)
		m.c.mu.Lock()
		defer m.c.mu.Unlock()
		return slices.Equal(m.c.held, want)
	}) {
		t.Fatalf("%s's VIP manager does not hold what it owns", m.c.opts.Name)
	}
	m.pass()
}

// selfMember is m's own entry in its view.
func selfMember(m *simMember) Member {
	for _, x := range m.c.Members() {
		if x.Name == m.c.opts.Name {
			return x
		}
	}
	return Member{}
}

func TestRestartThatNeverComesBackMovesVIPsAfterTheHold(t *testing.T) {
	vips := vipRange(30)
	s, clk := newRestartSim(t, 3, vips)
	s.waitSettled(vips, s.members)
	r, others := s.members[2], s.members[:2]
	mine := own(r.c)
	stop := watchOthers(others, mine)
	r.restart(t)
	for _, m := range others {
		if !poll(t, func() bool { return absentRestarting(m, r.c.opts.Name) }) {
			t.Fatalf("%s does not hold %s as restarting", m.c.opts.Name, r.c.opts.Name)
		}
	}
	passes(others)
	if why := stop(); why != "" {
		t.Fatal(why)
	}
	// Just before the hold ends, still held; after it, forgotten, and its
	// VIPs move as for a failure.
	clk.Step(testHold - 2*time.Second)
	passes(others)
	for _, m := range others {
		if !absentRestarting(m, r.c.opts.Name) {
			t.Fatalf("%s forgot %s before the hold ended", m.c.opts.Name, r.c.opts.Name)
		}
	}
	clk.Step(2 * time.Second)
	s.waitConverged(vips, others)
	for _, m := range others {
		if q := m.c.Quorum(); q != 2 {
			t.Fatalf("%s: quorum %d, want 2: a member that did not come back is not a graceful leave", m.c.opts.Name, q)
		}
	}
}

func TestStopStillHandsOver(t *testing.T) {
	vips := vipRange(30)
	s, _ := newRestartSim(t, 3, vips)
	s.waitConverged(vips, s.members)
	r, others := s.members[1], []*simMember{s.members[0], s.members[2]}
	start := time.Now()
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}
	if held := both(r.c.Owned()); len(held) != 0 {
		t.Fatalf("stopped %s still holds %v", r.c.opts.Name, held)
	}
	// Handed over before the leave, not held for a restart: well before
	// the restart hold, the others own everything.
	s.waitOwnedBy(vips, others)
	if d := time.Since(start); d > testHold/2 {
		t.Fatalf("the handover took %s", d)
	}
	for _, m := range others {
		if absentRestarting(m, r.c.opts.Name) {
			t.Fatalf("%s holds a stopped member as restarting", m.c.opts.Name)
		}
	}
}

func TestTwoHostRestartKeepsVIPs(t *testing.T) {
	// A two-host cluster that serves from one host sets quorum 1 (the
	// default, both hosts, would stop serving whenever one is away).
	vips := vipRange(20)
	s, _ := newRestartSimQuorum(t, 2, 1, vips)
	s.waitSettled(vips, s.members)
	survivor, r := s.members[0], s.members[1]
	mine, theirs := own(r.c), own(survivor.c)
	if len(mine) == 0 || len(theirs) == 0 {
		t.Fatalf("owners: %v and %v; the test needs both to own VIPs", mine, theirs)
	}
	stop := watchOthers([]*simMember{survivor}, mine)
	kept := r.restart(t)
	if !poll(t, func() bool { return absentRestarting(survivor, r.c.opts.Name) }) {
		t.Fatal("the survivor does not hold its peer as restarting")
	}
	// The survivor keeps its own VIPs, and does not take the peer's: the
	// restarting peer is still their candidate owner.
	settle(t, survivor)
	if got := own(survivor.c); !slices.Equal(got, theirs) {
		t.Fatalf("the survivor owns %v during the restart, want %v", got, theirs)
	}
	r.comeBack(t, kept, nil)
	s.waitConverged(vips, s.members)
	if !poll(t, func() bool { return !r.c.Restarting() }) {
		t.Fatal("the start-up grace did not end")
	}
	if got := own(r.c); !slices.Equal(got, mine) {
		t.Fatalf("%s owns %v after its restart, want %v", r.c.opts.Name, got, mine)
	}
	if why := stop(); why != "" {
		t.Fatal(why)
	}
}

func TestRestartMetaAndEligibility(t *testing.T) {
	m := Meta{Healthy: false, Leaving: true, Restarting: true, RestartHold: 10 * time.Second, Held: Digest{Count: 3, Sum: 42}}
	for i := range 40 {
		m.Networks = append(m.Networks, netip.MustParsePrefix(fmt.Sprintf("2001:db8:%x::/64", i)))
	}
	b := encodeMeta(m, 512)
	if len(b) == 0 || len(b) > 512 {
		t.Fatalf("encoded %d bytes", len(b))
	}
	got, err := decodeMeta(b)
	if err != nil {
		t.Fatal(err)
	}
	if !got.Restarting || !got.Leaving || got.RestartHold != 10*time.Second || got.Held != m.Held {
		t.Fatalf("decoded %+v", got)
	}
	for _, tc := range []struct {
		m    Meta
		want bool
	}{
		{Meta{Healthy: true}, true},
		{Meta{}, false},
		{Meta{Restarting: true}, true}, // its new process is not programmed yet
		{Meta{Restarting: true, Draining: true}, false},
		{Meta{Healthy: true, Draining: true}, false},
	} {
		if got := tc.m.Eligible(); got != tc.want {
			t.Errorf("%+v: eligible %v, want %v", tc.m, got, tc.want)
		}
	}
}
