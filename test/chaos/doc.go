// Package chaos is edgelb's fault suite: real edgelb processes on the
// network-namespace lab of test/nslab, a real kube-apiserver and etcd
// (test/testenv) reachable from the lab's hosts through an uplink, and
// faults injected from outside — the API server stopped, the Lease holder
// and the VIP owner SIGKILLed, links cut, the LAN partitioned — while a
// client in the lab keeps sending requests and ARP requests.
//
// The tests assert correctness: no failed request where none may fail, a
// VIP never answered for by two reachable hosts, a minority that owns
// nothing, one owner per VIP after healing, no address held by two live
// Services, no Service renumbered. Times are figures, printed on lines
// starting with FIGURE (scenario, name, value) and never asserted.
//
// `go test ./test/chaos` runs reduced counts (a 30 s API server outage, 3
// kills of each kind, 50 Services) so that the normal suite stays in
// budget; EDGELB_CHAOS_FULL=1 (`make chaos`) runs the full counts (5
// minutes, 20 kills, 200 Services) and make prints the figures as a
// table. See docs/chaos.md.
//
// The tests need root, iproute2, network namespaces and the test API
// server binaries (make test-bins); without them they skip, and under
// CI=true a missing prerequisite fails the run.
package chaos
