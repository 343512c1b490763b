package snat

import (
	"fmt"
	"net/netip"
	"sync"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
)

// TableName is the name of edgelb's nftables tables.
const TableName = "edgelb"

// DefaultMark is the conntrack mark bit that tags connections to a nat VIP.
const DefaultMark = 0x01000000

// NFTables keeps edgelb's source NAT tables. It is safe for concurrent use.
type NFTables struct {
	mu   sync.Mutex
	mark uint32
	// netns, when not 0, is the file descriptor of the network namespace
	// to program (tests); 0 means the current one.
	netns int
}

// New returns the source NAT of the current network namespace; it changes
// nothing until Sync.
func New() *NFTables { return &NFTables{mark: DefaultMark} }

// NewInNetNS returns the source NAT of the network namespace open as fd.
func NewInNetNS(fd int) *NFTables { return &NFTables{mark: DefaultMark, netns: fd} }

// Sync makes the tables masquerade exactly the connections to vips.
func (n *NFTables) Sync(vips []netip.Addr) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	var opts []nftables.ConnOption
	if n.netns != 0 {
		opts = append(opts, nftables.WithNetNSFd(n.netns))
	}
	c, err := nftables.New(opts...)
	if err != nil {
		return fmt.Errorf("opening nftables: %w", err)
	}
	var v4, v6 []netip.Addr
	for _, a := range vips {
		if a.Is4() {
			v4 = append(v4, a)
		} else {
			v6 = append(v6, a)
		}
	}
	existing := map[nftables.TableFamily]bool{}
	tables, err := c.ListTables()
	if err != nil {
		return fmt.Errorf("listing nftables tables: %w", err)
	}
	for _, t := range tables {
		if t.Name == TableName {
			existing[t.Family] = true
		}
	}
	fams := []struct {
		fam      nftables.TableFamily
		typ      nftables.SetDatatype
		off, len uint32 // of the destination address in the IP header
		vips     []netip.Addr
	}{
		{nftables.TableFamilyIPv4, nftables.TypeIPAddr, 16, 4, v4},
		{nftables.TableFamilyIPv6, nftables.TypeIP6Addr, 24, 16, v6},
	}
	mark := binaryutil.NativeEndian.PutUint32(n.mark)
	zero := make([]byte, 4)
	for _, f := range fams {
		t := &nftables.Table{Family: f.fam, Name: TableName}
		if len(f.vips) == 0 {
			if existing[f.fam] {
				c.DelTable(t)
			}
			continue
		}
		c.AddTable(t)
		set := &nftables.Set{Table: t, Name: "vips", KeyType: f.typ}
		if err := c.AddSet(set, nil); err != nil {
			return fmt.Errorf("adding nftables set: %w", err)
		}
		c.FlushSet(set)
		elems := make([]nftables.SetElement, 0, len(f.vips))
		for _, a := range f.vips {
			elems = append(elems, nftables.SetElement{Key: a.AsSlice()})
		}
		if err := c.SetAddElements(set, elems); err != nil {
			return fmt.Errorf("adding VIPs to nftables set: %w", err)
		}
		// Before IPVS rewrites the destination, tag the connection:
		// ip daddr @vips ct mark set ct mark | MARK
		tag := []expr.Any{
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: f.off, Len: f.len},
			&expr.Lookup{SourceRegister: 1, SetName: set.Name, SetID: set.ID},
			&expr.Ct{Register: 1, Key: expr.CtKeyMARK},
			&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: binaryutil.NativeEndian.PutUint32(^n.mark), Xor: mark},
			&expr.Ct{Register: 1, Key: expr.CtKeyMARK, SourceRegister: true},
		}
		for _, hook := range []struct {
			name string
			hook *nftables.ChainHook
		}{{"prerouting", nftables.ChainHookPrerouting}, {"output", nftables.ChainHookOutput}} {
			ch := c.AddChain(&nftables.Chain{
				Name: hook.name, Table: t, Type: nftables.ChainTypeFilter,
				Hooknum: hook.hook, Priority: nftables.ChainPriorityMangle,
			})
			c.FlushChain(ch)
			c.AddRule(&nftables.Rule{Table: t, Chain: ch, Exprs: tag})
		}
		// ct mark & MARK != 0 masquerade
		post := c.AddChain(&nftables.Chain{
			Name: "postrouting", Table: t, Type: nftables.ChainTypeNAT,
			Hooknum: nftables.ChainHookPostrouting, Priority: nftables.ChainPriorityNATSource,
		})
		c.FlushChain(post)
		c.AddRule(&nftables.Rule{Table: t, Chain: post, Exprs: []expr.Any{
			&expr.Ct{Register: 1, Key: expr.CtKeyMARK},
			&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: mark, Xor: zero},
			&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: zero},
			&expr.Masq{},
		}})
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("programming nftables table %s: %w", TableName, err)
	}
	return nil
}
