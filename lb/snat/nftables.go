package snat

import (
	"fmt"
	"net/netip"
	"slices"
	"sync"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"

	"github.com/edgelb/edgelb/lb/nft"
)

// TableName is the name of edgelb's nftables tables.
const TableName = "edgelb"

// DefaultMark is the conntrack mark bit that tags connections to a nat VIP.
const DefaultMark = 0x01000000

// AfterIPVS is the priority of the input chain: after IPVS's hooks on
// local input (NF_IP_PRI_NAT_SRC - 2 and - 1), so that it sees only the
// packets IPVS left to the host.
const AfterIPVS = 150

// NFTables keeps edgelb's source NAT tables. It is safe for concurrent use.
type NFTables struct {
	mu   sync.Mutex
	mark uint32
	// toVIP reports the VIPs whose connections take the VIP itself as
	// their source address; nil: none.
	toVIP func(netip.Addr) bool
	// netns, when not 0, is the file descriptor of the network namespace
	// to program (tests); 0 means the current one.
	netns int
}

// New returns the source NAT of the current network namespace; it changes
// nothing until Sync.
func New() *NFTables { return &NFTables{mark: DefaultMark} }

// NewInNetNS returns the source NAT of the network namespace open as fd.
func NewInNetNS(fd int) *NFTables { return &NFTables{mark: DefaultMark, netns: fd} }

// FromVIP makes the connections to the VIPs for which toVIP is true leave
// with the VIP as their source address instead of the host's: a backend's
// replies then go to whichever host holds the VIP, and a connection that
// moves with its VIP to another host keeps its addresses (and, unless two
// clients used the same source port, its port), so the backend takes it
// for the one it had. It returns n.
func (n *NFTables) FromVIP(toVIP func(netip.Addr) bool) *NFTables {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.toVIP = toVIP
	return n
}

// Sync makes the tables source-NAT exactly the connections to vips.
func (n *NFTables) Sync(vips []netip.Addr) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	c, err := nft.Open(n.netns)
	if err != nil {
		return err
	}
	var v4, v6, own4, own6 []netip.Addr
	for _, a := range vips {
		own := n.toVIP != nil && n.toVIP(a)
		switch {
		case a.Is4() && own:
			v4, own4 = append(v4, a), append(own4, a)
		case a.Is4():
			v4 = append(v4, a)
		case own:
			v6, own6 = append(v6, a), append(own6, a)
		default:
			v6 = append(v6, a)
		}
	}
	tables, err := nft.Find(c, TableName)
	if err != nil {
		return err
	}
	fams := []struct {
		*nft.Family
		vips, own []netip.Addr
	}{
		{nft.IPv4, v4, own4},
		{nft.IPv6, v6, own6},
	}
	mark := binaryutil.NativeEndian.PutUint32(n.mark)
	// The bit above the mark tags the connections that take their VIP
	// as source address (FromVIP).
	ownMark := binaryutil.NativeEndian.PutUint32(n.mark << 1)
	zero := make([]byte, 4)
	for _, f := range fams {
		if len(f.vips) == 0 {
			tables.Remove(f.Table)
			continue
		}
		t := tables.Add(f.Table)
		set := &nftables.Set{Table: t, Name: "vips", KeyType: f.Addr}
		if err := nft.Refill(c, set, nft.Addrs(f.vips)); err != nil {
			return err
		}
		own := &nftables.Set{Table: t, Name: "own", KeyType: f.Addr}
		if err := nft.Refill(c, own, nft.Addrs(f.own)); err != nil {
			return err
		}
		// Before IPVS rewrites the destination, tag the connection:
		// ip daddr @vips ct mark set ct mark | MARK
		// ip daddr @own ct mark set ct mark | OWN
		tagWith := func(set *nftables.Set, bits uint32) *nftables.Rule {
			return &nftables.Rule{Exprs: append(f.DaddrIn(set),
				&expr.Ct{Register: 1, Key: expr.CtKeyMARK},
				&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: binaryutil.NativeEndian.PutUint32(^bits), Xor: binaryutil.NativeEndian.PutUint32(bits)},
				&expr.Ct{Register: 1, Key: expr.CtKeyMARK, SourceRegister: true},
			)}
		}
		for _, hook := range []struct {
			name string
			hook *nftables.ChainHook
		}{{"prerouting", nftables.ChainHookPrerouting}, {"output", nftables.ChainHookOutput}} {
			nft.ReplaceChain(c, &nftables.Chain{
				Name: hook.name, Table: t, Type: nftables.ChainTypeFilter,
				Hooknum: hook.hook, Priority: nftables.ChainPriorityMangle,
			}, tagWith(set, n.mark), tagWith(own, n.mark<<1))
		}
		nft.ReplaceChain(c, &nftables.Chain{
			Name: "postrouting", Table: t, Type: nftables.ChainTypeNAT,
			Hooknum: nftables.ChainHookPostrouting, Priority: nftables.ChainPriorityNATSource,
		},
			// ip daddr @vips return: a packet that leaves still addressed
			// to a VIP was routed (to the VIP's owner), not forwarded by
			// IPVS, and keeps its source (the VIP as its source would make
			// it a martian there).
			&nftables.Rule{Exprs: append(f.DaddrIn(set), &expr.Verdict{Kind: expr.VerdictReturn})},
			// ct mark & OWN != 0 snat to ct original daddr
			&nftables.Rule{Exprs: []expr.Any{
				&expr.Ct{Register: 1, Key: expr.CtKeyMARK},
				&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: ownMark, Xor: zero},
				&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: zero},
				&expr.Ct{Register: 1, Key: expr.CtKeyDST, Direction: 0},
				&expr.NAT{Type: expr.NATTypeSourceNAT, Family: uint32(f.NFProto), RegAddrMin: 1},
			}},
			// ct mark & MARK != 0 masquerade
			&nftables.Rule{Exprs: []expr.Any{
				&expr.Ct{Register: 1, Key: expr.CtKeyMARK},
				&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: mark, Xor: zero},
				&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: zero},
				&expr.Masq{},
			}},
		)
		// After IPVS (which takes its packets at priority 98 and 99):
		// meta l4proto tcp ip daddr @own tcp flags & (fin|syn|rst|ack) != syn drop
		// A backend's packet to an own VIP that IPVS does not know (the
		// VIP has just moved here; the backend retransmits before the
		// client does) would make the host's TCP answer with a reset and
		// end a connection this host is about to pick up from the client's
		// next packet. It is dropped; a new connection's SYN to a port
		// with no service is still refused.
		nft.ReplaceChain(c, &nftables.Chain{
			Name: "input", Table: t, Type: nftables.ChainTypeFilter,
			Hooknum: nftables.ChainHookInput, Priority: nftables.ChainPriorityRef(AfterIPVS),
		}, &nftables.Rule{Exprs: slices.Concat([]expr.Any{
			&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.IPPROTO_TCP}},
		}, f.DaddrIn(own), []expr.Any{
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 13, Len: 1},
			&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 1, Mask: []byte{0x17}, Xor: []byte{0}},
			&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: []byte{0x02}},
			&expr.Verdict{Kind: expr.VerdictDrop},
		})})
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("programming nftables table %s: %w", TableName, err)
	}
	return nil
}
