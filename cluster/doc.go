// Package cluster is edgelb's gossip membership and VIP ownership.
//
// Membership is hashicorp/memberlist, encrypted with the AES keyring built
// from cluster.secretKeyFile. Every member gossips a small Meta: whether it
// is healthy (its interface is up and its dataplane programmed, reported
// through SetHealth), whether it is draining, the networks it can announce
// on, and a digest of the VIPs it currently holds. memberlist rewrites its
// Node structs in place, so its event callbacks copy each member (address,
// decoded Meta) into the Cluster's own view (view.go), and nothing reads
// memberlist's Nodes outside them.
//
// Data flows one way: the membership view (this member included with its
// metadata as gossiped), the desired VIPs (a VIPSource; the app passes
// the desired-state store), what the host holds and the clock go into
// Decide, a pure function: the quorum (a majority of the configured
// cluster, or cluster.quorum), every VIP's owner by Assign (rendezvous
// hashing over member names, the same on every member with the same
// view) and what this member holds. The package imports neither lb nor
// lb/config; the app maps the config file to Options. The Cluster
// publishes the VIPs this member should hold (Owned, Subscribe); the vip
// package adds, announces and removes them and reports back what it holds
// (SetHeld), which goes into the gossiped Meta. A member that sees fewer
// than Quorum members owns nothing.
//
// A witness (Options.Witness, `edgelb witness`) is a configured member
// that gossips Meta.Witness and is never healthy: it counts towards the
// quorum like any voter and Assign never gives it a VIP, so a pair of
// hosts and a witness own with 2 of 3 and a partition leaves the VIPs to
// at most the side the witness is on.
//
// Heartbeats (heartbeat.go, liveness.go, heartbeat_wire.go): next to
// memberlist, every member sends every other one a UDP datagram sealed
// with the gossip key each Options.Heartbeat.Interval, on a goroutine and
// socket of their own. The heartbeats never add a member to the view:
// they mark members memberlist still lists, Unheard (not counted for the
// quorum) after interval × multiplier without news and Silent (counted
// down, its VIPs assigned elsewhere) an interval and a quarter later, so
// that a member cut off lets go before the others take over. Decide
// treats a Silent member as gone; members that gossip no heartbeat port
// are judged by memberlist alone.
//
// Agreeing on the metadata (viewcheck.go): every member numbers what
// Assign reads of its Meta with an OwnerVersion it gossips, and each
// heartbeat carries its sender's version and that of its copy of the
// receiver's. While a member's copy of a peer, or the peer's copy of it,
// is behind, the two may compute different owners: it takes no new VIP
// (Input.Stale) and, after two heartbeat intervals, exchanges its full
// state with that peer (push/pull).
//
// Planned handover (Drain, or Run's context ending): the member marks itself
// draining and keeps each VIP until the VIP's next owner gossips that it
// holds it, or until HandoverTimeout, then releases it. When Run's context
// ends it then leaves the cluster and returns. See docs/failover.md.
//
// Graceful restart (Run's context cancelled with ErrRestart; restart.go):
// the member hands nothing over and gossips Restarting before it leaves;
// the others keep it as a candidate owner (not counted as live) for
// RestartHold, and the new process adopts the VIPs the old one kept
// (Adopt) and holds them through a start-up grace.
//
// The cluster configuration is not replicated here: the consensus log
// (package consensus) carries it, its messages riding on memberlist's
// user channel (Options.Messages in, SendTo out), and the cluster gossips
// only the version each member runs in Meta (Options.Config). Its
// members are the gossip addresses (MemberAddrs), and the VIP quorum
// counts only them (Options.Voters). Docs (docs.go) keeps one host's
// versions, for an insecure cluster and to read an older release's file.
//
// Insecure gossip (Options.Insecure, insecure.go): anyone on the network
// can gossip, so a member takes only membership, health and ownership
// from its peers; it takes neither the consensus log's messages nor
// drain requests, and Options.Unreplicated tells the app to refuse
// configuration writes in a cluster of several hosts.
package cluster
