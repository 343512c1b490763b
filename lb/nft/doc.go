// Package nft is what edgelb's nftables users share: opening the nftables
// of a network namespace, finding edgelb's own tables by name, queueing a
// table's removal or a set's and a chain's replacement in one
// transaction, and the layout of the address families in the IP header.
//
// Three parts program nftables, each with tables of its own name that it
// alone creates, replaces and deletes:
//
//   - lb/snat: `table ip edgelb` and `table ip6 edgelb` (sets vips and
//     own, chains prerouting, output, postrouting and input);
//   - vip (NFTQuieter): `table arp edgelb_vip` and `table ip6 edgelb_vip`
//     (set quiet, chain input);
//   - lb/filter: `table inet edgelb_filter` (sets allowed4/6,
//     restricted4/6 and closed4/6, chain prerouting), whose sets change
//     element by element (AddElements, DeleteElements) instead of being
//     refilled.
//
// Each builds its rules itself, with github.com/google/nftables/expr;
// this package only carries out the steps they all took by hand:
//
//	c, err := nft.Open(netns)              // netns 0: the current namespace
//	tables, err := nft.Find(c, name)       // lists tables, changes none
//	tables.Remove(family)                  // only if that table exists
//	t := tables.Add(family)                // created if missing, kept if not
//	err = nft.Refill(c, set, nft.Addrs(a)) // the set holds exactly a
//	nft.ReplaceChain(c, chain, rules...)   // the chain holds exactly rules
//	err = c.Flush()                        // one atomic transaction
//
// Nothing here creates, flushes or deletes a table, set or chain but by
// the name its user gives, so an upgraded edgelb finds and replaces its
// own tables and never touches another program's. Elements go in
// messages of at most MaxElements (the element list is one netlink
// attribute with a 16-bit length, which the kernel would otherwise cut
// short silently).
//
// Only nft.go imports github.com/google/nftables.
package nft
