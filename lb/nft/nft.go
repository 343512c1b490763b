package nft

import (
	"fmt"
	"net/netip"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// Open connects to the nftables of the network namespace open as the file
// descriptor netns, or of the current namespace when netns is 0.
func Open(netns int) (*nftables.Conn, error) {
	var opts []nftables.ConnOption
	if netns != 0 {
		opts = append(opts, nftables.WithNetNSFd(netns))
	}
	c, err := nftables.New(opts...)
	if err != nil {
		return nil, fmt.Errorf("opening nftables: %w", err)
	}
	return c, nil
}

// Tables are the tables of one name, one per family at most, as they were
// when Find listed them. Their methods queue messages on the connection;
// nothing changes before its Flush.
type Tables struct {
	c    *nftables.Conn
	name string
	have map[nftables.TableFamily]bool
}

// Find lists the tables named name in every family. It changes nothing.
func Find(c *nftables.Conn, name string) (*Tables, error) {
	all, err := c.ListTables()
	if err != nil {
		return nil, fmt.Errorf("listing nftables tables: %w", err)
	}
	t := &Tables{c: c, name: name, have: map[nftables.TableFamily]bool{}}
	for _, tab := range all {
		if tab.Name == name {
			t.have[tab.Family] = true
		}
	}
	return t, nil
}

// Exists reports whether the table of family fam was there.
func (t *Tables) Exists(fam nftables.TableFamily) bool { return t.have[fam] }

// Add queues the creation of the table of family fam, which keeps it,
// with its sets, chains and rules, if it exists, and returns it.
func (t *Tables) Add(fam nftables.TableFamily) *nftables.Table {
	return t.c.AddTable(&nftables.Table{Family: fam, Name: t.name})
}

// Remove queues the deletion of the table of family fam, with everything
// in it, if it was there (deleting a missing table would fail the whole
// transaction).
func (t *Tables) Remove(fam nftables.TableFamily) {
	if t.have[fam] {
		t.c.DelTable(&nftables.Table{Family: fam, Name: t.name})
	}
}

// MaxElements is the most set elements one message carries: the element
// list is one netlink attribute, whose length is 16 bits, so a longer
// list would be cut short (silently: the kernel takes what fits). Several
// messages still make one transaction.
const MaxElements = 256

// Refill queues the creation of set, if it is missing, and the replacement
// of its elements by elems: once the transaction is flushed, it holds
// exactly elems.
func Refill(c *nftables.Conn, set *nftables.Set, elems []nftables.SetElement) error {
	if err := c.AddSet(set, nil); err != nil {
		return fmt.Errorf("adding nftables set %s: %w", set.Name, err)
	}
	c.FlushSet(set)
	return AddElements(c, set, elems)
}

// AddElements queues the addition of elems to set, in messages of at most
// MaxElements elements.
func AddElements(c *nftables.Conn, set *nftables.Set, elems []nftables.SetElement) error {
	for len(elems) > 0 {
		n := min(len(elems), MaxElements)
		if err := c.SetAddElements(set, elems[:n]); err != nil {
			return fmt.Errorf("adding elements to nftables set %s: %w", set.Name, err)
		}
		elems = elems[n:]
	}
	return nil
}

// DeleteElements queues the deletion of elems from set, in messages of at
// most MaxElements elements.
func DeleteElements(c *nftables.Conn, set *nftables.Set, elems []nftables.SetElement) error {
	for len(elems) > 0 {
		n := min(len(elems), MaxElements)
		if err := c.SetDeleteElements(set, elems[:n]); err != nil {
			return fmt.Errorf("deleting elements of nftables set %s: %w", set.Name, err)
		}
		elems = elems[n:]
	}
	return nil
}

// Addrs returns set elements of addrs, each address its own key.
func Addrs(addrs []netip.Addr) []nftables.SetElement {
	elems := make([]nftables.SetElement, 0, len(addrs))
	for _, a := range addrs {
		elems = append(elems, nftables.SetElement{Key: a.AsSlice()})
	}
	return elems
}

// ReplaceChain queues the creation of ch, if it is missing, and the
// replacement of its rules by rules, in order (only ch is flushed). Each
// rule's Table and Chain are set to ch's. It returns the chain.
func ReplaceChain(c *nftables.Conn, ch *nftables.Chain, rules ...*nftables.Rule) *nftables.Chain {
	ch = c.AddChain(ch)
	c.FlushChain(ch)
	for _, r := range rules {
		r.Table, r.Chain = ch.Table, ch
		c.AddRule(r)
	}
	return ch
}

// Family is an IP address family: how nftables names it and where its
// addresses sit in the network header.
type Family struct {
	Table              nftables.TableFamily // ip or ip6
	NFProto            byte                 // meta nfproto, and a nat statement's family
	Addr               nftables.SetDatatype // ipv4_addr or ipv6_addr
	AddrLen            uint32               // bytes
	SaddrOff, DaddrOff uint32               // in the network header
}

// The two IP families.
var (
	IPv4 = &Family{nftables.TableFamilyIPv4, unix.NFPROTO_IPV4, nftables.TypeIPAddr, 4, 12, 16}
	IPv6 = &Family{nftables.TableFamilyIPv6, unix.NFPROTO_IPV6, nftables.TypeIP6Addr, 16, 8, 24}
)

// FamilyOf returns a's family; an IPv4-mapped IPv6 address is IPv6.
func FamilyOf(a netip.Addr) *Family {
	if a.Is4() {
		return IPv4
	}
	return IPv6
}

// Split returns the IPv4 and the IPv6 addresses of addrs, each in order.
func Split(addrs []netip.Addr) (v4, v6 []netip.Addr) {
	for _, a := range addrs {
		if a.Is4() {
			v4 = append(v4, a)
		} else {
			v6 = append(v6, a)
		}
	}
	return v4, v6
}

// DaddrIn matches the packets of family f whose destination address is
// in set (`ip daddr @set`, `ip6 daddr @set`), with register 1.
func (f *Family) DaddrIn(set *nftables.Set) []expr.Any {
	return []expr.Any{
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: f.DaddrOff, Len: f.AddrLen},
		&expr.Lookup{SourceRegister: 1, SetName: set.Name, SetID: set.ID},
	}
}
