package ipvs_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/edgelb/edgelb/lb"
	"github.com/edgelb/edgelb/lb/ipvs"
	"github.com/edgelb/edgelb/lb/ipvs/ipvstest"
)

var pool = netip.MustParsePrefix("192.0.2.0/24")

func owns(a netip.Addr) bool { return pool.Contains(a) }

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

type fakeHealth struct {
	mu   sync.Mutex
	down map[netip.AddrPort]bool
	c    chan struct{}
	ver  uint64
}

func (h *fakeHealth) Version() uint64 { h.mu.Lock(); defer h.mu.Unlock(); return h.ver }

func (h *fakeHealth) Up(_ *lb.VirtualService, b lb.Backend) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return !h.down[b.Addr]
}
func (h *fakeHealth) Changed() <-chan struct{} { return h.c }
func (h *fakeHealth) set(a netip.AddrPort, down bool) {
	h.mu.Lock()
	h.down[a] = down
	h.ver++
	h.mu.Unlock()
	select {
	case h.c <- struct{}{}:
	default:
	}
}

type fakeSNAT struct {
	mu   sync.Mutex
	vips []netip.Addr
	n    int
}

func (s *fakeSNAT) Sync(v []netip.Addr) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.vips, s.n = slices.Clone(v), s.n+1
	return nil
}

type env struct {
	fake  *ipvstest.Fake
	store *lb.Store
	clock *clock
	dp    *ipvs.Dataplane
	h     *fakeHealth
	snat  *fakeSNAT
	rec   *recorder
}

func newEnv(t *testing.T, fake *ipvstest.Fake) *env {
	t.Helper()
	if fake == nil {
		fake = ipvstest.New()
	}
	e := &env{fake: fake, store: lb.NewStore(), clock: &clock{t: time.Unix(1e9, 0)},
		h: &fakeHealth{down: map[netip.AddrPort]bool{}, c: make(chan struct{}, 1)}, snat: &fakeSNAT{},
		rec: newRecorder()}
	e.dp = ipvs.New(ipvs.Options{
		IPVS: fake, Store: e.store, Log: slog.New(slog.DiscardHandler), Owns: owns,
		Reporter: e.rec, OnSync: e.rec.onSync,
		Health: e.h, SNAT: e.snat, DrainTimeout: time.Minute, Now: e.clock.Now,
		MinSyncInterval: time.Millisecond, DrainPoll: 5 * time.Millisecond,
	})
	return e
}

func (e *env) sync(t *testing.T, full bool) {
	t.Helper()
	if err := e.dp.SyncOnce(full); err != nil {
		t.Fatalf("SyncOnce(full=%v): %v", full, err)
	}
}

func ap(s string) netip.AddrPort { return netip.MustParseAddrPort(s) }

// weightOf is the weight of the real server at addr in rss, -1 if absent.
func weightOf(rss []ipvs.RealServer, addr string) int {
	for _, r := range rss {
		if r.AddrPort() == ap(addr) {
			return r.Weight
		}
	}
	return -1
}

func svc(vip string, port uint16, proto lb.Protocol, backends ...string) lb.VirtualService {
	vs := lb.VirtualService{
		Key:       lb.Key{VIP: netip.MustParseAddr(vip), Port: port, Protocol: proto},
		Source:    lb.Source{Name: "t"},
		Scheduler: "rr",
		Method:    lb.NAT,
	}
	for _, b := range backends {
		vs.Backends = append(vs.Backends, lb.Backend{Addr: ap(b), Weight: 1})
	}
	return vs
}

func desired(vss ...lb.VirtualService) *lb.Desired {
	d := &lb.Desired{Services: vss}
	slices.SortFunc(d.Services, func(a, b lb.VirtualService) int { return a.Key.Compare(b.Key) })
	return d
}

// table renders the managed part of the fake as sorted lines.
func table(f *ipvstest.Fake, managed bool) []string {
	var out []string
	for id, e := range f.Snapshot() {
		if owns(id.Address) != managed {
			continue
		}
		line := fmt.Sprintf("%s %s/%d sched=%s t=%d:", id.Protocol, id.Address, id.Port, e.VS.Scheduler, e.VS.Timeout)
		rss := slices.Clone(e.RSs)
		slices.SortFunc(rss, func(a, b ipvs.RealServer) int { return a.AddrPort().Compare(b.AddrPort()) })
		for _, r := range rss {
			line += " " + r.String()
		}
		out = append(out, line)
	}
	slices.Sort(out)
	return out
}

// want renders a desired state as table would show it once converged.
func want(d *lb.Desired, down map[netip.AddrPort]bool) []string {
	var out []string
	for _, vs := range d.Services {
		sched := vs.Scheduler
		line := fmt.Sprintf("%s %s/%d sched=%s t=%d:", vs.Protocol, vs.VIP, vs.Port, sched, uint32(vs.Persistence/time.Second))
		m := map[lb.Method]string{lb.NAT: "masq", lb.DR: "route", lb.Tunnel: "tunnel"}[vs.Method]
		for _, b := range vs.Backends {
			if b.Terminating {
				continue
			}
			w := b.Weight
			if down[b.Addr] {
				w = 0
			}
			line += fmt.Sprintf(" %s w=%d %s", b.Addr, w, m)
		}
		out = append(out, line)
	}
	slices.Sort(out)
	return out
}

func assertTable(t *testing.T, f *ipvstest.Fake, d *lb.Desired, down map[netip.AddrPort]bool) {
	t.Helper()
	got, w := table(f, true), want(d, down)
	if !slices.Equal(got, w) {
		t.Fatalf("table differs from desired\n got: %s\nwant: %s", strings.Join(got, "\n      "), strings.Join(w, "\n      "))
	}
}

func foreign(f *ipvstest.Fake) {
	vs := ipvs.VirtualServer{Address: netip.MustParseAddr("10.9.9.9"), Protocol: "TCP", Port: 80, Scheduler: "wlc"}
	f.Services[vs.ID()] = &ipvstest.Entry{VS: vs, RSs: []ipvs.RealServer{
		{Address: netip.MustParseAddr("10.9.9.10"), Port: 80, Weight: 3, Method: ipvs.DirectRoute},
	}}
}

func TestSyncCreatesUpdatesDeletes(t *testing.T) {
	e := newEnv(t, nil)
	foreign(e.fake)
	before := table(e.fake, false)

	steps := []*lb.Desired{
		desired(svc("192.0.2.1", 80, lb.TCP, "10.0.0.1:30080", "10.0.0.2:30080", "10.0.0.3:30080"),
			svc("192.0.2.1", 53, lb.UDP, "10.0.0.1:30053")),
		desired(svc("192.0.2.1", 80, lb.TCP, "10.0.0.1:30080", "10.0.0.3:30080", "10.0.0.4:30080")),
		func() *lb.Desired {
			v := svc("192.0.2.1", 80, lb.TCP, "10.0.0.1:30080")
			v.Scheduler, v.Persistence, v.Method = "sh", 3*time.Hour, lb.DR
			v.Backends[0].Weight = 5
			return desired(v, svc("192.0.2.2", 443, lb.TCP, "10.0.0.9:443"))
		}(),
		desired(),
	}
	for i, d := range steps {
		for _, full := range []bool{false, true} {
			t.Run(fmt.Sprintf("step%d/full=%v", i, full), func(t *testing.T) {
				e.store.Set(d)
				e.sync(t, full)
				assertTable(t, e.fake, d, nil)
				if got := table(e.fake, false); !slices.Equal(got, before) {
					t.Fatalf("foreign entries changed: %v, want %v", got, before)
				}
			})
		}
	}
}

func TestRandomSequencesConverge(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	vips := []string{"192.0.2.1", "192.0.2.2", "192.0.2.3"}
	scheds := []string{"rr", "wrr", "lc", "sh", "mh"}
	methods := []lb.Method{lb.NAT, lb.DR, lb.Tunnel}
	randomDesired := func() *lb.Desired {
		var vss []lb.VirtualService
		seen := map[lb.Key]bool{}
		for range rng.IntN(6) {
			v := svc(vips[rng.IntN(len(vips))], uint16(80+rng.IntN(3)), []lb.Protocol{lb.TCP, lb.UDP}[rng.IntN(2)])
			if seen[v.Key] {
				continue
			}
			seen[v.Key] = true
			v.Scheduler = scheds[rng.IntN(len(scheds))]
			v.Method = methods[rng.IntN(len(methods))]
			if rng.IntN(3) == 0 {
				v.Persistence = time.Duration(1+rng.IntN(100)) * time.Second
			}
			for n := range 5 {
				if rng.IntN(2) == 0 {
					v.Backends = append(v.Backends, lb.Backend{Addr: ap(fmt.Sprintf("10.0.0.%d:30000", n+1)), Weight: int32(1 + rng.IntN(3))})
				}
			}
			vss = append(vss, v)
		}
		return desired(vss...)
	}
	for seq := range 50 {
		e := newEnv(t, nil)
		foreign(e.fake)
		before := table(e.fake, false)
		d := &lb.Desired{}
		for step := range 20 {
			prev := d
			d = randomDesired()
			if rng.IntN(2) == 0 {
				e.store.Set(d)
			} else {
				// The store is told which keys changed: the pass looks
				// at those only.
				e.store.SetChanged(d, diffKeys(prev, d))
			}
			full := rng.IntN(4) == 0
			if err := e.dp.SyncOnce(full); err != nil {
				t.Fatalf("seq %d step %d: %v", seq, step, err)
			}
			assertTable(t, e.fake, d, nil)
			if got := table(e.fake, false); !slices.Equal(got, before) {
				t.Fatalf("seq %d step %d: foreign entries changed", seq, step)
			}
		}
	}
}

// diffKeys lists the keys added, removed or changed from a to b.
func diffKeys(a, b *lb.Desired) []lb.Key {
	old := map[lb.Key]*lb.VirtualService{}
	for i := range a.Services {
		old[a.Services[i].Key] = &a.Services[i]
	}
	var out []lb.Key
	for i := range b.Services {
		vs := &b.Services[i]
		if o, ok := old[vs.Key]; !ok || !o.Equal(vs) {
			out = append(out, vs.Key)
		}
		delete(old, vs.Key)
	}
	for k := range old {
		out = append(out, k)
	}
	return out
}

// One Service's change, told as its keys (lb.Store.SetChanged), makes no
// kernel call at all for any other virtual service, not even a read; told
// as a whole new state (Set), it makes none either.
func TestOneServiceChangeLeavesTheOthersUntouched(t *testing.T) {
	for _, told := range []string{"keys", "everything"} {
		t.Run(told, func(t *testing.T) {
			e := newEnv(t, nil)
			var vss []lb.VirtualService
			for i := range 200 {
				vss = append(vss, svc(fmt.Sprintf("192.0.2.%d", i%100+1), uint16(80+i/100), lb.TCP, "10.0.0.1:30080", "10.0.0.2:30080"))
			}
			e.store.Set(desired(vss...))
			e.sync(t, true)
			e.fake.ResetCalls()

			vss2 := slices.Clone(vss)
			vss2[42].Backends = []lb.Backend{{Addr: ap("10.0.0.2:30080"), Weight: 1}, {Addr: ap("10.0.0.3:30080"), Weight: 1}}
			d := desired(vss2...)
			if told == "keys" {
				e.store.SetChanged(d, []lb.Key{vss2[42].Key})
			} else {
				e.store.Set(d)
			}
			e.sync(t, false)
			changed := ipvs.VirtualServer{Address: vss2[42].VIP, Protocol: "TCP", Port: vss2[42].Port}
			for id, calls := range e.fake.Touched {
				if id != changed.ID() {
					t.Errorf("%v was touched: %v", id, calls)
				}
			}
			if got := e.fake.Touched[changed.ID()]; !slices.Contains(got, "AddRealServer") || !slices.Contains(got, "DeleteRealServer") {
				t.Errorf("the changed service got %v, want a backend added and one without connections removed", got)
			}
			if e.fake.Calls["GetVirtualServers"] != 0 {
				t.Errorf("an incremental pass listed the table")
			}
			assertTable(t, e.fake, d, nil)
		})
	}
}

// A virtual service deleted behind edgelb's back (ipvsadm -D, another
// tool) is not noticed by incremental passes, which do not read the
// table; the periodic full pass puts it back with its backends, and
// touches nothing else.
func TestPeriodicFullPassRepairsADeletedService(t *testing.T) {
	f := ipvstest.New()
	store := lb.NewStore()
	rec := newRecorder()
	dp := ipvs.New(ipvs.Options{
		IPVS: f, Store: store, Log: slog.New(slog.DiscardHandler), Owns: owns, OnSync: rec.onSync,
		MinSyncInterval: time.Millisecond, DrainPoll: time.Hour, ResyncPeriod: 50 * time.Millisecond,
	})
	var vss []lb.VirtualService
	for i := range 20 {
		vss = append(vss, svc(fmt.Sprintf("192.0.2.%d", i+1), 80, lb.TCP, "10.0.0.1:30080", "10.0.0.2:30080"))
	}
	d := desired(vss...)
	store.Set(d)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- dp.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run returned %v", err)
		}
	}()
	waitFor(t, rec, "the table", func() bool { return slices.Equal(table(f, true), want(d, nil)) })

	gone := ipvs.VirtualServer{Address: vss[7].VIP, Protocol: "TCP", Port: 80}
	f.ResetCalls()
	if err := f.DeleteVirtualServer(&gone); err != nil {
		t.Fatal(err)
	}
	// Another Service changes meanwhile: its incremental pass leaves the
	// deleted one alone.
	vss2 := slices.Clone(vss)
	vss2[3].Backends = []lb.Backend{{Addr: ap("10.0.0.3:30080"), Weight: 1}}
	d2 := desired(vss2...)
	store.SetChanged(d2, []lb.Key{vss2[3].Key})
	waitFor(t, rec, "the service put back", func() bool { return slices.Equal(table(f, true), want(d2, nil)) })
	// The full pass read the others and changed none of them.
	other := ipvs.VirtualServer{Address: vss2[3].VIP, Protocol: "TCP", Port: 80}
	for id, calls := range f.TouchedCopy() {
		for _, c := range calls {
			if id != gone.ID() && id != other.ID() && c != "GetRealServers" {
				t.Errorf("%v was changed: %v", id, calls)
			}
		}
	}
}

func TestRestartChangesNothing(t *testing.T) {
	e := newEnv(t, nil)
	d := desired(svc("192.0.2.1", 80, lb.TCP, "10.0.0.1:30080", "10.0.0.2:30080"),
		svc("192.0.2.5", 53, lb.UDP, "10.0.0.1:30053"))
	e.store.Set(d)
	e.sync(t, true)

	// A new process: same kernel table, same desired state.
	e2 := newEnv(t, e.fake)
	e2.store.Set(d)
	e.fake.ResetCalls()
	e2.sync(t, true)
	if n := e.fake.Mutations(); n != 0 {
		t.Fatalf("restart made %d changes (%v), want none", n, e.fake.Calls)
	}
	assertTable(t, e.fake, d, nil)

	// Before the store is set (informers not synced) nothing is touched.
	e3 := newEnv(t, e.fake)
	e.fake.ResetCalls()
	e3.sync(t, true)
	if len(e.fake.Calls) != 0 {
		t.Fatalf("pass without desired state called %v", e.fake.Calls)
	}
}

func TestStaleManagedServiceDeletedOnFullPass(t *testing.T) {
	f := ipvstest.New()
	foreign(f)
	stale := ipvs.VirtualServer{Address: netip.MustParseAddr("192.0.2.77"), Protocol: "TCP", Port: 80, Scheduler: "rr"}
	f.Services[stale.ID()] = &ipvstest.Entry{VS: stale}
	e := newEnv(t, f)
	d := desired(svc("192.0.2.1", 80, lb.TCP, "10.0.0.1:1"))
	e.store.Set(d)
	e.sync(t, true)
	assertTable(t, f, d, nil)
	if len(table(f, false)) != 1 {
		t.Fatalf("foreign service lost: %v", table(f, false))
	}
}

func TestOneChangeIsProportional(t *testing.T) {
	e := newEnv(t, nil)
	var vss []lb.VirtualService
	for i := range 1000 {
		vss = append(vss, svc(fmt.Sprintf("192.0.2.%d", i%250+1), uint16(1000+i/250), lb.TCP, "10.0.0.1:1", "10.0.0.2:1"))
	}
	e.store.Set(desired(vss...))
	e.sync(t, true)
	e.fake.ResetCalls()

	vss2 := slices.Clone(vss)
	vss2[500].Backends = append(slices.Clone(vss2[500].Backends), lb.Backend{Addr: ap("10.0.0.3:1"), Weight: 1})
	d := desired(vss2...)
	e.store.Set(d)
	e.sync(t, false)
	if e.fake.Mutations() != 1 || e.fake.Calls["GetRealServers"] != 1 || e.fake.Calls["GetVirtualServers"] != 0 {
		t.Fatalf("one backend added cost %v, want one read and one add", e.fake.Calls)
	}
	assertTable(t, e.fake, d, nil)
}

func TestDraining(t *testing.T) {
	e := newEnv(t, nil)
	full := svc("192.0.2.1", 80, lb.TCP, "10.0.0.1:30080", "10.0.0.2:30080")
	e.store.Set(desired(full))
	e.sync(t, false)
	id := ipvs.ID{Address: full.VIP, Protocol: "TCP", Port: 80}
	gone := ipvs.RealServer{Address: netip.MustParseAddr("10.0.0.2"), Port: 30080}
	e.fake.SetActive(id, gone, 3)

	// The backend leaves while it has connections: weight 0, kept.
	e.store.Set(desired(svc("192.0.2.1", 80, lb.TCP, "10.0.0.1:30080")))
	e.sync(t, false)
	rss := e.fake.Snapshot()[id].RSs
	if len(rss) != 2 || weightOf(rss, "10.0.0.2:30080") != 0 {
		t.Fatalf("leaving backend not drained: %v", rss)
	}
	if st := e.dp.Status(); st.Draining != 1 {
		t.Fatalf("status draining = %d, want 1", st.Draining)
	}
	// Still busy: kept.
	e.clock.Add(30 * time.Second)
	e.sync(t, false)
	if n := len(e.fake.Snapshot()[id].RSs); n != 2 {
		t.Fatalf("busy draining backend deleted early (%d left)", n)
	}
	// Idle: deleted on the next pass.
	e.fake.SetActive(id, gone, 0)
	e.sync(t, false)
	if n := len(e.fake.Snapshot()[id].RSs); n != 1 {
		t.Fatalf("idle draining backend kept (%d left)", n)
	}

	// Grace period: a backend that stays busy is deleted after DrainTimeout.
	e.store.Set(desired(full))
	e.sync(t, false)
	e.fake.SetActive(id, gone, 7)
	e.store.Set(desired(svc("192.0.2.1", 80, lb.TCP, "10.0.0.1:30080")))
	e.sync(t, false)
	e.clock.Add(59 * time.Second)
	e.sync(t, false)
	if n := len(e.fake.Snapshot()[id].RSs); n != 2 {
		t.Fatalf("deleted before the drain timeout (%d left)", n)
	}
	e.clock.Add(2 * time.Second)
	e.sync(t, false)
	if n := len(e.fake.Snapshot()[id].RSs); n != 1 {
		t.Fatalf("kept after the drain timeout (%d left)", n)
	}
}

// A leaving backend is deleted only once it has no connections at all —
// inactive ones (FIN_WAIT, TIME_WAIT, UDP) still map packets to it — or
// after DrainTimeout.
func TestDrainWaitsForInactiveConnections(t *testing.T) {
	for _, tc := range []struct {
		name             string
		active, inactive int
		after            time.Duration
		deleted          bool
	}{
		{"idle", 0, 0, 0, true},
		{"active only", 2, 0, 0, false},
		{"inactive only", 0, 3, 0, false},
		{"both", 1, 3, 0, false},
		{"inactive at the drain timeout", 0, 3, time.Minute, true},
		{"active at the drain timeout", 4, 0, time.Minute, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, nil)
			e.store.Set(desired(svc("192.0.2.1", 80, lb.TCP, "10.0.0.1:30080", "10.0.0.2:30080")))
			e.sync(t, false)
			id := ipvs.ID{Address: netip.MustParseAddr("192.0.2.1"), Protocol: "TCP", Port: 80}
			gone := ipvs.RealServer{Address: netip.MustParseAddr("10.0.0.2"), Port: 30080}
			e.fake.SetConns(id, gone, 5, 0) // busy when it starts leaving
			e.store.Set(desired(svc("192.0.2.1", 80, lb.TCP, "10.0.0.1:30080")))
			e.sync(t, false)
			e.fake.SetConns(id, gone, tc.active, tc.inactive)
			e.clock.Add(tc.after)
			e.sync(t, false)
			rss := e.fake.Snapshot()[id].RSs
			if deleted := len(rss) == 1; deleted != tc.deleted {
				t.Fatalf("%d active, %d inactive, %s into the drain: deleted %v, want %v (%v)", tc.active, tc.inactive, tc.after, deleted, tc.deleted, rss)
			}
			if w := weightOf(rss, "10.0.0.2:30080"); !tc.deleted && w != 0 {
				t.Fatalf("draining backend has weight %d", w)
			}
		})
	}
}

// A backend an administrator disabled leaves the table at once, busy or
// not (disable: out of the table; drain is the gentle way out).
func TestDisabledBackendLeavesAtOnce(t *testing.T) {
	e := newEnv(t, nil)
	e.store.Set(desired(svc("192.0.2.1", 80, lb.TCP, "10.0.0.1:30080", "10.0.0.2:30080")))
	e.sync(t, false)
	id := ipvs.ID{Address: netip.MustParseAddr("192.0.2.1"), Protocol: "TCP", Port: 80}
	gone := ipvs.RealServer{Address: netip.MustParseAddr("10.0.0.2"), Port: 30080}
	e.fake.SetConns(id, gone, 5, 3)
	v := svc("192.0.2.1", 80, lb.TCP, "10.0.0.1:30080")
	v.Disabled = []netip.AddrPort{netip.MustParseAddrPort("10.0.0.2:30080")}
	e.store.Set(desired(v))
	e.sync(t, false)
	if rss := e.fake.Snapshot()[id].RSs; len(rss) != 1 {
		t.Fatalf("a disabled backend with connections is still in the table: %v", rss)
	}
}

func TestTerminatingEndpointDrains(t *testing.T) {
	e := newEnv(t, nil)
	v := svc("192.0.2.1", 80, lb.TCP, "10.1.0.1:8080", "10.1.0.2:8080")
	e.store.Set(desired(v))
	e.sync(t, false)
	id := ipvs.ID{Address: v.VIP, Protocol: "TCP", Port: 80}
	e.fake.SetActive(id, ipvs.RealServer{Address: netip.MustParseAddr("10.1.0.2"), Port: 8080}, 1)

	term := svc("192.0.2.1", 80, lb.TCP, "10.1.0.1:8080", "10.1.0.2:8080")
	term.Backends[1].Weight, term.Backends[1].Terminating = 0, true
	e.store.Set(desired(term))
	e.sync(t, false)
	rss := e.fake.Snapshot()[id].RSs
	if len(rss) != 2 || weightOf(rss, "10.1.0.2:8080") != 0 {
		t.Fatalf("terminating endpoint: %v, want kept at weight 0", rss)
	}
	e.fake.SetActive(id, ipvs.RealServer{Address: netip.MustParseAddr("10.1.0.2"), Port: 8080}, 0)
	e.sync(t, false)
	if rss := e.fake.Snapshot()[id].RSs; len(rss) != 1 {
		t.Fatalf("idle terminating endpoint kept: %v", rss)
	}
	// And it is not added back while it is still terminating.
	e.sync(t, true)
	if rss := e.fake.Snapshot()[id].RSs; len(rss) != 1 {
		t.Fatalf("terminating endpoint re-added: %v", rss)
	}
}

func TestHealthSetsWeightZero(t *testing.T) {
	e := newEnv(t, nil)
	d := desired(svc("192.0.2.1", 80, lb.TCP, "10.0.0.1:30080", "10.0.0.2:30080"))
	e.store.Set(d)
	e.sync(t, false)
	e.h.set(ap("10.0.0.2:30080"), true)
	e.sync(t, false)
	assertTable(t, e.fake, d, map[netip.AddrPort]bool{ap("10.0.0.2:30080"): true})
	e.h.set(ap("10.0.0.2:30080"), false)
	e.sync(t, false)
	assertTable(t, e.fake, d, nil)
}

func TestSNATFollowsNATVIPs(t *testing.T) {
	e := newEnv(t, nil)
	dr := svc("192.0.2.2", 80, lb.TCP, "10.0.0.1:80")
	dr.Method = lb.DR
	e.store.Set(desired(svc("192.0.2.1", 80, lb.TCP, "10.0.0.1:1"), svc("192.0.2.1", 53, lb.UDP, "10.0.0.1:1"), dr))
	e.sync(t, false)
	if want := []netip.Addr{netip.MustParseAddr("192.0.2.1")}; !slices.Equal(e.snat.vips, want) {
		t.Fatalf("SNAT VIPs = %v, want %v", e.snat.vips, want)
	}
	n := e.snat.n
	e.sync(t, false)
	if e.snat.n != n {
		t.Fatalf("SNAT resynced without a change")
	}
}

func TestKernelErrors(t *testing.T) {
	e := newEnv(t, nil)
	fail := ""
	e.fake.Fail = func(m string) error {
		if m == fail {
			return errors.New("boom")
		}
		return nil
	}
	e.store.Set(desired(svc("192.0.2.1", 80, lb.TCP, "10.0.0.1:1")))

	// A service that cannot be programmed is retried, and reported, but
	// does not make the host unhealthy (every host would fail alike).
	fail = "AddVirtualServer"
	if err := e.dp.SyncOnce(true); err == nil {
		t.Fatal("SyncOnce succeeded with a failing kernel")
	}
	if err := e.dp.Healthy(); err != nil {
		t.Fatalf("Healthy() = %v after a per-service error", err)
	}
	if st := e.dp.Status(); !strings.Contains(st.LastError, "boom") {
		t.Fatalf("Status().LastError = %q", st.LastError)
	}

	// A table that cannot be read makes the host unhealthy.
	fail = "GetVirtualServers"
	if err := e.dp.SyncOnce(true); err == nil {
		t.Fatal("SyncOnce succeeded with an unreadable table")
	}
	if err := e.dp.Healthy(); err == nil || !strings.Contains(err.Error(), "boom") {
		t.Fatalf("Healthy() = %v, want the kernel error", err)
	}
	fail = ""
	e.sync(t, true)
	if err := e.dp.Healthy(); err != nil {
		t.Fatalf("Healthy() after recovery = %v", err)
	}
	assertTable(t, e.fake, e.store.Load(), nil)
}

// A virtual service the kernel refuses costs that virtual service only:
// the others are programmed, the host stays healthy, Failures names it
// with why until a pass programs it, incremental or full.
func TestRefusedVirtualServiceIsReportedAlone(t *testing.T) {
	for _, full := range []bool{false, true} {
		t.Run(fmt.Sprintf("full=%v", full), func(t *testing.T) {
			e := newEnv(t, nil)
			good := svc("192.0.2.1", 80, lb.TCP, "10.0.0.1:1")
			e.store.Set(desired(good))
			e.sync(t, true)
			var fail bool
			e.fake.Fail = func(m string) error {
				if fail && m == "AddVirtualServer" {
					return errors.New("scheduler module missing")
				}
				return nil
			}
			fail = true
			bad := svc("192.0.2.2", 443, lb.TCP, "10.0.0.1:2")
			e.store.Set(desired(good, bad))
			if err := e.dp.SyncOnce(full); err == nil || !strings.Contains(err.Error(), bad.Key.String()) {
				t.Fatalf("SyncOnce = %v, want the refused service named", err)
			}
			if err := e.dp.Healthy(); err != nil {
				t.Fatalf("unhealthy for one virtual service: %v", err)
			}
			if f := e.dp.Failures(); len(f) != 1 || !strings.Contains(f[bad.Key], "scheduler module missing") {
				t.Fatalf("Failures() = %v", f)
			}
			if table(e.fake, true)[0] != want(desired(good), nil)[0] {
				t.Fatalf("the good service is not programmed: %v", table(e.fake, true))
			}
			fail = false
			e.sync(t, full)
			if f := e.dp.Failures(); len(f) != 0 {
				t.Fatalf("Failures() = %v after the service was programmed", f)
			}
			assertTable(t, e.fake, e.store.Load(), nil)
			// A failing service that is no longer wanted is forgotten.
			fail = true
			e.store.Set(desired(good, svc("192.0.2.3", 80, lb.TCP, "10.0.0.1:3")))
			e.dp.SyncOnce(full)
			fail = false
			e.store.Set(desired(good))
			e.sync(t, full)
			if f := e.dp.Failures(); len(f) != 0 {
				t.Fatalf("Failures() = %v for a service no longer wanted", f)
			}
		})
	}
}

func TestRunReconcilesOnEvents(t *testing.T) {
	e := newEnv(t, nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- e.dp.Run(ctx) }()

	d := desired(svc("192.0.2.1", 80, lb.TCP, "10.0.0.1:30080", "10.0.0.2:30080"))
	e.store.Set(d)
	waitFor(t, e.rec, "the service", func() bool { return slices.Equal(table(e.fake, true), want(d, nil)) })
	e.h.set(ap("10.0.0.1:30080"), true)
	down := map[netip.AddrPort]bool{ap("10.0.0.1:30080"): true}
	waitFor(t, e.rec, "health to take effect", func() bool { return slices.Equal(table(e.fake, true), want(d, down)) })
	if err := e.dp.Healthy(); err != nil {
		t.Fatalf("Healthy() = %v", err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run returned %v", err)
	}
	// Stopping leaves the table as it is.
	if !slices.Equal(table(e.fake, true), want(d, down)) {
		t.Fatal("stopping changed the table")
	}
}

func TestRunWithoutIPVSIsUnhealthyNotFatal(t *testing.T) {
	store := lb.NewStore()
	rec := newRecorder()
	dp := ipvs.New(ipvs.Options{
		IPVS: ipvstest.New(), Store: store, Log: slog.New(slog.DiscardHandler), Reporter: rec,
		Prepare:      func() error { return ipvs.ErrNoIPVS },
		PrepareRetry: time.Millisecond,
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- dp.Run(ctx) }()
	waitFor(t, rec, "unhealthy status", func() bool {
		err := dp.Healthy()
		return err != nil && strings.Contains(err.Error(), "no IPVS")
	})
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run returned %v, want nil", err)
	}
}

func TestStatsOnlyManaged(t *testing.T) {
	e := newEnv(t, nil)
	foreign(e.fake)
	e.store.Set(desired(svc("192.0.2.1", 80, lb.TCP, "10.0.0.2:1", "10.0.0.1:1")))
	e.sync(t, true)
	st, err := e.dp.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if len(st) != 1 || st[0].Key.Port != 80 || len(st[0].Backends) != 2 || st[0].Backends[0].Addr != ap("10.0.0.1:1") {
		t.Fatalf("Stats() = %+v", st)
	}
}

func TestHealthSharedBackend(t *testing.T) {
	e := newEnv(t, nil)
	sticky := svc("192.0.2.2", 80, lb.TCP, "10.0.0.1:30080", "10.0.0.2:30080")
	sticky.Persistence = time.Minute
	d := desired(svc("192.0.2.1", 80, lb.TCP, "10.0.0.1:30080", "10.0.0.2:30080"), sticky,
		svc("192.0.2.1", 53, lb.UDP, "10.0.0.1:30053", "10.0.0.2:30053"))
	e.store.Set(d)
	e.sync(t, true)
	e.h.set(ap("10.0.0.2:30080"), true)
	e.sync(t, false)
	assertTable(t, e.fake, d, map[netip.AddrPort]bool{ap("10.0.0.2:30080"): true})
}

// A virtual service deleted between the listing and the read of its real
// servers (the kernel answers ENOENT) is left out; the rest is read.
func TestStatsSkipsAVanishingService(t *testing.T) {
	e := newEnv(t, nil)
	stays, goes := svc("192.0.2.1", 80, lb.TCP, "10.0.0.1:1"), svc("192.0.2.2", 80, lb.TCP, "10.0.0.2:1")
	e.store.Set(desired(stays, goes))
	e.sync(t, true)
	e.fake.AfterList = func() {
		e.fake.DeleteVirtualServer(&ipvs.VirtualServer{Address: goes.VIP, Protocol: "TCP", Port: 80})
	}
	st, err := e.dp.Stats()
	if err != nil {
		t.Fatalf("Stats() failed for a service that vanished mid-read: %v", err)
	}
	if len(st) != 1 || st[0].Key != stays.Key || len(st[0].Backends) != 1 {
		t.Fatalf("Stats() = %+v, want %s alone", st, stays.Key)
	}
}

// Stats reads the kernel at most once per StatsInterval, however many
// readers ask, and serves the copy it read in between.
func TestStatsReadTheKernelOncePerInterval(t *testing.T) {
	e := newEnv(t, nil)
	e.store.Set(desired(svc("192.0.2.1", 80, lb.TCP, "10.0.0.1:1")))
	e.sync(t, true)
	e.fake.ResetCalls()
	read := func() []ipvs.ServiceStats {
		t.Helper()
		var wg sync.WaitGroup
		res := make([][]ipvs.ServiceStats, 8)
		for i := range res {
			wg.Add(1)
			go func() {
				defer wg.Done()
				st, err := e.dp.Stats()
				if err != nil {
					t.Error(err)
				}
				res[i] = st
			}()
		}
		wg.Wait()
		return res[0]
	}
	read()
	read()
	if n := e.fake.Calls["GetVirtualServers"]; n != 1 {
		t.Fatalf("16 reads within one interval listed the table %d times, want once", n)
	}
	id := ipvs.ID{Address: netip.MustParseAddr("192.0.2.1"), Protocol: "TCP", Port: 80}
	e.fake.SetActive(id, ipvs.RealServer{Address: netip.MustParseAddr("10.0.0.1"), Port: 1}, 5)
	if st := read(); st[0].Backends[0].ActiveConns != 0 {
		t.Fatal("a read within the interval went to the kernel")
	}
	e.clock.Add(ipvs.DefaultStatsInterval)
	if st := read(); st[0].Backends[0].ActiveConns != 5 {
		t.Fatalf("not read again after the interval: %+v", st)
	}
	if n := e.fake.Calls["GetVirtualServers"]; n != 2 {
		t.Fatalf("the table was listed %d times over two intervals, want twice", n)
	}
}

// max-connections-per-backend is each real server's upper threshold, set
// on a pass and changed in place by the next ones (full or incremental).
func TestMaxConnsIsTheUpperThreshold(t *testing.T) {
	for _, full := range []bool{true, false} {
		e := newEnv(t, nil)
		vs := svc("192.0.2.1", 80, lb.TCP, "10.0.0.1:80", "10.0.0.2:80")
		thresholds := func() []uint32 {
			var out []uint32
			for _, en := range e.fake.Snapshot() {
				for _, r := range en.RSs {
					out = append(out, r.UpperThreshold)
				}
			}
			return out
		}
		for _, limit := range []uint32{100, 250, 0} {
			vs.MaxConns = limit
			e.store.Set(desired(vs))
			e.sync(t, full)
			if got := thresholds(); !slices.Equal(got, []uint32{limit, limit}) {
				t.Errorf("full=%v limit %d: real servers' thresholds %v", full, limit, got)
			}
		}
	}
}

// An mh virtual service hashes the source port too and falls back past an
// unavailable backend; a service without a scheduler gets mh; another
// scheduler gets no flags, and a change of scheduler updates them.
func TestMaglevFlags(t *testing.T) {
	e := newEnv(t, nil)
	mh := svc("10.0.0.1", 80, lb.TCP, "10.1.0.1:80")
	mh.Scheduler = "mh"
	none := svc("10.0.0.2", 80, lb.TCP, "10.1.0.1:80")
	none.Scheduler = ""
	rr := svc("10.0.0.3", 80, lb.TCP, "10.1.0.1:80")
	e.store.Set(desired(mh, none, rr))
	e.sync(t, true)
	flags := func() map[string]string {
		vss, err := e.fake.GetVirtualServers()
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]string{}
		for _, v := range vss {
			out[v.Address.String()] = fmt.Sprintf("%s %#x", v.Scheduler, uint32(v.SchedFlags))
		}
		return out
	}
	want := map[string]string{"10.0.0.1": "mh 0x18", "10.0.0.2": "mh 0x18", "10.0.0.3": "rr 0x0"}
	if got := flags(); !maps.Equal(got, want) {
		t.Errorf("schedulers and flags = %v, want %v", got, want)
	}
	mh.Scheduler, rr.Scheduler = "rr", "mh"
	e.store.Set(desired(mh, none, rr))
	e.sync(t, false)
	want = map[string]string{"10.0.0.1": "rr 0x0", "10.0.0.2": "mh 0x18", "10.0.0.3": "mh 0x18"}
	if got := flags(); !maps.Equal(got, want) {
		t.Errorf("after the change: %v, want %v", got, want)
	}
}

// Two hosts that added the backends of an mh service in different orders
// (one restarted since) end with one order of destinations, which the
// kernel's Maglev table depends on; weight-0 destinations do not count.
func TestMaglevOrderIsTheSameOnEveryHost(t *testing.T) {
	mh := func(backends ...string) lb.VirtualService {
		v := svc("192.0.2.1", 80, lb.TCP, backends...)
		v.Scheduler = "mh"
		return v
	}
	order := func(e *env) []string {
		var out []string
		for _, r := range e.fake.Snapshot()[ipvs.ID{Address: netip.MustParseAddr("192.0.2.1"), Protocol: "TCP", Port: 80}].RSs {
			if r.Weight > 0 {
				out = append(out, r.AddrPort().String())
			}
		}
		return out
	}
	// Host a saw the backends come one at a time, the new ones lowest.
	a := newEnv(t, nil)
	for _, bs := range [][]string{{"10.1.0.5:80"}, {"10.1.0.5:80", "10.1.0.3:80"}, {"10.1.0.5:80", "10.1.0.3:80", "10.1.0.4:80", "10.1.0.1:80"}} {
		a.store.Set(desired(mh(bs...)))
		a.sync(t, false)
	}
	// Host b started with all of them.
	b := newEnv(t, nil)
	b.store.Set(desired(mh("10.1.0.5:80", "10.1.0.3:80", "10.1.0.4:80", "10.1.0.1:80")))
	b.sync(t, false)
	want := []string{"10.1.0.5:80", "10.1.0.4:80", "10.1.0.3:80", "10.1.0.1:80"}
	if got := order(a); !slices.Equal(got, want) {
		t.Errorf("host a's order %v, want %v", got, want)
	}
	if got := order(b); !slices.Equal(got, want) {
		t.Errorf("host b's order %v, want %v", got, want)
	}
	// A new highest address goes to the head with nothing moved.
	deletes := b.fake.Calls["DeleteRealServer"]
	b.store.Set(desired(mh("10.1.0.5:80", "10.1.0.3:80", "10.1.0.4:80", "10.1.0.1:80", "10.1.0.9:80")))
	b.sync(t, false)
	if got := order(b); !slices.Equal(got, append([]string{"10.1.0.9:80"}, want...)) {
		t.Errorf("after adding the highest: %v", got)
	}
	if b.fake.Calls["DeleteRealServer"] != deletes {
		t.Errorf("adding the highest address moved others: %v", b.fake.Calls)
	}
	// An rr service is left in the order it has.
	c := newEnv(t, nil)
	rr := svc("192.0.2.1", 80, lb.TCP, "10.1.0.1:80")
	c.store.Set(desired(rr))
	c.sync(t, false)
	rr = svc("192.0.2.1", 80, lb.TCP, "10.1.0.1:80", "10.1.0.0:80")
	c.store.Set(desired(rr))
	c.sync(t, false)
	if got := order(c); !slices.Equal(got, []string{"10.1.0.0:80", "10.1.0.1:80"}) {
		t.Errorf("rr service reordered: %v", got)
	}
}

// A new configuration (Reconfigure) prepares the kernel again — a new
// scheduler or method may need a module or a sysctl — and changes the
// drain timeout of backends already draining; a Prepare that fails makes
// the host unhealthy without touching the table.
func TestReconfigurePreparesAgain(t *testing.T) {
	e := newEnv(t, nil)
	var prepares atomic.Int32
	var failing atomic.Bool
	e.dp = ipvs.New(ipvs.Options{
		IPVS: e.fake, Store: e.store, Log: slog.New(slog.DiscardHandler), Owns: owns,
		Reporter: e.rec, OnSync: e.rec.onSync,
		SNAT: e.snat, DrainTimeout: time.Minute, Now: e.clock.Now,
		MinSyncInterval: time.Millisecond, DrainPoll: time.Hour, ResyncPeriod: time.Hour,
		PrepareRetry: 5 * time.Millisecond,
		Prepare: func() error {
			prepares.Add(1)
			if failing.Load() {
				return errors.New("modprobe ip_vs_mh: not found")
			}
			return nil
		},
	})
	e.store.Set(desired(svc("192.0.2.1", 80, lb.TCP, "10.0.0.1:30080", "10.0.0.2:30080")))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- e.dp.Run(ctx) }()
	defer func() {
		cancel()
		<-done
	}()
	waitFor(t, e.rec, "first pass", func() bool { return e.dp.Healthy() == nil })
	before := table(e.fake, true)

	failing.Store(true)
	e.dp.Reconfigure(10 * time.Second)
	waitFor(t, e.rec, "unhealthy after a failed prepare", func() bool { return e.dp.Healthy() != nil })
	if !slices.Equal(table(e.fake, true), before) {
		t.Fatal("a failed prepare changed the table")
	}
	failing.Store(false)
	waitFor(t, e.rec, "healthy again", func() bool { return e.dp.Healthy() == nil })
	if n := prepares.Load(); n < 3 {
		t.Fatalf("Prepare ran %d times, want the start, the failure and its retry", n)
	}

	// The new drain timeout: a busy leaving backend goes after 10 s, not
	// after the minute it had.
	id := ipvs.ID{Address: netip.MustParseAddr("192.0.2.1"), Protocol: "TCP", Port: 80}
	gone := ipvs.RealServer{Address: netip.MustParseAddr("10.0.0.2"), Port: 30080}
	e.fake.SetActive(id, gone, 7)
	e.store.Set(desired(svc("192.0.2.1", 80, lb.TCP, "10.0.0.1:30080")))
	waitFor(t, e.rec, "drain at weight 0", func() bool { return weightOf(e.fake.Snapshot()[id].RSs, "10.0.0.2:30080") == 0 })
	e.clock.Add(11 * time.Second)
	e.dp.Reconfigure(10 * time.Second)
	waitFor(t, e.rec, "deleted after the new drain timeout", func() bool { return len(e.fake.Snapshot()[id].RSs) == 1 })
}
