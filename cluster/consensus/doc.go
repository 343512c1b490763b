// Package consensus replicates the cluster configuration's versions
// through Raft, so that a version is acknowledged only once a majority of
// the configured members has committed and persisted it, and no
// acknowledged version can be lost or overwritten by a partition or a
// newcomer. It replaced cluster.Docs (last-writer-wins over gossip) in
// the daemon, behind the same Doc and HistoryEntry shapes and errors.
//
// The library is etcd's raft (go.etcd.io/raft/v3), the one Kubernetes
// runs under every control plane. It does consensus and nothing else: the
// application brings the transport and the storage. That is why it was
// chosen over hashicorp/raft: the messages travel over the memberlist
// channel edgelb already has (memberlist v0.7.0, encrypted and
// authenticated with the gossip keyring), so peers need no extra port,
// certificate or key, whereas hashicorp/raft resolves only beside
// memberlist v0.5.4 (its go-metrics dependency) and brings a network
// transport of its own, unencrypted or with TLS to distribute.
//
// Data flow. Propose encodes an op (body, author, this member, this
// member's clock, the version it was made from, a request ID) and hands
// it to raft, which forwards it to the leader from a follower. The Node's
// Ready loop (Run) does what raft asks, in the order it asks: it persists
// the HardState, the new entries and any snapshot in one bbolt
// transaction (fsynced), only then sends the messages, then applies the
// committed entries and calls Advance. The apply step is the one
// producer of change: it checks the op's version against the current one
// (the compare-and-set: of two writes from the same version, the one
// later in the log gets ErrStale, identically on every member), appends
// the version to the bounded history, signals Subscribe, and answers the
// local Propose waiting for that request ID. Membership changes (AddMember,
// RemoveMember) are raft ConfChanges whose context carries the member's
// name; the IDs are the FNV-64a hash of the names (IDOf), so every host
// derives the same bootstrap entries from the same Options.Peers, as
// etcd's initial-cluster. A member with an empty log asks Options.Existing
// before bootstrapping, so that a host added to a running cluster joins
// it instead. A member removed while cut off is told so by the others
// when it talks to them again (removedNotice), and leaves itself out of
// Members.
//
// Storage (storage.go) is one bbolt file in Options.Dir holding the
// HardState, the entries since the last snapshot and the snapshot (with
// its ConfState). At start the file is loaded into raft's MemoryStorage
// and the state machine restored from the snapshot; raft replays the
// committed entries after it. Every SnapshotEntries applied entries the
// state machine (the kept versions and the member names, a few KB) is
// snapshotted and the log compacted; a member too far behind receives the
// snapshot from the leader.
//
// Availability. Propose and Read wait until this member is in contact
// with a majority (Contact: the leader is known and heard from within an
// election timeout, or this member leads and hears a majority); when
// their context ends first they return a *NoQuorumError naming the
// members not heard from, and nothing was acknowledged. A proposal that
// entered a deposed leader's log is replaced by the new leader's entries
// when the partition heals. A proposal forwarded to a leader that died
// is lost silently, so Propose proposes again when a new leader appears
// (the compare-and-set makes a second copy a no-op); a forwarded proposal
// that reaches a member with no leader waits in raft, in a goroutine of
// its own, never in the Ready loop. CheckQuorum makes a leader cut off from the
// majority step down; PreVote keeps a member coming back from a
// partition from disrupting the leader. Current answers from the applied
// state on every member (it may lag); Read is linearizable (raft's
// ReadIndex).
//
// Transport is one method, Send; received messages go to Node.Deliver,
// which never blocks. Each peer has its own sending goroutine and bounded
// queue, so a slow or dead peer holds up no one. The Memberlist adapter
// frames messages with MsgPrefix and the sender's name, small ones as
// memberlist packets and large ones over its TCP stream, both encrypted
// with the keyring; package consensustest has an in-memory network with
// cuttable links for tests.
package consensus
