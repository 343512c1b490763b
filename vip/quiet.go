package vip

import (
	"fmt"
	"net/netip"
	"sync"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"

	"github.com/edgelb/edgelb/lb/nft"
)

// Quieter stops the kernel from answering new address resolution
// (broadcast ARP requests, multicast IPv6 Neighbor Solicitations) for some
// of the VIPs on the interface, while it still takes their traffic and
// still answers the unicast probes of clients that already send to this
// host (their neighbour entries being confirmed). A VIP held only for a
// handover is quiet: a client that asks anew who has it gets the new
// owner's answer alone, and a client already here is served until the new
// owner's announcements move it.
type Quieter interface {
	// Quiet makes exactly vips quiet; nil: none.
	Quiet(vips []netip.Addr) error
}

// QuietTable is the name of the nftables tables (families arp and ip6)
// that hold the quiet VIPs.
const QuietTable = "edgelb_vip"

// NFTQuieter is the Quieter of a network namespace, with nftables: an arp
// table drops the incoming broadcast ARP requests for a quiet IPv4 VIP and
// an ip6 table the incoming multicast Neighbor Solicitations for a quiet
// IPv6 VIP, so that the kernel never sees them. With no quiet VIP the
// tables are removed. It is safe for concurrent use.
type NFTQuieter struct {
	mu    sync.Mutex
	netns int // 0: the current network namespace
}

// NewQuieter returns the Quieter of the current network namespace.
func NewQuieter() *NFTQuieter { return &NFTQuieter{} }

// NewQuieterInNetNS returns the Quieter of the network namespace open as fd.
func NewQuieterInNetNS(fd int) *NFTQuieter { return &NFTQuieter{netns: fd} }

// Quiet implements Quieter.
func (q *NFTQuieter) Quiet(vips []netip.Addr) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	c, err := nft.Open(q.netns)
	if err != nil {
		return err
	}
	tables, err := nft.Find(c, QuietTable)
	if err != nil {
		return err
	}
	v4, v6 := nft.Split(vips)
	for _, f := range []struct {
		fam   nftables.TableFamily
		typ   nftables.SetDatatype
		vips  []netip.Addr
		hook  *nftables.ChainHook
		match func(set *nftables.Set) []expr.Any
	}{
		{nftables.TableFamilyARP, nftables.TypeIPAddr, v4, &arpIn, broadcastARPRequestFor},
		{nftables.TableFamilyIPv6, nftables.TypeIP6Addr, v6, nftables.ChainHookInput, multicastSolicitationFor},
	} {
		if len(f.vips) == 0 {
			tables.Remove(f.fam)
			continue
		}
		t := tables.Add(f.fam)
		set := &nftables.Set{Table: t, Name: "quiet", KeyType: f.typ}
		if err := nft.Refill(c, set, nft.Addrs(f.vips)); err != nil {
			return err
		}
		nft.ReplaceChain(c, &nftables.Chain{
			Name: "input", Table: t, Type: nftables.ChainTypeFilter,
			Hooknum: f.hook, Priority: nftables.ChainPriorityFilter,
		}, &nftables.Rule{Exprs: append(f.match(set), &expr.Verdict{Kind: expr.VerdictDrop})})
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("programming nftables tables %s: %w", QuietTable, err)
	}
	return nil
}

// arpIn is the arp family's input hook (NF_ARP_IN), which is not numbered
// like the inet families' one.
var arpIn = nftables.ChainHook(0)

// broadcastARPRequestFor matches a broadcast Ethernet/IPv4 ARP request
// for an address in set: meta pkttype broadcast arp hlen 6 arp plen 4
// arp operation request arp daddr ip @set.
func broadcastARPRequestFor(set *nftables.Set) []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyPKTTYPE, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.PACKET_BROADCAST}},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 4, Len: 4},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{6, 4, 0, 1}},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 24, Len: 4},
		&expr.Lookup{SourceRegister: 1, SetName: set.Name, SetID: set.ID},
	}
}

// multicastSolicitationFor matches a multicast ICMPv6 Neighbor
// Solicitation whose target address is in set.
func multicastSolicitationFor(set *nftables.Set) []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyPKTTYPE, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.PACKET_MULTICAST}},
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.IPPROTO_ICMPV6}},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 0, Len: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{135}}, // nd-neighbor-solicit
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 8, Len: 16},
		&expr.Lookup{SourceRegister: 1, SetName: set.Name, SetID: set.ID},
	}
}
