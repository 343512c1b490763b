// Package bgp tests BGP announcement (`announce: bgp`) against a real
// router: FRR (zebra + bgpd, Debian's frr package) in a namespace on the
// network-namespace lab's bridge (test/nslab), peering over eBGP with
// real edgelb processes. What the router installs in its kernel routing
// table is what is asserted: one route to the VIP with a next hop per
// serving host.
package bgp
