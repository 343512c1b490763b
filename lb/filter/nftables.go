package filter

import (
	"context"
	"encoding/binary"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"go4.org/netipx"
	"golang.org/x/sys/unix"

	"github.com/edgelb/edgelb/lb"
	"github.com/edgelb/edgelb/lb/nft"
)

// TableName is the name of the filter table (family inet).
const TableName = "edgelb_filter"

// ChainName is the table's only chain.
const ChainName = "prerouting"

// ruleTag marks the rules this version writes, so that a start finds out
// whether the chain holds exactly them.
// (v2 added the closed sets' rule; an upgrade replaces v1's rules.)
var ruleTag = []byte("edgelb-filter-v2")

// NFTables is the filter table in the kernel. It is safe for concurrent
// use.
type NFTables struct {
	mu sync.Mutex
	// netns, when not 0, is the file descriptor of the network namespace
	// to program (tests); 0 means the current one.
	netns int
	// ready: the table, chain, rules and sets are known to be in place.
	ready bool
}

var _ Kernel = (*NFTables)(nil)

// NewNFTables returns the filter table of the current network namespace;
// it changes nothing until Apply or Delete.
func NewNFTables() *NFTables { return &NFTables{} }

// NewNFTablesInNetNS returns the filter table of the network namespace
// open as fd.
func NewNFTablesInNetNS(fd int) *NFTables { return &NFTables{netns: fd} }

// family is an IP family in the inet table; its sets' names end in
// suffix.
type family struct {
	*nft.Family
	suffix string
}

var families = []family{{nft.IPv4, "4"}, {nft.IPv6, "6"}}

func familyOf(a netip.Addr) *family {
	if a.Is4() {
		return &families[0]
	}
	return &families[1]
}

var table = &nftables.Table{Family: nftables.TableFamilyINet, Name: TableName}

func (f *family) restricted() *nftables.Set {
	return &nftables.Set{Table: table, Name: "restricted" + f.suffix, Concatenation: true, Counter: true,
		KeyType: nftables.MustConcatSetType(f.Addr, nftables.TypeInetProto, nftables.TypeInetService)}
}

// closed holds the virtual services whose ranges the kernel refused:
// VIP · protocol · port, like restricted, and dropped before any allowed
// range is looked at.
func (f *family) closed() *nftables.Set {
	return &nftables.Set{Table: table, Name: "closed" + f.suffix, Concatenation: true,
		KeyType: nftables.MustConcatSetType(f.Addr, nftables.TypeInetProto, nftables.TypeInetService)}
}

func (f *family) allowed() *nftables.Set {
	return &nftables.Set{Table: table, Name: "allowed" + f.suffix, Concatenation: true, Interval: true,
		KeyType: nftables.MustConcatSetType(f.Addr, nftables.TypeInetProto, nftables.TypeInetService, f.Addr)}
}

var protoNums = map[lb.Protocol]byte{lb.TCP: unix.IPPROTO_TCP, lb.UDP: unix.IPPROTO_UDP, lb.SCTP: unix.IPPROTO_SCTP}

// keyBytes encodes VIP · protocol · port, each field padded to 4 bytes as
// nftables lays out concatenations.
func keyBytes(k lb.Key) []byte {
	b := slices.Clone(k.VIP.AsSlice())
	b = append(b, protoNums[k.Protocol], 0, 0, 0)
	return append(binary.BigEndian.AppendUint16(b, k.Port), 0, 0)
}

func restrictedElem(k lb.Key) nftables.SetElement {
	return nftables.SetElement{Key: keyBytes(k)}
}

func allowedElem(a Allowed) nftables.SetElement {
	r := netipx.RangeOfPrefix(a.Range)
	k := keyBytes(a.Key)
	return nftables.SetElement{
		Key:    append(slices.Clone(k), r.From().AsSlice()...),
		KeyEnd: append(k, r.To().AsSlice()...),
	}
}

func parseKey(f *family, b []byte) (lb.Key, bool) {
	n := int(f.AddrLen)
	if len(b) < n+8 {
		return lb.Key{}, false
	}
	vip, _ := netip.AddrFromSlice(b[:n])
	var proto lb.Protocol
	for p, num := range protoNums {
		if num == b[n] {
			proto = p
		}
	}
	return lb.Key{VIP: vip, Protocol: proto, Port: binary.BigEndian.Uint16(b[n+4:])}, proto != ""
}

func (n *NFTables) conn() (*nftables.Conn, error) { return nft.Open(n.netns) }

// exists reports whether the table is there.
func exists(c *nftables.Conn) (bool, error) {
	tables, err := nft.Find(c, TableName)
	if err != nil {
		return false, err
	}
	return tables.Exists(table.Family), nil
}

// elements lists a set. One that cannot be listed (deleted behind edgelb's
// back) counts as empty, and the next Apply creates it again and fills it;
// if the kernel refuses for another reason, that Apply fails and says so.
//
// A large set comes back in several netlink messages, and the kernel walks
// its hash table again for each one, skipping what it already sent. If the
// table is resized in between (the kernel grows it in the background after
// many additions), the walk's order changes and elements are skipped or
// sent twice, with nothing in the reply to say so. So the set is listed
// until two listings agree.
func (n *NFTables) elements(c *nftables.Conn, s *nftables.Set) []nftables.SetElement {
	var last []nftables.SetElement
	for try := 0; try < 5; try++ {
		elems, err := c.GetSetElements(s)
		if err != nil {
			n.ready = false
			return nil
		}
		if try > 0 && sameElements(last, elems) {
			return elems
		}
		last = elems
	}
	return last
}

func sameElements(a, b []nftables.SetElement) bool {
	if len(a) != len(b) {
		return false
	}
	seen := make(map[string]int, len(a))
	for _, e := range a {
		seen[string(e.Key)+"\x00"+string(e.KeyEnd)]++
	}
	for _, e := range b {
		k := string(e.Key) + "\x00" + string(e.KeyEnd)
		if seen[k] == 0 {
			return false
		}
		seen[k]--
	}
	return true
}

// Read returns the table's restricted keys and allowed ranges.
func (n *NFTables) Read() (State, bool, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	s := State{Restricted: map[lb.Key]bool{}, Allowed: map[Allowed]bool{}, Closed: map[lb.Key]bool{}}
	c, err := n.conn()
	if err != nil {
		return s, false, err
	}
	ok, err := exists(c)
	if err != nil || !ok {
		n.ready = false
		return s, false, err
	}
	if !hasRules(c) {
		n.ready = false // the next Apply writes them again
	}
	for i := range families {
		f := &families[i]
		for _, e := range n.elements(c, f.restricted()) {
			if k, ok := parseKey(f, e.Key); ok {
				s.Restricted[k] = true
			}
		}
		for _, e := range n.elements(c, f.closed()) {
			if k, ok := parseKey(f, e.Key); ok {
				s.Closed[k] = true
			}
		}
		for _, e := range n.elements(c, f.allowed()) {
			k, ok := parseKey(f, e.Key)
			if !ok || e.IntervalEnd || len(e.KeyEnd) != len(e.Key) {
				continue
			}
			off := len(e.Key) - int(f.AddrLen)
			from, _ := netip.AddrFromSlice(e.Key[off:])
			to, _ := netip.AddrFromSlice(e.KeyEnd[off:])
			if p, ok := netipx.IPRangeFrom(from, to).Prefix(); ok {
				s.Allowed[Allowed{Key: k, Range: p}] = true
			}
		}
	}
	return s, true, nil
}

// Apply makes the changes, in one transaction unless they hold more than
// txnElements elements. Then they go in several, in an order that never
// drops an allowed client of a service that stays restricted, except where
// an overlapping range is replaced, and never opens a closed service
// before its ranges are in: first the services closed, then the
// restrictions that end, the allowed ranges that go, those that come, the
// new restrictions (so that a newly restricted service has its allowed
// ranges before it is closed), and last the services opened again.
func (n *NFTables) Apply(ch Changes) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	c, err := n.conn()
	if err != nil {
		return err
	}
	if !n.ready {
		if err := n.ensure(c); err != nil {
			return err
		}
	}
	type op struct {
		set   *nftables.Set
		elems []nftables.SetElement
		del   bool
		phase int
	}
	var ops []op
	for i := range families {
		f := &families[i]
		var delR, delA, addA, addR, addC, delC []nftables.SetElement
		for _, k := range ch.AddClosed {
			if familyOf(k.VIP) == f {
				addC = append(addC, restrictedElem(k))
			}
		}
		for _, k := range ch.DelClosed {
			if familyOf(k.VIP) == f {
				delC = append(delC, restrictedElem(k))
			}
		}
		for _, k := range ch.DelRestricted {
			if familyOf(k.VIP) == f {
				delR = append(delR, restrictedElem(k))
			}
		}
		for _, a := range ch.DelAllowed {
			if familyOf(a.Key.VIP) == f {
				delA = append(delA, allowedElem(a))
			}
		}
		for _, a := range ch.AddAllowed {
			if familyOf(a.Key.VIP) == f {
				addA = append(addA, allowedElem(a))
			}
		}
		for _, k := range ch.AddRestricted {
			if familyOf(k.VIP) == f {
				addR = append(addR, restrictedElem(k))
			}
		}
		ops = append(ops, op{f.closed(), addC, false, 0}, op{f.restricted(), delR, true, 1}, op{f.allowed(), delA, true, 1},
			op{f.allowed(), addA, false, 2}, op{f.restricted(), addR, false, 2}, op{f.closed(), delC, true, 3})
	}
	// Closing first, then deletions and additions of both families, and
	// opening last.
	slices.SortStableFunc(ops, func(a, b op) int { return a.phase - b.phase })
	queued := 0
	for _, o := range ops {
		for len(o.elems) > 0 {
			m := min(len(o.elems), txnElements-queued)
			var err error
			if o.del {
				err = nft.DeleteElements(c, o.set, o.elems[:m])
			} else {
				err = nft.AddElements(c, o.set, o.elems[:m])
			}
			if err != nil {
				return err
			}
			o.elems, queued = o.elems[m:], queued+m
			if queued == txnElements {
				if err := n.flush(c); err != nil {
					return err
				}
				queued = 0
			}
		}
	}
	return n.flush(c)
}

func (n *NFTables) flush(c *nftables.Conn) error {
	if err := c.Flush(); err != nil {
		n.ready = false
		return fmt.Errorf("programming nftables table %s: %w", TableName, err)
	}
	return nil
}

// txnElements is the most elements in one transaction, which goes out in
// one sendmsg and must fit the socket's send buffer (a message carries at
// most nft.MaxElements).
const txnElements = 1024

var chain = &nftables.Chain{Name: ChainName, Table: table, Type: nftables.ChainTypeFilter,
	Hooknum: nftables.ChainHookPrerouting, Priority: nftables.ChainPriorityRaw}

// hasRules reports whether the chain holds exactly this version's rules.
func hasRules(c *nftables.Conn) bool {
	rules, err := c.GetRules(table, chain)
	if err != nil || len(rules) != 3*len(families) {
		return false
	}
	for _, r := range rules {
		if !slices.Equal(r.UserData, ruleTag) {
			return false
		}
	}
	return true
}

// ensure creates the table, its sets and chain, and writes the rules when
// the chain does not hold exactly this version's; it leaves the sets'
// elements as they are.
func (n *NFTables) ensure(c *nftables.Conn) error {
	ok, err := exists(c)
	if err != nil {
		return err
	}
	rulesOK := ok && hasRules(c)
	c.AddTable(table)
	sets := make([][3]*nftables.Set, len(families))
	for i := range families {
		f := &families[i]
		sets[i] = [3]*nftables.Set{f.allowed(), f.restricted(), f.closed()}
		for _, s := range sets[i] {
			if err := c.AddSet(s, nil); err != nil {
				return fmt.Errorf("adding nftables set %s: %w", s.Name, err)
			}
		}
	}
	if rulesOK {
		c.AddChain(chain)
	} else {
		// Only edgelb's own chain, in the same transaction as its rules.
		var rules []*nftables.Rule
		for i := range families {
			f := &families[i]
			for _, r := range f.rules(sets[i][0], sets[i][1], sets[i][2]) {
				rules = append(rules, &nftables.Rule{Exprs: r, UserData: ruleTag})
			}
		}
		nft.ReplaceChain(c, chain, rules...)
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("creating nftables table %s: %w", TableName, err)
	}
	n.ready = true
	return nil
}

// rules returns the family's three rules:
//
//	meta nfproto F daddr . meta l4proto . th dport @closedF drop
//	meta nfproto F daddr . meta l4proto . th dport . saddr @allowedF accept
//	meta nfproto F daddr . meta l4proto . th dport @restrictedF drop
func (f *family) rules(allowed, restricted, closed *nftables.Set) [][]expr.Any {
	// Concatenations use the 32-bit registers from NFT_REG32_00 (8) on.
	const r0 = 8
	addrRegs := f.AddrLen / 4
	key := func() []expr.Any {
		return []expr.Any{
			&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{f.NFProto}},
			&expr.Payload{DestRegister: r0, Base: expr.PayloadBaseNetworkHeader, Offset: f.DaddrOff, Len: f.AddrLen},
			&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: r0 + addrRegs},
			&expr.Payload{DestRegister: r0 + addrRegs + 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
		}
	}
	allow := append(key(),
		&expr.Payload{DestRegister: r0 + addrRegs + 2, Base: expr.PayloadBaseNetworkHeader, Offset: f.SaddrOff, Len: f.AddrLen},
		&expr.Lookup{SourceRegister: r0, SetName: allowed.Name, SetID: allowed.ID},
		&expr.Verdict{Kind: expr.VerdictAccept},
	)
	drop := append(key(),
		&expr.Lookup{SourceRegister: r0, SetName: restricted.Name, SetID: restricted.ID},
		&expr.Verdict{Kind: expr.VerdictDrop},
	)
	closedDrop := append(key(),
		&expr.Lookup{SourceRegister: r0, SetName: closed.Name, SetID: closed.ID},
		&expr.Verdict{Kind: expr.VerdictDrop},
	)
	return [][]expr.Any{closedDrop, allow, drop}
}

// Delete removes the table if it exists.
func (n *NFTables) Delete() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.ready = false
	c, err := n.conn()
	if err != nil {
		return err
	}
	tables, err := nft.Find(c, TableName)
	if err != nil || !tables.Exists(table.Family) {
		return err
	}
	tables.Remove(table.Family)
	if err := c.Flush(); err != nil {
		return fmt.Errorf("deleting nftables table %s: %w", TableName, err)
	}
	return nil
}

// Dropped reads the per-element counters of the restricted sets.
func (n *NFTables) Dropped() (map[lb.Key]uint64, error) {
	c, err := n.conn()
	if err != nil {
		return nil, err
	}
	out := map[lb.Key]uint64{}
	ok, err := exists(c)
	if err != nil || !ok {
		return out, err
	}
	for i := range families {
		f := &families[i]
		elems, err := c.GetSetElements(f.restricted())
		if err != nil {
			continue // being recreated
		}
		for _, e := range elems {
			if k, ok := parseKey(f, e.Key); ok && e.Counter != nil {
				out[k] = e.Counter.Packets
			}
		}
	}
	return out, nil
}

// Ensure creates the table, its sets, chain and rules where they are
// missing, and leaves the sets' elements as they are.
func (n *NFTables) Ensure() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	c, err := n.conn()
	if err != nil {
		return err
	}
	return n.ensure(c)
}

// Changed subscribes to the kernel's nftables notifications (the
// NFNLGRP_NFTABLES group, as `nft monitor` does) and signals the returned
// channel after each transaction of another process that touches the
// table or cannot be told not to (set elements carry no table name here).
// edgelb's own transactions, of every part, are told apart by the thread
// id the kernel stamps on each generation (ownThread). If the
// notifications overflow the socket (the kernel then drops them) or the
// subscription breaks, it signals too, since a change may have been
// missed, and subscribes again a second later.
func (n *NFTables) Changed(ctx context.Context) (<-chan struct{}, error) {
	mon, events, err := n.monitor()
	if err != nil {
		return nil, fmt.Errorf("watching nftables: %w", err)
	}
	out := make(chan struct{}, 1)
	signal := func() {
		select {
		case out <- struct{}{}:
		default:
		}
	}
	go func() {
		for {
			if !watchUntilLost(ctx, events, signal) {
				closeMonitor(mon, events)
				return
			}
			closeMonitor(mon, events)
			signal()
			for {
				select {
				case <-ctx.Done():
					return
				case <-time.After(time.Second):
				}
				var err error
				if mon, events, err = n.monitor(); err == nil {
					break
				}
			}
			signal() // what happened in between
		}
	}()
	return out, nil
}

// watchUntilLost signals each foreign transaction of events until ctx ends
// (false) or the subscription is lost (true).
func watchUntilLost(ctx context.Context, events chan *nftables.MonitorEvents, signal func()) bool {
	for {
		select {
		case <-ctx.Done():
			return false
		case ev, ok := <-events:
			if !ok || ev.GeneratedBy == nil || ev.GeneratedBy.Type == nftables.MonitorEventTypeOOB {
				return true
			}
			if foreign(ev) {
				signal()
			}
		}
	}
}

func (n *NFTables) monitor() (*nftables.Monitor, chan *nftables.MonitorEvents, error) {
	c, err := n.conn()
	if err != nil {
		return nil, nil, err
	}
	mon := nftables.NewMonitor(nftables.WithMonitorEventBuffer(64))
	events, err := c.AddGenerationalMonitor(mon)
	if err != nil {
		return nil, nil, err
	}
	return mon, events, nil
}

// closeMonitor closes mon and reads what its goroutine still sends, so
// that the goroutine ends.
func closeMonitor(mon *nftables.Monitor, events chan *nftables.MonitorEvents) {
	mon.Close()
	for range events {
	}
}

// ownThread reports whether tid is a thread of this process. The kernel
// stamps a generation with the id of the thread that committed it, and a
// Go program commits from any of its threads. A thread that has ended
// since, or ids from another PID namespace, count as foreign: that costs
// one needless read of the table, never a missed change.
func ownThread(tid uint32) bool {
	if int(tid) == os.Getpid() {
		return true
	}
	_, err := os.Stat("/proc/self/task/" + strconv.FormatUint(uint64(tid), 10))
	return err == nil
}

// foreign reports whether another process made the transaction ev and it
// may concern the table.
func foreign(ev *nftables.MonitorEvents) bool {
	if gen, ok := ev.GeneratedBy.Data.(*nftables.GenMsg); ok && ownThread(gen.ProcPID) {
		return false
	}
	for _, ch := range ev.Changes {
		var t *nftables.Table
		switch d := ch.Data.(type) {
		case *nftables.Table:
			t = d
		case *nftables.Chain:
			t = d.Table
		case *nftables.Rule:
			t = d.Table
		case *nftables.Set:
			t = d.Table
		}
		if t == nil || t.Name == TableName {
			return true
		}
	}
	return false
}
