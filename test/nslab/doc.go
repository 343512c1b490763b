// Package nslab is the network-namespace lab that edgelb's end-to-end
// (test/e2e) and fault (test/chaos) tests run on: a Linux bridge in its own
// namespace with appliance hosts and a client, each host running the real
// edgelb binary with backend: none and a small responder that says which
// host answered.
//
// A test package that uses it calls Main from its TestMain: Main runs the
// roles this test binary is re-executed in inside the namespaces
// (responder, prober, holder, ARP watcher; roles.go), checks the
// prerequisites (root, iproute2, network namespaces; a skip without them,
// a failure under CI=true, test/prereq) and builds edgelb once.
//
// The lab only uses addresses inside the namespaces it creates
// (10.99.0.0/24, fd99::/64) and removes the namespaces even when a test
// fails. Uplink is the one exception: it plugs a veth from the test's own
// namespace into the bridge (10.99.0.1), so that processes on the test's
// side — a kube-apiserver — are reachable from the hosts.
package nslab
