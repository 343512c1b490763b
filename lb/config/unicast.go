package config

import (
	"fmt"
	"net/netip"

	"go4.org/netipx"
)

// notOnALAN are the addresses a VIP can never be: no host on a LAN sends
// to them and expects one owner to answer (ARP/NDP, BGP next hops and
// IPVS all assume a unicast address).
var notOnALAN = []struct {
	prefix netip.Prefix
	what   string
}{
	{netip.MustParsePrefix("0.0.0.0/8"), "an unspecified (this-network)"},
	{netip.MustParsePrefix("127.0.0.0/8"), "a loopback"},
	{netip.MustParsePrefix("169.254.0.0/16"), "a link-local"},
	{netip.MustParsePrefix("224.0.0.0/4"), "a multicast"},
	{netip.MustParsePrefix("255.255.255.255/32"), "the broadcast"},
	{netip.MustParsePrefix("::/128"), "the unspecified"},
	{netip.MustParsePrefix("::1/128"), "the loopback"},
	{netip.MustParsePrefix("::ffff:0:0/96"), "an IPv4-mapped IPv6"},
	{netip.MustParsePrefix("fe80::/10"), "a link-local"},
	{netip.MustParsePrefix("ff00::/8"), "a multicast"},
}

// lanUnicast refuses a VIP or a pool range (written as s) that holds an
// address no LAN can use as a VIP, naming the first such address and
// what it is.
func lanUnicast(r netipx.IPRange, s string) error {
	for _, n := range notOnALAN {
		bad := netipx.RangeOfPrefix(n.prefix)
		if !r.Overlaps(bad) {
			continue
		}
		first := r.From()
		if first.Less(bad.From()) {
			first = bad.From()
		}
		if r.From() == r.To() {
			return fmt.Errorf("%s is %s address: a VIP must be a unicast address hosts on the LAN can reach (like 192.0.2.10 or 2001:db8::10)", s, n.what)
		}
		return fmt.Errorf("%q includes %s, %s address (%s): a pool may hold only unicast addresses hosts on the LAN can reach; leave %s out", s, first, n.what, n.prefix, n.prefix)
	}
	return nil
}
