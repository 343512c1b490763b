package datapath

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeNet answers probes for the targets in up, after delay.
type fakeNet struct {
	mu      sync.Mutex
	targets []netip.Addr
	tErr    error
	up      map[netip.Addr]bool
	delay   time.Duration
}

func (f *fakeNet) Targets() ([]netip.Addr, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.targets, f.tErr
}

func (f *fakeNet) Probe(ctx context.Context, t netip.Addr) error {
	f.mu.Lock()
	up, delay := f.up[t], f.delay
	f.mu.Unlock()
	if !up {
		<-ctx.Done()
		return errors.New("no answer")
	}
	select {
	case <-time.After(delay):
		return nil
	case <-ctx.Done():
		return errors.New("no answer")
	}
}

func (f *fakeNet) set(t netip.Addr, up bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.up[t] = up
}

// fakeCluster records what the checker reports.
type fakeCluster struct {
	peerServes bool
	health     error
	told       bool
	failing    bool
}

func (f *fakeCluster) PeerServes() bool { return f.peerServes }
func (f *fakeCluster) SetHealth(src string, err error) {
	if src != HealthSource {
		panic(src)
	}
	f.health, f.told = err, true
}
func (f *fakeCluster) SetDataPathFailing(b bool) { f.failing = b }

var (
	gw4 = netip.MustParseAddr("10.0.0.1")
	gw6 = netip.MustParseAddr("fe80::1")
)

func newChecker(n *fakeNet, c *fakeCluster) *Checker {
	return New(Options{Interface: "eth1", Prober: n, Targets: n, Peers: c, Reporter: c,
		Interval: 100 * time.Millisecond, Timeout: 30 * time.Millisecond, Fall: 3, Rise: 4})
}

func rounds(ch *Checker, n int) {
	for range n {
		ch.Round(context.Background())
	}
}

func TestFallThenGiveUpWhilePeerServes(t *testing.T) {
	n := &fakeNet{targets: []netip.Addr{gw4}, up: map[netip.Addr]bool{gw4: true}}
	c := &fakeCluster{peerServes: true}
	ch := newChecker(n, c)
	rounds(ch, 1)
	if !c.told || c.health != nil || c.failing {
		t.Fatalf("good path: health %v told %v failing %v", c.health, c.told, c.failing)
	}
	n.set(gw4, false)
	rounds(ch, 1)
	if c.health != nil || !c.failing {
		t.Fatalf("1 bad round of fall 3: health %v, gossiped failing %v: want healthy, gossiped failing", c.health, c.failing)
	}
	rounds(ch, 2)
	if c.health != nil {
		t.Fatalf("3 bad rounds: gave up at once: %v", c.health)
	}
	rounds(ch, 1)
	if c.health == nil || !c.failing {
		t.Fatalf("4 bad rounds, a peer serving at the last two: health %v, failing %v", c.health, c.failing)
	}
	for _, want := range []string{"eth1", "10.0.0.1", "no answer"} {
		if !strings.Contains(c.health.Error(), want) {
			t.Errorf("problem %q does not say %q", c.health, want)
		}
	}
	if s := ch.Status(); s.OK || !s.GaveUp || s.Problem == "" || s.BadRounds != 4 {
		t.Errorf("status %+v", s)
	}
}

// Recovery needs Rise good rounds in a row: a path that answers every
// other round stays failing.
func TestRiseHysteresis(t *testing.T) {
	n := &fakeNet{targets: []netip.Addr{gw4}, up: map[netip.Addr]bool{}}
	c := &fakeCluster{peerServes: true}
	ch := newChecker(n, c)
	rounds(ch, 4)
	if c.health == nil {
		t.Fatal("not failing after fall rounds")
	}
	for i := range 10 {
		n.set(gw4, i%2 == 0)
		rounds(ch, 1)
		if c.health == nil || !c.failing {
			t.Fatalf("flapping path recovered at round %d", i)
		}
	}
	n.set(gw4, true)
	rounds(ch, 3)
	if c.health == nil {
		t.Fatal("recovered after 3 good rounds of rise 4")
	}
	rounds(ch, 1)
	if c.health != nil || c.failing {
		t.Fatalf("not recovered after rise rounds: %v", c.health)
	}
	if s := ch.Status(); !s.OK || s.GaveUp || s.Problem != "" {
		t.Errorf("status %+v", s)
	}
}

// A host whose path fails keeps its VIPs while no other member has a
// working path (a shared gateway down), and gives them up once one has.
func TestKeepsVIPsWhileNoPeerServes(t *testing.T) {
	n := &fakeNet{targets: []netip.Addr{gw4}, up: map[netip.Addr]bool{}}
	c := &fakeCluster{}
	ch := newChecker(n, c)
	rounds(ch, 5)
	if !c.failing {
		t.Fatal("failing not gossiped")
	}
	if c.health != nil {
		t.Fatalf("gave up with no peer serving: %v", c.health)
	}
	if s := ch.Status(); s.OK || s.GaveUp {
		t.Errorf("status %+v", s)
	}
	c.peerServes = true
	rounds(ch, 2)
	if c.health == nil {
		t.Fatal("kept the VIPs once a peer serves")
	}
	c.peerServes = false
	rounds(ch, 1)
	if c.health != nil {
		t.Fatal("gave up while no peer serves any more")
	}
}

// A target that answers slowly but within the timeout is a good path;
// one slower than the timeout is not.
func TestSlowTargets(t *testing.T) {
	n := &fakeNet{targets: []netip.Addr{gw4}, up: map[netip.Addr]bool{gw4: true}, delay: 20 * time.Millisecond}
	c := &fakeCluster{peerServes: true}
	ch := newChecker(n, c)
	rounds(ch, 10)
	if c.health != nil || c.failing {
		t.Fatalf("slow target within the timeout: %v", c.health)
	}
	n.mu.Lock()
	n.delay = 50 * time.Millisecond
	n.mu.Unlock()
	rounds(ch, 4)
	if c.health == nil {
		t.Fatal("target slower than the timeout taken as good")
	}
}

// Any target answering makes a good round (two gateways, one down).
func TestAnyTargetAnswers(t *testing.T) {
	n := &fakeNet{targets: []netip.Addr{gw4, gw6}, up: map[netip.Addr]bool{gw6: true}}
	c := &fakeCluster{peerServes: true}
	ch := newChecker(n, c)
	rounds(ch, 5)
	if c.health != nil {
		t.Fatalf("one of two targets answers: %v", c.health)
	}
	n.set(gw6, false)
	rounds(ch, 4)
	if c.health == nil || !strings.Contains(c.health.Error(), "fe80::1") {
		t.Fatalf("no target answers: %v", c.health)
	}
}

// No target (no gateway, none configured) leaves link state alone to
// judge; failing to list the routes is a bad round.
func TestTargets(t *testing.T) {
	n := &fakeNet{up: map[netip.Addr]bool{}}
	c := &fakeCluster{peerServes: true}
	ch := newChecker(n, c)
	rounds(ch, 5)
	if c.health != nil || !ch.Status().OK {
		t.Fatalf("no targets: %v", c.health)
	}
	n.tErr = errors.New("netlink broke")
	rounds(ch, 4)
	if c.health == nil || !strings.Contains(c.health.Error(), "netlink broke") {
		t.Fatalf("targets error: %v", c.health)
	}
}

// One gateway fails for every host: the peers learn it a round or so
// later than this host. A peer seen serving at one round only (its news
// not in yet) does not make this host give its VIPs up.
func TestSharedGatewayRace(t *testing.T) {
	n := &fakeNet{targets: []netip.Addr{gw4}, up: map[netip.Addr]bool{}}
	c := &fakeCluster{peerServes: true}
	ch := newChecker(n, c)
	rounds(ch, 3)
	c.peerServes = false // the peers' failing path reached this host
	rounds(ch, 10)
	if c.health != nil {
		t.Fatalf("gave up on a peer seen serving once: %v", c.health)
	}
}
