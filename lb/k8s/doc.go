// Package k8s watches a Kubernetes cluster with client-go shared informers
// and turns its LoadBalancer Services into edgelb's desired state.
//
// Two loops run on every appliance host:
//   - the desired-state loop: any informer event marks the state dirty;
//     the loop lists Services, EndpointSlices and Nodes from the caches,
//     calls lb.Build and publishes the result to the lb.Store.
//   - the leader loop: a Kubernetes Lease elects one host. Each term
//     rebuilds the IP allocation from the statuses on the API server (a
//     fresh list: the cache may lag behind the previous leader), then
//     assigns addresses (lb/ipam), writes status.loadBalancer.ingress and
//     records Events. A status the allocation does not hold yet is claimed
//     before anything is assigned over it, whether or not the pools' rules
//     would give it now (those rules choose new addresses only); one that
//     an older Service holds is left as it is, with a Warning Event. A
//     Service that keeps an address its pools' rules no longer allow gets a
//     Warning Event AddressKept. Terms never overlap: a term's queue,
//     allocator and recorder are its own, and the next term starts once
//     the last one has returned. The other hosts only watch.
//
// The VIPs in the desired state come from the Services' status, so every
// host computes the same state whoever the leader is.
package k8s
