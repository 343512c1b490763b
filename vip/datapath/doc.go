// Package datapath checks the data path this host serves its VIPs on —
// node.interface, which may be another link than the gossip address's —
// beyond its carrier: every Interval it probes Targets (by default the
// gateways of the interface's routes, with ARP for IPv4 and Neighbor
// Solicitations for IPv6) and calls the round good when any target
// answers within Timeout. Fall bad rounds in a row make the path failing,
// Rise good ones make it good again.
//
// A failing path is reported to the cluster in two steps: the member
// gossips that its path fails (Reporter.SetDataPathFailing), and it
// gives its VIPs up (Reporter.SetHealth under HealthSource) only while
// some other member that could own them reports a working path
// (Peers.PeerServes). When every host's path fails at once — the
// gateway itself is down — nobody is better placed, and the VIPs stay
// where they are rather than being dropped everywhere.
//
// The kernel work (packet sockets, routes) is behind Prober and Targets;
// kernel.go has the real ones, the Checker is stepped by tests with fakes.
package datapath
