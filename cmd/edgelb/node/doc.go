// Package node is the edgelb appliance as a library: New(cfg, Options)
// builds one host's engine from the kernels it is given, Run runs it
// until its context ends, then stops it in order. `edgelb run` (package
// cli) passes RealKernels — kernels.go is the one file in the tree that
// builds the real netlink, IPVS, nftables and GoBGP kernels — and tests
// pass the fakes (lab_test.go runs three nodes in one process on
// memberlist's MockNetwork).
//
// The data flows one way:
//
//   - The running cluster configuration (liveConfig, running.go) takes
//     each version cluster.Docs replicates, parses it once (config.Host
//     caches by content) and classifies what it changes into a Change
//     (change.go); it is the only producer of Changes, and each part
//     subscribes to the kinds it follows (desired state, pools, kernel
//     preparation, health checks, bgp).
//   - Services, EndpointSlices and Nodes (lb/k8s) or the static services
//     (staticLoop) → lb.Build → the lb.Store of desired state → the IPVS
//     dataplane (lb/ipvs: diff, never flush), the health checker and the
//     source-range filter (lb/filter).
//   - Membership (cluster: memberlist, quorum, rendezvous hashing) →
//     ownership of the l2 VIPs → the VIP manager (vip), through the
//     l2/bgp split (vip/announce); the bgp VIPs → the BGP announcer
//     (vip/bgp).
//   - Every part reports its health to the cluster, which decides whether
//     this host may own VIPs; the observer (observe.go) turns changes into
//     API events and metrics and tells the service manager the node is
//     ready.
package node
