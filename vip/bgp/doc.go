// Package bgp advertises the VIPs announced over BGP (`announce: bgp`) to
// the upstream routers, so that every healthy host serves them at once
// and the routers spread flows over the hosts with ECMP.
//
// Data flows one way: the VIPs (a VIPSource, the app gives it the bgp
// ones of the desired state) and whether this member may serve (Serving,
// the cluster: healthy, with a quorum, not draining or stopping) → the
// pure Desired → the Announcer diffs it against what it advertised and
// tells the Speaker. The Speaker is GoBGP embedded as a library (gobgp.go,
// the only file importing it); bgptest has an in-memory fake.
//
// Each route carries its VIP's Policy (communities, large communities,
// LOCAL_PREF for iBGP peers) as path attributes; a changed policy is sent
// as a new version of the route.
//
// A member that may no longer serve withdraws and keeps forwarding: its
// VIPs stay on the host (quiet, see vip.Quieter) for the flows the
// routers still send while they converge. A draining or stopping member
// first advertises its routes with GRACEFUL_SHUTDOWN (RFC 8326) for
// WithdrawDelay (PhaseShuttingDown), then withdraws; an unhealthy one, or
// one without a quorum, withdraws at once. On stop the Announcer then
// waits up to a second more and closes the sessions.
package bgp
