package repair

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/edgelb/edgelb/vip"
)

var (
	vip4  = netip.MustParseAddr("192.0.2.10")
	vip6  = netip.MustParseAddr("2001:db8::10")
	gw    = netip.MustParseAddr("192.0.2.1")
	cli   = netip.MustParseAddr("192.0.2.50")
	nb    = netip.MustParseAddr("192.0.2.60")
	off   = netip.MustParseAddr("198.51.100.7")
	macGW = net.HardwareAddr{2, 0, 0, 0, 0, 1}
	macC  = net.HardwareAddr{2, 0, 0, 0, 0, 0x50}
	macN  = net.HardwareAddr{2, 0, 0, 0, 0, 0x60}
	link  = vip.Link{Name: "eth0", Index: 2, HardwareAddr: net.HardwareAddr{2, 0, 0, 0, 0, 0xaa}, Up: true,
		Networks: []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24"), netip.MustParsePrefix("2001:db8::/64")}}
)

func addrs(ts []Target) []string {
	var out []string
	for _, t := range ts {
		out = append(out, t.Why+":"+t.Addr.String())
	}
	return out
}

func TestSelect(t *testing.T) {
	ll := netip.MustParseAddr("fe80::1")
	offGW := netip.MustParseAddr("203.0.113.1") // an onlink route's next hop
	for _, c := range []struct {
		name     string
		vip      netip.Addr
		gateways []netip.Addr
		neigh    map[netip.Addr]net.HardwareAddr
		clients  []netip.Addr
		max      int
		want     []string
	}{
		{name: "gateways, then connections, then the neighbour table, each once",
			vip: vip4, gateways: []netip.Addr{gw}, clients: []netip.Addr{nb, cli, cli},
			neigh: map[netip.Addr]net.HardwareAddr{gw: macGW, nb: macN, cli: macC},
			want:  []string{"gateway:192.0.2.1", "connection:192.0.2.50", "connection:192.0.2.60"}},
		{name: "only the VIP's family, on-link, not the VIP itself",
			vip: vip4, gateways: []netip.Addr{ll, offGW}, clients: []netip.Addr{off, vip4, netip.MustParseAddr("2001:db8::5")},
			neigh: map[netip.Addr]net.HardwareAddr{nb: macN, off: macC, netip.MustParseAddr("224.0.0.1"): macC},
			want:  []string{"gateway:203.0.113.1", "neighbour:192.0.2.60"}},
		{name: "IPv6: link-local neighbours are on-link",
			vip: vip6, gateways: []netip.Addr{ll, gw}, clients: []netip.Addr{netip.MustParseAddr("2001:db8::5"), netip.MustParseAddr("2001:db9::5")},
			neigh: map[netip.Addr]net.HardwareAddr{netip.MustParseAddr("fe80::9"): macN},
			want:  []string{"gateway:fe80::1", "connection:2001:db8::5", "neighbour:fe80::9"}},
		{name: "capped, gateways kept first",
			vip: vip4, gateways: []netip.Addr{gw}, clients: []netip.Addr{cli, nb},
			neigh: map[netip.Addr]net.HardwareAddr{netip.MustParseAddr("192.0.2.3"): macN}, max: 2,
			want: []string{"gateway:192.0.2.1", "connection:192.0.2.50"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			got := Select(c.vip, link, c.gateways, c.neigh, c.clients, c.max)
			if !slices.Equal(addrs(got), c.want) {
				t.Fatalf("Select = %v, want %v", addrs(got), c.want)
			}
			for _, tg := range got {
				if !slices.Equal(tg.MAC, c.neigh[tg.Addr]) {
					t.Errorf("%s: MAC %s, want the neighbour table's %s", tg.Addr, tg.MAC, c.neigh[tg.Addr])
				}
			}
		})
	}
}

func TestSelectCapsAtDefaultMax(t *testing.T) {
	neigh := map[netip.Addr]net.HardwareAddr{}
	for i := range 200 {
		neigh[netip.AddrFrom4([4]byte{192, 0, 2, byte(i + 1)})] = macN
	}
	if got := len(Select(vip4, link, nil, neigh, nil, 0)); got != DefaultMax {
		t.Fatalf("%d targets, want DefaultMax %d", got, DefaultMax)
	}
}

// sources are fixed lists.
type sources struct {
	gateways []netip.Addr
	neigh    map[netip.Addr]net.HardwareAddr
	clients  []netip.Addr
	err      error
}

func (s sources) Gateways(vip.Link) ([]netip.Addr, error) { return s.gateways, s.err }
func (s sources) Neighbours(vip.Link) (map[netip.Addr]net.HardwareAddr, error) {
	return s.neigh, s.err
}
func (s sources) Clients(netip.Addr) ([]netip.Addr, error) { return s.clients, s.err }

// lan is a fake link: it records what is sent when, on the fake clock,
// and answers the asks of the neighbours that answer from a given offset
// on (a host that is slow, or whose first frames are lost).
type lan struct {
	start   time.Time
	now     time.Time
	answers chan Answer
	// answerFrom: a target answers the asks sent this long after the
	// start or later; missing: never.
	answerFrom map[netip.Addr]time.Duration
	macs       map[netip.Addr]net.HardwareAddr
	mu         sync.Mutex // guards sent, read while a repair runs
	sent       []string   // "offset kind target to"
	closed     bool
}

// count is how many messages have been sent so far.
func (l *lan) count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.sent)
}

func (l *lan) Dial(vip.Link, netip.Addr) (Conn, error) { return l, nil }

func (l *lan) record(kind string, t Target) {
	to := "broadcast"
	if t.MAC != nil {
		to = t.MAC.String()
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.sent = append(l.sent, strings.Join([]string{l.now.Sub(l.start).String(), kind, t.Addr.String(), to}, " "))
}

func (l *lan) Tell(t Target) error { l.record("tell", t); return nil }

func (l *lan) Ask(t Target) error {
	l.record("ask", t)
	if from, ok := l.answerFrom[t.Addr]; ok && l.now.Sub(l.start) >= from {
		l.answers <- Answer{Addr: t.Addr, MAC: l.macs[t.Addr]}
	}
	return nil
}

// after is the fake clock's timer: it fires at once, the clock moved on
// by d; waits records the durations.
func (l *lan) after(waits *[]time.Duration) func(time.Duration) <-chan time.Time {
	return func(d time.Duration) <-chan time.Time {
		if waits != nil {
			*waits = append(*waits, d)
		}
		l.now = l.now.Add(d)
		c := make(chan time.Time, 1)
		c <- l.now
		return c
	}
}

func (l *lan) Answers() <-chan Answer { return l.answers }
func (l *lan) Close() error           { l.closed = true; return nil }

func (l *lan) sentTo(a netip.Addr) []string {
	var out []string
	for _, s := range l.sent {
		if strings.Fields(s)[2] == a.String() {
			out = append(out, s)
		}
	}
	return out
}

func TestRepairSchedule(t *testing.T) {
	l := &lan{start: time.Unix(1000, 0), now: time.Unix(1000, 0), answers: make(chan Answer, 16),
		// The gateway is not in the neighbour table and answers at once;
		// the neighbour answers only after the locktime; the client of
		// a synced connection never answers.
		answerFrom: map[netip.Addr]time.Duration{gw: 0, nb: 1100 * time.Millisecond},
		macs:       map[netip.Addr]net.HardwareAddr{gw: macGW, nb: macN}}
	var slept []time.Duration
	r := New(Options{
		Sources: sources{gateways: []netip.Addr{gw}, clients: []netip.Addr{cli},
			neigh: map[netip.Addr]net.HardwareAddr{cli: macC, nb: macN}},
		Dialer: l,
		Now:    func() time.Time { return l.now },
		After:  l.after(&slept),
	})
	res := r.Repair(context.Background(), link, vip4)

	if !slices.Equal(res.Repaired, []netip.Addr{gw, nb}) || !slices.Equal(res.NotConfirmed, []netip.Addr{cli}) {
		t.Fatalf("repaired %v, not confirmed %v; want [%s %s] and [%s]", res.Repaired, res.NotConfirmed, gw, nb, cli)
	}
	// The gateway's MAC was unknown: asked by broadcast, answered,
	// left alone.
	if got, want := l.sentTo(gw), []string{"0s ask 192.0.2.1 broadcast"}; !slices.Equal(got, want) {
		t.Errorf("to the gateway: %q, want %q", got, want)
	}
	// The others are told and asked at every offset until they answer:
	// past the 1 s locktime.
	var want []string
	for _, off := range []string{"0s", "250ms", "600ms", "1.1s", "2s"} {
		want = append(want, off+" tell 192.0.2.50 "+macC.String(), off+" ask 192.0.2.50 "+macC.String())
	}
	if got := l.sentTo(cli); !slices.Equal(got, want) {
		t.Errorf("to the silent client:\n%q\nwant\n%q", got, want)
	}
	if got := l.sentTo(nb); len(got) != 8 || got[len(got)-1] != "1.1s ask 192.0.2.60 "+macN.String() {
		t.Errorf("to the neighbour answering after the locktime: %q, want tell and ask up to 1.1s", got)
	}
	// Four waits between the five rounds, then the answer timeout.
	if want := []time.Duration{250 * time.Millisecond, 350 * time.Millisecond, 500 * time.Millisecond, 900 * time.Millisecond, DefaultTimeout}; !slices.Equal(slept, want) {
		t.Errorf("waits %v, want %v", slept, want)
	}
	if res.Sent != 1+10+8 || !l.closed {
		t.Errorf("sent %d frames, closed %v; want 19, closed", res.Sent, l.closed)
	}
	if s := r.Stats(); s != (Stats{Repairs: 1, Repaired: 2, NotConfirmed: 1}) {
		t.Errorf("stats %+v", s)
	}
}

func TestRepairStopsWhenAllAnswered(t *testing.T) {
	l := &lan{start: time.Unix(1000, 0), now: time.Unix(1000, 0), answers: make(chan Answer, 16),
		answerFrom: map[netip.Addr]time.Duration{gw: 0}, macs: map[netip.Addr]net.HardwareAddr{gw: macGW}}
	r := New(Options{Sources: sources{gateways: []netip.Addr{gw}}, Dialer: l,
		Now:   func() time.Time { return l.now },
		After: l.after(nil)})
	res := r.Repair(context.Background(), link, vip4)
	if len(l.sent) != 1 || res.Took != 0 || len(res.Repaired) != 1 {
		t.Fatalf("sent %q, took %s, repaired %v: want one ask, answered at once", l.sent, res.Took, res.Repaired)
	}
}

func TestRepairWithoutSourcesCountsAnError(t *testing.T) {
	l := &lan{answers: make(chan Answer)}
	r := New(Options{Sources: sources{err: errors.New("netlink: no such device")}, Dialer: l})
	res := r.Repair(context.Background(), link, vip4)
	if len(res.Targets) != 0 || len(l.sent) != 0 || r.Stats().Errors != 1 {
		t.Fatalf("targets %v, sent %q, stats %+v", res.Targets, l.sent, r.Stats())
	}
}

func TestParseConns(t *testing.T) {
	const conns = `Pro FromIP   FPrt ToIP     TPrt DestIP   DPrt State       Expires PEName PEData
TCP C0000232 D431 C000020A 0050 0A000105 7530 ESTABLISHED     897
TCP C633640A D432 C000020B 0050 0A000105 7530 ESTABLISHED     897
UDP C000023C 9C40 C000020A 0035 0A000106 0035 UDP             281
TCP 2001:0db8:0000:0000:0000:0000:0000:0005 C350 2001:0db8:0000:0000:0000:0000:0000:0010 0050 fd00:0000:0000:0000:0000:0000:0000:0001 1F90 ESTABLISHED     899
`
	got, err := parseConns(strings.NewReader(conns), vip4)
	if err != nil {
		t.Fatal(err)
	}
	if want := []netip.Addr{cli, netip.MustParseAddr("192.0.2.60")}; !slices.Equal(got, want) {
		t.Fatalf("clients of %s: %v, want %v", vip4, got, want)
	}
	got, _ = parseConns(strings.NewReader(conns), vip6)
	if want := []netip.Addr{netip.MustParseAddr("2001:db8::5")}; !slices.Equal(got, want) {
		t.Fatalf("clients of %s: %v, want %v", vip6, got, want)
	}
}

func TestReleaseStopsTheRepair(t *testing.T) {
	l := &lan{start: time.Now(), now: time.Now(), answers: make(chan Answer, 16)}
	r := New(Options{Sources: sources{gateways: []netip.Addr{gw}}, Dialer: l,
		Schedule: []time.Duration{0, time.Hour}, Now: func() time.Time { return l.now }})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- r.Run(ctx) }()

	// A takeover: the first round, then an hour's wait, released in it
	// (once the first round has sent its ask: a release before it would
	// rightly send nothing).
	r.Takeover(link, vip4)
	deadline := time.Now().Add(5 * time.Second)
	for r.Stats().Repairs == 0 && time.Now().Before(deadline) {
		if l.count() > 0 {
			r.Release(vip4)
		}
		time.Sleep(time.Millisecond)
	}
	cancel()
	<-done // every repair has ended
	s := r.Stats()
	if s.Repairs != 1 || s.NotConfirmed != 0 || !l.closed {
		t.Fatalf("stats %+v, closed %v: want one repair, stopped without counting its silent targets", s, l.closed)
	}
	if len(l.sent) != 1 {
		t.Fatalf("sent %q, want the first round's ask only", l.sent)
	}
}
