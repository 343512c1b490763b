package consensus

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"slices"
	"sync"
	"time"

	"go.etcd.io/raft/v3"
	pb "go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"

	"github.com/edgelb/edgelb/cluster"
	"github.com/edgelb/edgelb/lb/notify"
)

// Defaults of Options.
const (
	DefaultTick            = 100 * time.Millisecond
	DefaultElectionTicks   = 10
	DefaultSnapshotEntries = 1024
)

// Options configures a Node.
type Options struct {
	// Name is this member's name (its memberlist name). Its raft ID is
	// derived from it (IDOf).
	Name string
	// Peers is the configured cluster, this member included, the same
	// list on every host: a new cluster's first log entries are made from
	// it, identically everywhere, as etcd's initial-cluster. It is read
	// only when Dir holds no log yet; afterwards the member set is the
	// one in the log (AddMember, RemoveMember).
	Peers []string
	// Join starts a member with an empty log that a running cluster adds
	// with AddMember: it makes no first entries of its own and waits for
	// the leader to send it the log.
	Join bool
	// Existing, when set, is asked by Run before a member whose log is
	// empty bootstraps (Join false): true makes it join, as with Join.
	// A host started from a file that lists the cluster it is being
	// added to must never bootstrap: its first entries would contradict
	// the running cluster's log. It may block until it knows, up to ctx.
	Existing func(ctx context.Context) (bool, error)
	// Dir is the directory of the log file (FileName). It must exist.
	Dir string
	// Transport carries messages to the other members.
	Transport Transport
	// Tick is raft's clock period; 0 means DefaultTick. The heartbeat is
	// one tick, the election timeout ElectionTicks ticks.
	Tick time.Duration
	// ElectionTicks is the election timeout in ticks; 0 means
	// DefaultElectionTicks.
	ElectionTicks int
	// History bounds the versions kept; 0 means cluster.DefaultHistory.
	// Every member must use the same bound: it is part of the state
	// machine.
	History int
	// SnapshotEntries is how many entries the log grows by before a
	// snapshot replaces them; 0 means DefaultSnapshotEntries.
	SnapshotEntries int
	// Now is the clock of the versions' times and of the contact
	// tracking; nil means time.Now.
	Now func() time.Time
	Log *slog.Logger
}

// IDOf is the raft ID of a member name: the same on every host, never 0.
func IDOf(name string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(name))
	if id := h.Sum64(); id != 0 {
		return id
	}
	return 1
}

// Errors.
var (
	// ErrNoQuorum: no majority of the configured members could be
	// reached; the change was not acknowledged. Errors that wrap it are
	// *NoQuorumError.
	ErrNoQuorum = errors.New("no majority of the cluster is reachable")
	// ErrStopped: the node's Run has returned. (Calls made before Run
	// starts wait for it, up to their context.)
	ErrStopped = errors.New("the consensus node is not running")
)

// ErrStale and ErrNoVersion are cluster's, so that a Node stands in for
// cluster.Docs behind the same error checks.
var (
	ErrStale     = cluster.ErrStale
	ErrNoVersion = cluster.ErrNoVersion
)

// NoQuorumError names the members this one could not reach.
type NoQuorumError struct {
	Unreachable []string
	// Err is why the wait ended (the context's error), if it did.
	Err error
}

func (e *NoQuorumError) Error() string {
	s := "no majority of the cluster is reachable"
	if len(e.Unreachable) > 0 {
		s = fmt.Sprintf("%s (unreachable: %s)", s, joinNames(e.Unreachable))
	}
	return s + ": nothing was changed"
}

// Is makes errors.Is(err, ErrNoQuorum) true.
func (e *NoQuorumError) Is(target error) bool { return target == ErrNoQuorum }

// Unwrap returns the context's error, if any.
func (e *NoQuorumError) Unwrap() error { return e.Err }

func joinNames(names []string) string {
	b, _ := json.Marshal(names)
	return string(b[1 : len(b)-1])
}

// Node is one member of the replicated configuration. Its methods are
// safe for concurrent use; Propose, Seed, Read, AddMember and
// RemoveMember wait for Run to be running.
type Node struct {
	opts Options
	id   uint64
	log  *slog.Logger

	st    *store
	ms    *raft.MemoryStorage
	fresh bool // no log in Dir: bootstrap (or join)

	inbox chan *inbound

	mu sync.Mutex
	// confState and snapIndex are written by the Ready loop alone.
	confState *pb.ConfState
	snapIndex uint64
	rn        raft.Node // nil unless Run is running
	stopped   bool      // Run has returned
	fsm       fsm
	applied   uint64
	names     map[uint64]string // every name learnt: Peers, messages, the log
	contact   map[string]time.Time
	lead      uint64
	waiters   map[string]chan result
	reads     map[string]chan uint64
	// changed signals a new current version; progress any applied entry
	// or change of leader.
	changed  notify.Broadcaster
	progress notify.Broadcaster
	// members serializes membership changes: raft refuses a second one
	// while one is pending.
	members sync.Mutex
	// removed: a member told this one it was removed from the cluster
	// (removedNotice), an entry this member never received because it was
	// cut off at the time; Members leaves it out. Adding it again clears it.
	removed bool
	// told is when each removed member that still talks was last told.
	told map[uint64]time.Time
}

// removedNotice is the Context of the message that tells a member it was
// removed: a MsgUnreachable, which raft never sends over the network.
const removedNotice = "edgelb: you were removed from the cluster"

type inbound struct {
	from string
	m    *pb.Message
}

type result struct {
	doc cluster.Doc
	err error
}

// inboxSize bounds the received messages waiting for the Ready loop;
// past it they are dropped, which raft tolerates, so Deliver never
// blocks a transport.
const inboxSize = 1024

// New checks opts and reads the log in opts.Dir; it starts nothing. The
// log file stays open until Run returns.
func New(opts Options) (*Node, error) {
	if err := opts.check(); err != nil {
		return nil, err
	}
	if opts.Tick <= 0 {
		opts.Tick = DefaultTick
	}
	if opts.ElectionTicks <= 0 {
		opts.ElectionTicks = DefaultElectionTicks
	}
	if opts.History <= 0 {
		opts.History = cluster.DefaultHistory
	}
	if opts.SnapshotEntries <= 0 {
		opts.SnapshotEntries = DefaultSnapshotEntries
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	st, l, err := openStore(opts.Dir)
	if err != nil {
		return nil, err
	}
	n := &Node{opts: opts, id: IDOf(opts.Name), log: opts.Log, st: st, ms: raft.NewMemoryStorage(),
		fresh: l.empty(), inbox: make(chan *inbound, inboxSize), names: map[uint64]string{},
		contact: map[string]time.Time{}, told: map[uint64]time.Time{}, waiters: map[string]chan result{}, reads: map[string]chan uint64{}}
	n.fsm.Names, n.fsm.Removed = map[uint64]string{}, map[uint64]string{}
	for _, p := range append([]string{opts.Name}, opts.Peers...) {
		n.names[IDOf(p)] = p
	}
	n.confState = &pb.ConfState{}
	if !raft.IsEmptySnap(l.snap) {
		if err := n.ms.ApplySnapshot(l.snap); err != nil {
			st.close()
			return nil, fmt.Errorf("loading the snapshot: %w", err)
		}
		if err := n.fsm.restore(l.snap.GetData()); err != nil {
			st.close()
			return nil, err
		}
		n.applied = l.snap.GetMetadata().GetIndex()
		n.snapIndex = n.applied
		n.confState = proto.Clone(l.snap.GetMetadata().GetConfState()).(*pb.ConfState)
		for id, name := range n.fsm.Names {
			n.names[id] = name
		}
	}
	if l.hard != nil {
		if err := n.ms.SetHardState(l.hard); err != nil {
			st.close()
			return nil, fmt.Errorf("loading the hard state: %w", err)
		}
	}
	if err := n.ms.Append(l.entries); err != nil {
		st.close()
		return nil, fmt.Errorf("loading the log entries: %w", err)
	}
	return n, nil
}

func (o *Options) check() error {
	if o.Name == "" {
		return errors.New("consensus: Options.Name is empty: give this member's name")
	}
	if o.Dir == "" {
		return errors.New("consensus: Options.Dir is empty: give the directory of the log")
	}
	if o.Transport == nil {
		return errors.New("consensus: Options.Transport is nil: give the transport to the other members")
	}
	seen := map[uint64]string{}
	for _, p := range o.Peers {
		if p == "" {
			return errors.New("consensus: Options.Peers lists an empty name: list each member's name")
		}
		if prev, ok := seen[IDOf(p)]; ok {
			if prev == p {
				return fmt.Errorf("consensus: Options.Peers lists %q twice: list each member once", p)
			}
			return fmt.Errorf("consensus: Options.Peers: %q and %q have the same raft ID: rename one of them", prev, p)
		}
		seen[IDOf(p)] = p
	}
	if !o.Join && !slices.Contains(o.Peers, o.Name) {
		return fmt.Errorf("consensus: Options.Peers does not list this member %q: list every member, this one included (or set Join to be added to a running cluster)", o.Name)
	}
	return nil
}

// Name is this member's name.
func (n *Node) Name() string { return n.opts.Name }

func (n *Node) nameOf(id uint64) (string, bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	name, ok := n.names[id]
	return name, ok
}

func (n *Node) running() raft.Node {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.rn
}

// Deliver hands the node a message the transport received from the
// member named from. It never blocks: a message that finds the node busy
// or stopped is dropped, and raft sends again.
func (n *Node) Deliver(from string, msg []byte) {
	m := &pb.Message{}
	if err := proto.Unmarshal(msg, m); err != nil {
		n.log.Debug("decoding a raft message", "node", from, "err", err)
		return
	}
	if m.GetFrom() != IDOf(from) || m.GetTo() != n.id {
		n.log.Debug("dropping a raft message not from or not to its member", "node", from)
		return
	}
	if m.GetType() == pb.MsgUnreachable {
		if string(m.GetContext()) == removedNotice {
			n.toldRemoved(from)
		}
		return
	}
	n.mu.Lock()
	n.names[m.GetFrom()] = from
	n.contact[from] = n.opts.Now()
	n.tellRemovedLocked(from, m.GetFrom())
	n.mu.Unlock()
	select {
	case n.inbox <- &inbound{from: from, m: m}:
	default:
	}
}

// tellRemovedLocked tells the member from (raft ID id) that it was
// removed, when the log removed it and it still talks to this member: cut
// off when it was removed, it never received the entry, and the others
// send it nothing any more. Once per election timeout at most.
func (n *Node) tellRemovedLocked(from string, id uint64) {
	if _, ok := n.fsm.Removed[id]; !ok || slices.Contains(n.confState.GetVoters(), id) || slices.Contains(n.confState.GetLearners(), id) {
		return
	}
	now := n.opts.Now()
	if t, ok := n.told[id]; ok && now.Sub(t) < time.Duration(n.opts.ElectionTicks)*n.opts.Tick {
		return
	}
	n.told[id] = now
	b, err := proto.Marshal(&pb.Message{Type: pb.MsgUnreachable.Enum(), From: new(n.id), To: new(id), Context: []byte(removedNotice)})
	if err != nil {
		return
	}
	n.log.Info("telling a removed member that it was removed", "node", from)
	go func() {
		if err := n.opts.Transport.Send(from, b); err != nil {
			n.log.Debug("telling a removed member", "node", from, "err", err)
		}
	}()
}

// toldRemoved takes the word of from, a member, that this one was
// removed.
func (n *Node) toldRemoved(from string) {
	n.mu.Lock()
	if n.removed || !slices.Contains(n.confState.GetVoters(), IDOf(from)) {
		n.mu.Unlock()
		return
	}
	n.removed = true
	n.mu.Unlock()
	n.log.Warn("this member was removed from the cluster while it was cut off: it no longer counts itself a member; stop edgelb here, or add it again (edgelb members add)", "told by", from)
	n.progress.Notify()
	n.changed.Notify()
}

// Run runs the node until ctx ends, then closes the log file: a Node
// runs once (a restart is a new Node on the same Dir).
func (n *Node) Run(ctx context.Context) error {
	defer n.st.close()
	c := &raft.Config{
		ID:              n.id,
		ElectionTick:    n.opts.ElectionTicks,
		HeartbeatTick:   1,
		Storage:         n.ms,
		Applied:         n.applied,
		MaxSizePerMsg:   1 << 20,
		MaxInflightMsgs: 256,
		// A leader that cannot commit stops taking proposals rather than
		// growing its log without bound.
		MaxUncommittedEntriesSize: 8 << 20,
		// CheckQuorum makes a leader cut off from the majority step
		// down, and PreVote keeps a member that was cut off from
		// disrupting the leader when it comes back.
		CheckQuorum:       true,
		PreVote:           true,
		StepDownOnRemoval: true,
		Logger:            raftLogger{n.log},
	}
	join := n.opts.Join
	if n.fresh && !join && n.opts.Existing != nil {
		var err error
		if join, err = n.opts.Existing(ctx); err != nil {
			if ctx.Err() != nil {
				n.mu.Lock()
				n.stopped = true
				n.mu.Unlock()
				n.progress.Notify()
				return nil
			}
			return fmt.Errorf("finding out whether a cluster runs already: %w", err)
		}
		if join {
			n.log.Info("a cluster runs already: joining it, with an empty log, once it adds this member (edgelb members add)")
		}
	}
	var rn raft.Node
	if n.fresh && !join {
		peers := make([]raft.Peer, 0, len(n.opts.Peers))
		for _, p := range n.opts.Peers {
			ctx, _ := json.Marshal(memberChange{Name: p})
			peers = append(peers, raft.Peer{ID: IDOf(p), Context: ctx})
		}
		// Every host bootstraps from the same list, in the same order,
		// so their first entries are identical.
		slices.SortFunc(peers, func(a, b raft.Peer) int { return cmp.Compare(a.ID, b.ID) })
		rn = raft.StartNode(c, peers)
	} else {
		rn = raft.RestartNode(c)
	}
	n.mu.Lock()
	n.rn = rn
	n.mu.Unlock()

	sctx, cancel := context.WithCancel(ctx)
	out := &senders{n: n, rn: rn, ctx: sctx, byPeer: map[uint64]*sender{}}
	defer func() {
		n.mu.Lock()
		n.rn, n.stopped = nil, true
		n.mu.Unlock()
		cancel()
		out.wait()
		rn.Stop()
		n.progress.Notify()
	}()

	ticker := time.NewTicker(n.opts.Tick)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-ticker.C:
			rn.Tick()
		case in := <-n.inbox:
			if in.m.GetType() == pb.MsgProp {
				// A proposal a follower forwarded waits in raft until
				// this member knows a leader: never in this loop, which
				// would stop with it.
				out.wg.Go(func() {
					pctx, cancel := context.WithTimeout(sctx, time.Duration(n.opts.ElectionTicks)*n.opts.Tick)
					defer cancel()
					if err := rn.Step(pctx, in.m); err != nil && sctx.Err() == nil {
						n.log.Debug("dropping a forwarded proposal", "node", in.from, "err", err)
					}
				})
				continue
			}
			if err := rn.Step(ctx, in.m); err != nil && ctx.Err() == nil {
				n.log.Debug("stepping a raft message", "node", in.from, "err", err)
			}
		case rd := <-rn.Ready():
			if err := n.ready(rn, out, rd); err != nil {
				return err
			}
			rn.Advance()
		}
	}
}

// ready handles one Ready in the order raft requires: persist the
// HardState, entries and snapshot; only then send the messages (a vote or
// an append acknowledged must survive a crash); apply what is committed.
func (n *Node) ready(rn raft.Node, out *senders, rd raft.Ready) error {
	if rd.SoftState != nil {
		n.mu.Lock()
		if n.lead != rd.SoftState.Lead {
			n.lead = rd.SoftState.Lead
			n.log.Info("consensus leader", "leader", n.names[n.lead])
		}
		n.mu.Unlock()
		n.progress.Notify()
	}
	if err := n.st.save(rd.HardState, rd.Entries, rd.Snapshot); err != nil {
		return fmt.Errorf("persisting the consensus log: %w", err)
	}
	if !raft.IsEmptySnap(rd.Snapshot) {
		if err := n.ms.ApplySnapshot(rd.Snapshot); err != nil {
			return fmt.Errorf("taking a snapshot: %w", err)
		}
		if err := n.restore(rd.Snapshot); err != nil {
			return err
		}
	}
	if !raft.IsEmptyHardState(rd.HardState) {
		if err := n.ms.SetHardState(rd.HardState); err != nil {
			return err
		}
	}
	if err := n.ms.Append(rd.Entries); err != nil {
		return fmt.Errorf("appending to the log: %w", err)
	}
	for _, m := range rd.Messages {
		if m.GetType() == pb.MsgSnap {
			n.freshen(m)
		}
	}
	out.send(rd.Messages)
	n.readStates(rd.ReadStates)
	if err := n.apply(rn, rd.CommittedEntries); err != nil {
		return err
	}
	return n.maybeSnapshot()
}
