// Package snat source-NATs the connections the IPVS dataplane forwards with
// the nat (masquerade) method, so that replies from NodePorts and pods come
// back through the appliance even when the backends route elsewhere.
//
// It owns one nftables table per address family, `table ip edgelb` and
// `table ip6 edgelb`, and nothing outside them. Each holds two sets, `vips`
// and `own` (the VIPs whose connections take the VIP as source, FromVIP),
// two `type filter` chains (prerouting and output, priority mangle) that tag
// every connection addressed to a VIP with conntrack mark bits before IPVS
// rewrites its destination:
//
//	ip daddr @vips ct mark set ct mark | 0x01000000
//	ip daddr @own ct mark set ct mark | 0x02000000
//
// and a `type nat hook postrouting` chain that source-NATs the tagged
// connections when they leave for a real server:
//
//	ip daddr @vips return
//	ct mark & 0x02000000 != 0 snat to ct original ip daddr
//	ct mark & 0x01000000 != 0 masquerade
//
// (a packet that leaves still addressed to a VIP was routed to the VIP's
// owner, not forwarded by IPVS, and keeps its source), and a `type filter
// hook input` chain at priority 150, after IPVS, that drops what a backend
// sends to an own VIP for a connection IPVS does not know, instead of
// letting the host's TCP answer it with a reset:
//
//	ip daddr @own tcp flags != syn / fin,syn,rst,ack drop
//
// When a VIP moves, the backend may retransmit to the new owner before the
// client does; the reset would end the connection the new owner is about
// to pick up from the client's next packet.
//
// A connection that leaves with its VIP as source keeps its addresses, and
// most often its port, when the VIP moves to another host that picks it up
// mid-stream (sloppy_tcp, the mh scheduler): the backend cannot tell.
//
// The masquerade is equivalent to `ct original ip daddr @vips masquerade` (IPVS with
// net.ipv4.vs.conntrack=1 keeps the client → VIP tuple as the original
// direction; `ct status dnat` does not match IPVS connections), but unlike
// a raw conntrack address load it can be listed by nft 1.0.6 (Debian 12),
// which aborts on a lookup of `ct load dst` (google/nftables cannot send
// the direction of the `dst_ip` key nft itself uses). The address of
// `snat to` is that load, which nft lists. Sync replaces the
// set's content and the chains' rules in one atomic transaction; a family
// without VIPs has its table removed. Only nftables.go imports
// github.com/google/nftables; lb/nft opens the connection, finds the tables
// and refills the sets and chains.
package snat
