// Package k8s watches a Kubernetes cluster with client-go shared informers
// and turns its LoadBalancer Services into edgelb's desired state.
//
// Two loops run on every appliance host:
//   - the desired-state loop: an informer event records which Service
//     changed (an EndpointSlice names its Service in a label; changes.go);
//     the loop rebuilds those Services only from the caches
//     (lb.Incremental) and publishes the result to the lb.Store with the
//     keys that changed (SetChanged). A Node that changes the nodes that
//     may receive traffic rebuilds the Services in nodeport mode; a new
//     configuration or a new term rebuilds every Service. The caches keep only the fields edgelb reads
//     (slim.go); EndpointSlices are cached as lb.EndpointSlice, compact.
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
