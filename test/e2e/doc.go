// Package e2e holds end-to-end tests of the appliance cluster on real
// network namespaces (the lab of test/nslab): appliance hosts and a client
// on one Linux bridge, each host running the real edgelb binary with
// backend: none and a small responder that says which host answered.
//
// The tests need root, iproute2 and network namespaces. Without them they
// skip, unless CI=true, where a missing prerequisite fails the run. They
// only use addresses inside the namespaces they create (10.99.0.0/24,
// fd99::/64) and remove the namespaces even when they fail.
//
// BenchmarkFailover runs the lab repeatedly and reports the client-visible
// outage of a crash and of a graceful stop (make bench-failover);
// BenchmarkGARPIgnoringClient that of a crash for a client that ignores
// gratuitous ARP, with and without the neighbour repair. The GARP-ignoring
// client is emulated with nftables in its namespace (arp and ip6 tables),
// so nft is needed too.
package e2e
