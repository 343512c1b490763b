// Package repair moves the neighbours that still send a VIP's traffic to
// its old owner after an L2 takeover, including those that ignore
// gratuitous ARP or refuse an update inside their neighbour locktime.
//
// After a takeover the vip.Manager calls Repairer.Takeover. The Repairer
// then picks the targets (Select, a pure function): the gateways of the
// interface's routes, the source addresses of the IPVS connections to the
// VIP in this host's table (those it served before the VIP left it, and,
// where the IPVS sync daemon runs, those copied from the old owner) and
// the interface's neighbour-table entries — on-link
// only, of the VIP's family, gateways first, at most Options.Max of them.
// On each offset of the schedule (DefaultSchedule: 0, 250 ms, 600 ms,
// 1.1 s, 2 s — past Linux's 1 s locktime) every target not yet confirmed
// is told where the VIP is (Conn.Tell: a unicast ARP reply, or a
// solicited NA with the override flag) and asked from the VIP (Conn.Ask:
// an ARP request or Neighbor Solicitation whose sender is the VIP at this
// host's hardware address). A target that answers the question has
// processed a request naming the VIP at this host, which makes it take
// that mapping (RFC 826's merge, RFC 4861 7.2.3; Linux's neigh_event_ns,
// not subject to the locktime): it is counted repaired and left alone. A
// target that never answers is counted not confirmed. Each repair is
// logged, and Stats feeds the metrics.
//
// The kernel work — routes and neighbours through netlink, IPVS
// connections from /proc/net/ip_vs_conn, ARP and NDP sockets — is behind
// Sources and Dialer; kernel.go has the real ones, tests use fakes.
package repair
