package filter_test

import (
	"errors"
	"net/netip"
	"testing"

	"github.com/edgelb/edgelb/lb"
	"github.com/edgelb/edgelb/lb/filter"
	"github.com/edgelb/edgelb/lb/filter/filtertest"
)

func key(vip string, port uint16, proto lb.Protocol) lb.Key {
	return lb.Key{VIP: netip.MustParseAddr(vip), Port: port, Protocol: proto}
}

func allowed(k lb.Key, ps ...string) []filter.Allowed {
	var out []filter.Allowed
	for _, p := range ps {
		out = append(out, filter.Allowed{Key: k, Range: netip.MustParsePrefix(p)})
	}
	return out
}

func state(restricted []lb.Key, al ...[]filter.Allowed) filter.State {
	s := filter.State{Restricted: map[lb.Key]bool{}, Allowed: map[filter.Allowed]bool{}}
	for _, k := range restricted {
		s.Restricted[k] = true
	}
	for _, as := range al {
		for _, a := range as {
			s.Allowed[a] = true
		}
	}
	return s
}

func TestWant(t *testing.T) {
	web := key("192.0.2.1", 80, lb.TCP)
	web6 := key("2001:db8::1", 80, lb.TCP)
	closed := key("192.0.2.2", 80, lb.TCP)
	d := &lb.Desired{Services: []lb.VirtualService{
		vs("192.0.2.1", 80, lb.TCP, "web", "10.0.0.0/8", "10.1.0.0/16", "10.0.0.0/9", "2001:db8:1::/48", "192.168.0.0/24", "192.168.1.0/24"),
		vs("2001:db8::1", 80, lb.TCP, "web", "10.0.0.0/8", "2001:db8:1::/48"),
		vs("192.0.2.2", 80, lb.TCP, "closed", "2001:db8::/32"),
		vs("192.0.2.3", 80, lb.TCP, "open"),
	}}
	d.Services[3].SourceRanges = nil
	want := state([]lb.Key{web, web6, closed}, allowed(web, "10.0.0.0/8", "192.168.0.0/23"), allowed(web6, "2001:db8:1::/48"))
	if c := filter.Diff(filter.Want(d), want); !c.Empty() {
		t.Errorf("Want differs by %+v", c)
	}
	if !filter.Want(&lb.Desired{}).Empty() || !filter.Want(nil).Empty() {
		t.Error("nothing desired is not empty")
	}
}

func TestDiff(t *testing.T) {
	a, b := key("192.0.2.1", 80, lb.TCP), key("192.0.2.1", 53, lb.UDP)
	cases := []struct {
		name       string
		have, want filter.State
		del, add   int
	}{
		{"same", state([]lb.Key{a}, allowed(a, "10.0.0.0/8")), state([]lb.Key{a}, allowed(a, "10.0.0.0/8")), 0, 0},
		{"from nothing", state(nil), state([]lb.Key{a, b}, allowed(a, "10.0.0.0/8"), allowed(b, "10.0.0.0/8")), 0, 4},
		{"one range replaced", state([]lb.Key{a}, allowed(a, "10.0.0.0/8", "192.168.0.0/16")), state([]lb.Key{a}, allowed(a, "10.0.0.0/16", "192.168.0.0/16")), 1, 1},
		{"closed", state([]lb.Key{a}, allowed(a, "10.0.0.0/8")), state([]lb.Key{a}), 1, 0},
		{"opened", state([]lb.Key{a, b}, allowed(a, "10.0.0.0/8")), state([]lb.Key{b}), 2, 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ch := filter.Diff(c.have, c.want)
			if del, add := len(ch.DelAllowed)+len(ch.DelRestricted), len(ch.AddAllowed)+len(ch.AddRestricted); del != c.del || add != c.add {
				t.Errorf("deletes %d adds %d, want %d and %d: %+v", del, add, c.del, c.add, ch)
			}
			if got := c.have.Apply(ch); !filter.Diff(got, c.want).Empty() {
				t.Errorf("applying the diff gives %+v", got)
			}
		})
	}
}

func newFilter(k filter.Kernel) *filter.Filter {
	return filter.New(filter.Options{Kernel: k, Store: lb.NewStore(), Log: discard()})
}

// A pass changes only the elements that differ, reads the kernel only at
// start and after an error, and removes the table with the last range.
func TestSyncOnceIsIncremental(t *testing.T) {
	k := filtertest.New()
	f := newFilter(k)
	if err := f.SyncOnce(&lb.Desired{Services: []lb.VirtualService{vs("192.0.2.9", 80, lb.TCP, "open")}}); err != nil {
		t.Fatal(err)
	}
	if k.Present || k.Calls["Apply"] != 0 {
		t.Fatalf("a table was created for no range: %+v", k)
	}
	d1 := &lb.Desired{}
	for i := range 100 {
		d1.Services = append(d1.Services, vs(netip.AddrFrom4([4]byte{192, 0, 2, byte(i)}).String(), 80, lb.TCP, "s", "10.0.0.0/8", "172.16.0.0/12"))
	}
	if err := f.SyncOnce(d1); err != nil {
		t.Fatal(err)
	}
	if !k.Present || k.Elements != 300 || len(k.State.Allowed) != 200 {
		t.Fatalf("after the first sync: %d elements written, %d allowed", k.Elements, len(k.State.Allowed))
	}
	// One service's ranges change: two elements, nothing else.
	d2 := &lb.Desired{Services: append([]lb.VirtualService(nil), d1.Services...)}
	d2.Services[7] = vs("192.0.2.7", 80, lb.TCP, "s", "10.0.0.0/8", "198.51.100.0/24")
	k.Elements = 0
	if err := f.SyncOnce(d2); err != nil {
		t.Fatal(err)
	}
	if k.Elements != 2 || k.Calls["Read"] != 1 {
		t.Errorf("a change of one range wrote %d elements (want 2) and read %d times", k.Elements, k.Calls["Read"])
	}
	if c := filter.Diff(k.State, filter.Want(d2)); !c.Empty() {
		t.Errorf("the table differs: %+v", c)
	}
	// Nothing changed: nothing written.
	if err := f.SyncOnce(d2); err != nil || k.Calls["Apply"] != 2 {
		t.Errorf("an unchanged state was applied again (%d Applies, %v)", k.Calls["Apply"], err)
	}

	// A restart reads the table and writes nothing when it is right.
	f = newFilter(k)
	if err := f.SyncOnce(d2); err != nil || k.Calls["Apply"] != 2 || k.Calls["Read"] != 2 {
		t.Errorf("a restart rewrote an unchanged table: %v, %v", k.Calls, err)
	}

	// Behind edgelb's back an element is lost; the pass's transaction
	// fails, and the same pass reads the kernel again and repairs it.
	delete(k.State.Allowed, filter.Allowed{Key: d2.Services[7].Key, Range: netip.MustParsePrefix("198.51.100.0/24")})
	reads := k.Calls["Read"]
	if err := f.SyncOnce(d1); err != nil {
		t.Fatal(err)
	}
	if c := filter.Diff(k.State, filter.Want(d1)); !c.Empty() || k.Calls["Read"] != reads+1 || len(f.Failed()) != 0 {
		t.Errorf("not repaired by reading the table again (%d reads, failed %v): %+v", k.Calls["Read"]-reads, f.Failed(), c)
	}

	// The last range goes: the table goes.
	if err := f.SyncOnce(&lb.Desired{}); err != nil || k.Present {
		t.Errorf("the table stays without ranges (%v)", err)
	}
}

func TestSyncOnceError(t *testing.T) {
	k := filtertest.New()
	k.Fail = func(m string) error {
		if m == "Apply" {
			return errors.New("no nftables")
		}
		return nil
	}
	f := newFilter(k)
	d := &lb.Desired{Services: []lb.VirtualService{vs("192.0.2.1", 80, lb.TCP, "s", "10.0.0.0/8")}}
	if err := f.SyncOnce(d); err == nil {
		t.Fatal("no error")
	}
	k.Fail = nil
	if err := f.SyncOnce(d); err != nil || !k.Present || len(k.State.Allowed) != 1 {
		t.Fatalf("the retry did not program the table: %v %+v", err, k.State)
	}
}

// Dropped sums the keys of each service and never goes down, even when
// an element (and its counter) is recreated.
func TestDropped(t *testing.T) {
	k := filtertest.New()
	f := newFilter(k)
	d := &lb.Desired{Services: []lb.VirtualService{
		vs("192.0.2.1", 80, lb.TCP, "web", "10.0.0.0/8"),
		vs("192.0.2.1", 443, lb.TCP, "web", "10.0.0.0/8"),
		vs("192.0.2.2", 53, lb.UDP, "dns", "10.0.0.0/8"),
	}}
	if err := f.SyncOnce(d); err != nil {
		t.Fatal(err)
	}
	k.Counters[d.Services[0].Key] = 5
	k.Counters[d.Services[1].Key] = 2
	got, err := f.Dropped()
	if err != nil || got[lb.Source{Namespace: "ns", Name: "web"}] != 7 || got[lb.Source{Namespace: "ns", Name: "dns"}] != 0 {
		t.Fatalf("Dropped = %v, %v", got, err)
	}
	// The web service loses port 443, gets it back: its counter restarts.
	if err := f.SyncOnce(&lb.Desired{Services: []lb.VirtualService{d.Services[0], d.Services[2]}}); err != nil {
		t.Fatal(err)
	}
	if err := f.SyncOnce(d); err != nil {
		t.Fatal(err)
	}
	k.Counters[d.Services[0].Key] = 6
	k.Counters[d.Services[1].Key] = 3
	if got, _ := f.Dropped(); got[lb.Source{Namespace: "ns", Name: "web"}] != 11 {
		t.Errorf("after the counter restarted: %v, want 11", got)
	}
}
