// Package vip holds this host's share of the VIPs: it adds the VIPs the
// cluster says this member owns to node.interface, announces each takeover
// with gratuitous ARP (IPv4) or unsolicited Neighbor Advertisements (IPv6),
// and removes the VIPs it no longer owns.
//
// The Manager is level-triggered: ownership changes, link and address
// events and a periodic resync only mark it dirty; each pass lists the
// VIPs edgelb added (Kernel.VIPs), removes those not owned, adds the
// missing ones and reports what it holds back to the cluster (Reporter),
// which gossips it so that a draining member knows when to let go.
//
// edgelb marks the addresses it adds with the address protocol AddrProto
// (IFA_PROTO, Linux 6.1+; `ip -d addr` shows "proto 0xe1"), and only ever
// removes addresses carrying that mark or AddrProtoKept: addresses
// configured by anyone else are never touched, and VIPs left behind by a
// crashed edgelb are found and removed at start-up. A kernel before 6.1
// ignores IFA_PROTO: there the VIPs carry no mark and Netlink.AddedFile
// lists them instead. IPv4 VIPs are added as
// /32, IPv6 VIPs as /128 with IFA_F_NODAD so that they are usable at once
// and deprecated (preferred lifetime 0) so the host never uses them as a
// source address.
//
// With Options.Lifetime (cluster.restartHold) VIPs are added with that
// valid lifetime and renewed every third of it while held, silently, so
// that the kernel drops them by itself when edgelb dies or does not come
// back from a restart. On a graceful restart (Run's context cancelled with
// ErrRestart) the Manager leaves its VIPs on the interface, re-marked
// AddrProtoKept with the lifetime they have left; the next process adopts
// them (Adopt) and holds them silently during the cluster's start-up grace
// (Ownership.Restarting).
//
// A link that goes down (netlink subscription) makes this host unhealthy
// (Reporter.SetHealth, source "link") and its VIPs are removed. A VIP that
// cannot be added costs that VIP only: the host reports it refused
// (Reporter.SetRefused) and the cluster gives it to another member, while
// the host stays healthy and eligible for every other VIP. After
// DefaultFailHold, and only if no other member owns it by then, it is
// tried again; a failing add doubles the hold (up to 5 min) and a
// successful one ends the refusal.
//
// After a takeover, and after a peer let go of a VIP this host owns, the
// Manager hands the VIP to its Repairer (package vip/repair), which moves
// the neighbours that ignore gratuitous ARP; a VIP let go or handed over is
// released from it at once.
//
// netlink.go is the only file that talks to the kernel's address and link
// tables; announce.go the only one that sends ARP and NDP.
package vip
