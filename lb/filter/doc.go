// Package filter enforces spec.loadBalancerSourceRanges (and static
// services' sourceRanges) on the appliance, before IPVS sees a packet.
//
// It owns one nftables table, `table inet edgelb_filter`, and nothing
// outside it (lb/snat's `edgelb` tables and anything else are never read or
// touched). The table holds, per address family:
//
//   - a set `restricted4` / `restricted6` of VIP · protocol · port: the
//     virtual services that have source ranges; each element carries a
//     counter of the packets it dropped;
//   - a concatenated interval set `allowed4` / `allowed6` of VIP · protocol ·
//     port · source range: who may reach them;
//   - a set `closed4` / `closed6` of VIP · protocol · port: the virtual
//     services of Services whose ranges the kernel refused, closed;
//
// and one chain hooked at prerouting, priority raw (-300) — before
// conntrack and long before IPVS takes packets at LOCAL_IN — with the rules
//
//	meta nfproto ipv4 ip daddr . meta l4proto . th dport @closed4 drop
//	meta nfproto ipv4 ip daddr . meta l4proto . th dport . ip saddr @allowed4 accept
//	meta nfproto ipv4 ip daddr . meta l4proto . th dport @restricted4 drop
//
// (and the same for IPv6). Every packet is filtered, not only new
// connections, so a client removed from the ranges loses its open
// connections while allowed clients keep theirs across a change. It works
// the same with every forwarding method: the filter only looks at packets
// addressed to a VIP, before any of them is rewritten.
//
// Data flows one way: the Filter subscribes to the lb.Store, computes the
// wanted State from the desired virtual services (State, a pure function),
// diffs it against what it last applied (read back from the kernel at
// start, so a restart changes nothing that is already right) and applies
// only the difference — set elements added and deleted — in one nftables
// transaction, so a change is atomic. The table is created when the first
// virtual service gets ranges and deleted when the last one loses them; it
// is never flushed.
//
// A virtual service with ranges but none of its VIP's family (an IPv4 VIP
// with only IPv6 ranges), or one whose ranges could not be read the first
// time it was seen (lb.Build fails closed), is restricted with nothing
// allowed: every packet to it is dropped.
//
// A failure costs the Service that caused it (isolate.go): when the
// kernel refuses a pass's transaction, the Filter reads the table back and
// applies the change again by halves of the Services, down to the single
// Services the kernel refuses; those are closed (their keys go into the
// closed set) and reported by Failed, and the others are programmed. Run
// logs each refusal once and retries it after RetryPeriod.
//
// The Filter pushes its health (Options.Reporter, under HealthSource) when
// Run starts — ErrNotSynced: until the first pass a host must not own the
// VIPs of Services whose ranges are not enforced — and each time a pass's
// result changes it. Only what no Service can fix alone is unhealthy: the
// table cannot be created or read, or a refused Service cannot even be
// closed. A host-wide failure is retried after RetryPeriod. LastError
// remains for the API's reads (readiness).
//
// Another program's change to the ruleset — `nft flush ruleset`, which a
// reload of nftables.service runs — is seen through the kernel's nftables
// notifications (Kernel.Changed) and repaired by a pass that reads the
// table back at once, not at the next resync.
//
// Only nftables.go imports github.com/google/nftables; tests drive the
// Filter through the in-memory filtertest.Fake.
package filter
