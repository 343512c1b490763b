// Package cluster is edgelb's gossip membership and VIP ownership.
//
// Membership is hashicorp/memberlist, encrypted with the AES keyring built
// from cluster.secretKeyFile. Every member gossips a small Meta: whether it
// is healthy (its interface is up and its dataplane programmed, reported
// through SetHealth), whether it is draining, the networks it can announce
// on, and a digest of the VIPs it currently holds.
//
// Data flows one way: the membership view and the desired VIPs (from the
// lb.Store) go into Assign, a pure function that gives every VIP the same
// owner on every member (rendezvous hashing over member names). The Cluster
// publishes the VIPs this member should hold (Owned, Subscribe); the vip
// package adds, announces and removes them and reports back what it holds
// (SetHeld), which goes into the gossiped Meta. A member that sees fewer
// than Quorum members owns nothing.
//
// Planned handover (Drain, or Run's context ending): the member marks itself
// draining and keeps each VIP until the VIP's next owner gossips that it
// holds it, or until HandoverTimeout, then releases it. When Run's context
// ends it then leaves the cluster and returns. See docs/failover.md.
//
// Graceful restart (Run's context cancelled with ErrRestart; restart.go):
// the member hands nothing over and gossips Restarting before it leaves;
// the others keep it as a candidate owner, present for the quorum, for
// RestartHold, and the new process adopts the VIPs the old one kept
// (Adopt) and holds them through a start-up grace.
package cluster
