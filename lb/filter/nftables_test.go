package filter_test

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/edgelb/edgelb/lb"
	"github.com/edgelb/edgelb/lb/filter"
	"github.com/edgelb/edgelb/test/nstest"
)

func vs(vip string, port uint16, proto lb.Protocol, src string, ranges ...string) lb.VirtualService {
	v := lb.VirtualService{Key: lb.Key{VIP: netip.MustParseAddr(vip), Port: port, Protocol: proto},
		Source: lb.Source{Namespace: "ns", Name: src}}
	if ranges != nil {
		v.SourceRanges = []netip.Prefix{}
		for _, r := range ranges {
			v.SourceRanges = append(v.SourceRanges, netip.MustParsePrefix(r))
		}
	}
	return v
}

func TestNFTablesInNetNS(t *testing.T) {
	ns, fd := nstest.New(t, "filter")
	k := filter.NewNFTablesInNetNS(fd)
	nstest.Run(t, "ip", "netns", "exec", ns, "nft", "add table inet other; add chain inet other c { type filter hook prerouting priority 0; }; add rule inet other c counter")

	d1 := &lb.Desired{Services: []lb.VirtualService{
		vs("192.0.2.1", 80, lb.TCP, "web", "10.0.0.0/8", "198.51.100.7/32"),
		vs("192.0.2.1", 53, lb.UDP, "dns", "10.1.0.0/16"),
		vs("192.0.2.2", 80, lb.TCP, "closed"),
		vs("192.0.2.2", 80, lb.SCTP, "closed-sctp", "2001:db8::/32"), // no IPv4 range: closed
		vs("2001:db8::1", 443, lb.TCP, "web6", "2001:db8:1::/48", "10.0.0.0/8"),
		vs("192.0.2.3", 80, lb.TCP, "open"),
	}}
	d1.Services[2].SourceRanges = []netip.Prefix{}
	d1.Services[5].SourceRanges = nil

	check := func(d *lb.Desired) {
		t.Helper()
		got, present, err := k.Read()
		if err != nil || !present {
			t.Fatalf("Read: present=%v err=%v", present, err)
		}
		if c := filter.Diff(got, filter.Want(d)); !c.Empty() {
			t.Fatalf("the kernel differs from the desired state: %+v", c)
		}
		out := nstest.Run(t, "ip", "netns", "exec", ns, "nft", "list", "ruleset")
		if !strings.Contains(out, "table inet other") {
			t.Fatalf("the foreign table is gone:\n%s", out)
		}
	}
	f := filter.New(filter.Options{Kernel: k, Store: lb.NewStore(), Log: discard()})
	if err := f.SyncOnce(d1); err != nil {
		t.Fatal(err)
	}
	check(d1)
	out := nstest.Run(t, "ip", "netns", "exec", ns, "nft", "list", "table", "inet", filter.TableName)
	for _, want := range []string{"192.0.2.1 . tcp . 80 . 10.0.0.0/8", "198.51.100.7", "2001:db8::1 . tcp . 443 . 2001:db8:1::/48",
		"ip daddr . meta l4proto . th dport . ip saddr @allowed4 accept", "@restricted4 drop", "@restricted6 drop", "hook prerouting priority raw"} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}

	// A fresh Filter (a restart) reads the table back and changes only
	// the difference.
	k = filter.NewNFTablesInNetNS(fd)
	f = filter.New(filter.Options{Kernel: k, Store: lb.NewStore(), Log: discard()})
	d2 := &lb.Desired{Services: []lb.VirtualService{
		vs("192.0.2.1", 80, lb.TCP, "web", "10.0.0.0/16", "198.51.100.0/24"),
		vs("2001:db8::1", 443, lb.TCP, "web6", "2001:db8::/32"),
	}}
	if err := f.SyncOnce(d2); err != nil {
		t.Fatal(err)
	}
	check(d2)

	// Rules and an element lost behind edgelb's back come back at the
	// next read of the kernel (start or resync).
	nstest.Run(t, "ip", "netns", "exec", ns, "nft", "flush chain inet edgelb_filter prerouting; delete element inet edgelb_filter allowed6 { 2001:db8::1 . tcp . 443 . 2001:db8::/32 }")
	f = filter.New(filter.Options{Kernel: filter.NewNFTablesInNetNS(fd), Store: lb.NewStore(), Log: discard()})
	if err := f.SyncOnce(d2); err != nil {
		t.Fatal(err)
	}
	check(d2)
	if out := nstest.Run(t, "ip", "netns", "exec", ns, "nft", "list", "chain", "inet", filter.TableName, filter.ChainName); strings.Count(out, "drop") != 4 {
		t.Errorf("the rules were not written again:\n%s", out)
	}

	if err := f.SyncOnce(&lb.Desired{}); err != nil {
		t.Fatal(err)
	}
	out = nstest.Run(t, "ip", "netns", "exec", ns, "nft", "list", "ruleset")
	if strings.Contains(out, filter.TableName) || !strings.Contains(out, "table inet other") {
		t.Fatalf("after the last range went:\n%s", out)
	}
}

// benchDesired returns n restricted services, each with ranges ranges.
func benchDesired(n, ranges int) *lb.Desired {
	d := &lb.Desired{Services: make([]lb.VirtualService, 0, n)}
	for i := range n {
		v := lb.VirtualService{Key: lb.Key{VIP: netip.AddrFrom4([4]byte{10, 100, byte(i / 250), byte(i%250 + 1)}), Port: 80, Protocol: lb.TCP},
			Source: lb.Source{Namespace: "bench", Name: fmt.Sprintf("s%d", i)}, SourceRanges: []netip.Prefix{}}
		for j := range ranges {
			v.SourceRanges = append(v.SourceRanges, netip.PrefixFrom(netip.AddrFrom4([4]byte{172, 16 + byte(j/256), byte(j % 256), 0}), 24))
		}
		d.Services = append(d.Services, v)
	}
	return d
}

// BenchmarkSourceRangeChange reports, on this host's nftables in a network
// namespace, the time to program 1,000 restricted services with 5 ranges
// each from nothing, the time for one service's ranges to change at that
// size (one element out, one in), and the time a restarted process takes
// to read the table back and find nothing to do.
func BenchmarkSourceRangeChange(b *testing.B) {
	n, ranges := 1000, 5
	if s := os.Getenv("BENCH_N"); s != "" {
		fmt.Sscan(s, &n)
	}
	for range b.N {
		_, fd := nstest.New(b, "filterbench")
		k := filter.NewNFTablesInNetNS(fd)
		f := filter.New(filter.Options{Kernel: k, Store: lb.NewStore(), Log: discard()})
		d := benchDesired(n, ranges)
		start := time.Now()
		if err := f.SyncOnce(d); err != nil {
			b.Fatal(err)
		}
		full := time.Since(start)

		d2 := &lb.Desired{Services: append([]lb.VirtualService(nil), d.Services...)}
		vs := &d2.Services[n/2]
		vs.SourceRanges = append(append([]netip.Prefix(nil), vs.SourceRanges[1:]...), netip.MustParsePrefix("198.51.100.0/24"))
		start = time.Now()
		if err := f.SyncOnce(d2); err != nil {
			b.Fatal(err)
		}
		one := time.Since(start)

		f = filter.New(filter.Options{Kernel: filter.NewNFTablesInNetNS(fd), Store: lb.NewStore(), Log: discard()})
		start = time.Now()
		if err := f.SyncOnce(d2); err != nil {
			b.Fatal(err)
		}
		restart := time.Since(start)
		have, _, err := filter.NewNFTablesInNetNS(fd).Read()
		if err != nil || !filter.Diff(have, filter.Want(d2)).Empty() {
			b.Fatalf("the kernel does not hold the desired state (%v)", err)
		}
		b.ReportMetric(full.Seconds()*1000, "ms/full-sync")
		b.ReportMetric(float64(one.Microseconds())/1000, "ms/one-change")
		b.ReportMetric(restart.Seconds()*1000, "ms/restart-read")
		fmt.Printf("FIGURE source ranges, %d services x %d ranges: full sync %s; one service's ranges changed: %s; restart (read back, nothing to do): %s\n",
			n, ranges, full.Round(time.Millisecond), one.Round(10*time.Microsecond), restart.Round(time.Millisecond))
	}
}

// Thousands of elements go in several netlink messages and transactions;
// none may be lost (one message holds at most 64 KiB of elements).
func TestNFTablesManyElementsInNetNS(t *testing.T) {
	_, fd := nstest.New(t, "filtermany")
	f := filter.New(filter.Options{Kernel: filter.NewNFTablesInNetNS(fd), Store: lb.NewStore(), Log: discard()})
	d := benchDesired(3000, 5)
	if err := f.SyncOnce(d); err != nil {
		t.Fatal(err)
	}
	have, _, err := filter.NewNFTablesInNetNS(fd).Read()
	if err != nil {
		t.Fatal(err)
	}
	if c := filter.Diff(have, filter.Want(d)); !c.Empty() || len(have.Allowed) != 6000 {
		t.Errorf("the kernel holds %d restricted and %d allowed elements, want 3000 and 6000", len(have.Restricted), len(have.Allowed))
	}
}

// A real kernel refusal: another program created edgelb's allowed set with
// room for three elements before edgelb started. The kernel then refuses
// the Service whose ranges no longer fit (ENFILE); that Service alone is
// closed, the one that fits is programmed, and the pass succeeds.
func TestNFTablesRefusedServiceInNetNS(t *testing.T) {
	ns, fd := nstest.New(t, "filterfull")
	nstest.Run(t, "ip", "netns", "exec", ns, "nft", "add table inet edgelb_filter; add set inet edgelb_filter allowed4 { type ipv4_addr . inet_proto . inet_service . ipv4_addr; flags interval; size 3; }")
	k := filter.NewNFTablesInNetNS(fd)
	f := filter.New(filter.Options{Kernel: k, Store: lb.NewStore(), Log: discard()})
	d := &lb.Desired{Services: []lb.VirtualService{
		vs("192.0.2.1", 80, lb.TCP, "a", "10.0.0.0/8", "172.16.0.0/12"),
		vs("192.0.2.2", 80, lb.TCP, "b", "10.0.0.0/8", "172.16.0.0/12"),
		vs("192.0.2.3", 80, lb.TCP, "open"),
	}}
	d.Services[2].SourceRanges = nil
	if err := f.SyncOnce(d); err != nil {
		t.Fatalf("a refused Service failed the pass: %v", err)
	}
	failed := f.Failed()
	if len(failed) != 1 || failed[lb.Source{Namespace: "ns", Name: "b"}] == nil {
		t.Fatalf("Failed() = %v, want ns/b", failed)
	}
	t.Logf("the kernel refused ns/b: %v", failed[lb.Source{Namespace: "ns", Name: "b"}])
	have, _, err := k.Read()
	if err != nil {
		t.Fatal(err)
	}
	a, b := d.Services[0].Key, d.Services[1].Key
	if !have.Restricted[a] || have.Closed[a] || len(have.Only(map[lb.Key]bool{a: true}).Allowed) != 2 {
		t.Errorf("ns/a is not programmed: %+v", have.Only(map[lb.Key]bool{a: true}))
	}
	if !have.Closed[b] {
		t.Errorf("ns/b is not closed: %+v", have.Only(map[lb.Key]bool{b: true}))
	}
	if have.Restricted[d.Services[2].Key] || have.Closed[d.Services[2].Key] {
		t.Error("the unfiltered Service was touched")
	}
}

// Changed signals another process's change of the table (nft flush
// ruleset), and neither this process's own transactions nor another
// program's changes to its own table.
func TestNFTablesChangedInNetNS(t *testing.T) {
	ns, fd := nstest.New(t, "filtermon")
	k := filter.NewNFTablesInNetNS(fd)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	changed, err := k.Changed(ctx)
	if err != nil {
		t.Fatal(err)
	}
	quiet := func(what string) {
		t.Helper()
		select {
		case <-changed:
			t.Fatalf("%s was reported as a foreign change", what)
		case <-time.After(300 * time.Millisecond):
		}
	}
	f := filter.New(filter.Options{Kernel: k, Store: lb.NewStore(), Log: discard()})
	if err := f.SyncOnce(&lb.Desired{Services: []lb.VirtualService{vs("192.0.2.1", 80, lb.TCP, "web", "10.0.0.0/8")}}); err != nil {
		t.Fatal(err)
	}
	quiet("edgelb's own transaction")
	nstest.Run(t, "ip", "netns", "exec", ns, "nft", "add table inet other; add chain inet other c")
	quiet("another table's change")
	start := time.Now()
	nstest.Run(t, "ip", "netns", "exec", ns, "nft", "flush ruleset")
	select {
	case <-changed:
		t.Logf("nft flush ruleset reported after %s", time.Since(start))
	case <-time.After(5 * time.Second):
		t.Fatal("nft flush ruleset was not reported")
	}
}
