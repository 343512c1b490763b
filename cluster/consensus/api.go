package consensus

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"go.etcd.io/raft/v3"
	pb "go.etcd.io/raft/v3/raftpb"

	"github.com/edgelb/edgelb/cluster"
)

// Versions is what the API's configuration needs from the replicated
// versions: a Node provides it, and cluster.Docs does once its Propose
// takes a context.
type Versions interface {
	Current() (cluster.Doc, bool)
	Propose(ctx context.Context, body []byte, by string, ifVersion uint64) (cluster.Doc, error)
	Get(version uint64) (cluster.Doc, error)
	History() []cluster.HistoryEntry
	Subscribe() <-chan struct{}
	Unsubscribe(ch <-chan struct{})
}

var _ Versions = (*Node)(nil)

// Contact says whether this member can reach a majority of the
// configured cluster, as a read reports it.
type Contact struct {
	// Quorum: a leader is known and in recent contact (this member, or
	// the leader it heard from within an election timeout).
	Quorum bool
	// Leader is the leader's name, "" when none is known.
	Leader string
	// Unreachable lists the members not heard from within an election
	// timeout; a follower that hears its leader lists none (followers do
	// not talk to each other).
	Unreachable []string
}

// Contact reports this member's contact with the cluster.
func (n *Node) Contact() Contact {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.contactLocked()
}

func (n *Node) contactLocked() Contact {
	if n.rn == nil {
		return Contact{Unreachable: n.votersLocked(false)}
	}
	now := n.opts.Now()
	window := time.Duration(n.opts.ElectionTicks) * n.opts.Tick
	heard := func(name string) bool {
		t, ok := n.contact[name]
		return name == n.opts.Name || ok && now.Sub(t) <= window
	}
	var c Contact
	if n.lead != raft.None {
		c.Leader = n.names[n.lead]
	}
	voters := n.votersLocked(true)
	reached := 0
	for _, v := range voters {
		if heard(v) {
			reached++
		} else {
			c.Unreachable = append(c.Unreachable, v)
		}
	}
	switch {
	case n.removed:
		// Told it is no longer a member: whatever it still hears, it
		// speaks for no majority.
	case n.lead == n.id:
		c.Quorum = reached > len(voters)/2
	case n.lead != raft.None && heard(c.Leader):
		c.Quorum = true
		c.Unreachable = nil
	}
	return c
}

// votersLocked lists the voting members' names, sorted; self says
// whether to list this member too.
func (n *Node) votersLocked(self bool) []string {
	var out []string
	for _, id := range n.confState.GetVoters() {
		if id == n.id && (!self || n.removed) {
			continue
		}
		name, ok := n.names[id]
		if !ok {
			name = fmt.Sprintf("%x", id)
		}
		out = append(out, name)
	}
	slices.Sort(out)
	return out
}

// Members lists the voting members in the applied configuration.
func (n *Node) Members() []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.votersLocked(true)
}

// Current is the version applied here, which may lag the cluster's
// (Contact says whether this member is in touch; Read is linearizable).
func (n *Node) Current() (cluster.Doc, bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.fsm.current()
}

// Version returns the applied version's number, 0 without one.
func (n *Node) Version() uint64 {
	d, _ := n.Current()
	return d.Version
}

// History returns the kept versions, oldest first. None is ever Lost: a
// version exists only once committed.
func (n *Node) History() []cluster.HistoryEntry {
	n.mu.Lock()
	defer n.mu.Unlock()
	out := make([]cluster.HistoryEntry, len(n.fsm.History))
	for i, d := range n.fsm.History {
		out[i] = cluster.HistoryEntry{Doc: d}
	}
	return out
}

// Get returns version v from the kept history.
func (n *Node) Get(v uint64) (cluster.Doc, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, d := range n.fsm.History {
		if d.Version == v {
			return d, nil
		}
	}
	return cluster.Doc{}, ErrNoVersion
}

// Subscribe returns a new channel that receives a value (coalesced)
// whenever the applied version changes; it starts signalled.
func (n *Node) Subscribe() <-chan struct{} { return n.changed.Subscribe() }

// Unsubscribe stops signalling ch, a channel Subscribe returned.
func (n *Node) Unsubscribe(ch <-chan struct{}) { n.changed.Unsubscribe(ch) }

func newID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// Propose makes body the next version if the committed version is
// ifVersion when the proposal reaches its place in the log (ErrStale
// otherwise). It returns once the version is committed by a majority and
// applied here. When ctx ends first nothing is acknowledged: the error is
// a *NoQuorumError (errors.Is ErrNoQuorum) when no majority is in
// contact, and then the change never commits; otherwise it wraps ctx's
// error, and the change may still commit. A proposal made on a follower
// is forwarded to the leader by raft.
func (n *Node) Propose(ctx context.Context, body []byte, by string, ifVersion uint64) (cluster.Doc, error) {
	o := op{ID: newID(), Body: body, By: by, Member: n.opts.Name, At: n.opts.Now().UTC(), IfVersion: ifVersion}
	data, err := json.Marshal(o)
	if err != nil {
		return cluster.Doc{}, err
	}
	r, err := n.submit(ctx, o.ID, func(rn raft.Node) error { return rn.Propose(ctx, data) })
	if err != nil {
		return cluster.Doc{}, err
	}
	return r.doc, r.err
}

// Seed makes body version 1 when the cluster has no version yet; it
// reports whether it did. Every host may seed with its file: the first
// in the log wins, the others learn they did not.
func (n *Node) Seed(ctx context.Context, body []byte, by string) (bool, error) {
	if _, ok := n.Current(); ok {
		return false, nil
	}
	_, err := n.Propose(ctx, body, by, 0)
	if errors.Is(err, ErrStale) {
		return false, nil
	}
	return err == nil, err
}

// Import makes history (oldest first, numbered) the log's history when
// the cluster has no version yet, as Seed does with one body: an upgrade
// from a release that kept the versions in cluster-config.json keeps
// their numbers, authors and times. It reports whether it did. The
// versions must be numbered in increasing order; the last is current.
func (n *Node) Import(ctx context.Context, history []cluster.Doc) (bool, error) {
	if len(history) == 0 {
		return false, errors.New("nothing to import")
	}
	for i := 1; i < len(history); i++ {
		if history[i].Version <= history[i-1].Version {
			return false, fmt.Errorf("the history to import is not in order: version %d after %d", history[i].Version, history[i-1].Version)
		}
	}
	if _, ok := n.Current(); ok {
		return false, nil
	}
	last := history[len(history)-1]
	o := op{ID: newID(), Body: nil, By: last.UpdatedBy, Member: n.opts.Name, At: n.opts.Now().UTC(), Import: history}
	data, err := json.Marshal(o)
	if err != nil {
		return false, err
	}
	r, err := n.submit(ctx, o.ID, func(rn raft.Node) error { return rn.Propose(ctx, data) })
	if err != nil {
		return false, err
	}
	if errors.Is(r.err, ErrStale) {
		return false, nil
	}
	return r.err == nil, r.err
}

// AddMember adds the member name as a voter and returns once the change
// is committed. The new host then starts with Options.Join.
func (n *Node) AddMember(ctx context.Context, name string) error {
	if name == "" {
		return errors.New("the member's name is empty")
	}
	for _, m := range n.Members() {
		if m == name {
			return fmt.Errorf("%q is a member already", name)
		}
		if IDOf(m) == IDOf(name) {
			return fmt.Errorf("%q has the same raft ID as the member %q: choose another name", name, m)
		}
	}
	return n.changeMember(ctx, pb.ConfChangeAddNode, name)
}

// RemoveMember removes the member name and returns once the change is
// committed.
func (n *Node) RemoveMember(ctx context.Context, name string) error {
	if !slices.Contains(n.Members(), name) {
		return fmt.Errorf("%q is not a member", name)
	}
	return n.changeMember(ctx, pb.ConfChangeRemoveNode, name)
}

func (n *Node) changeMember(ctx context.Context, t pb.ConfChangeType, name string) error {
	n.members.Lock()
	defer n.members.Unlock()
	id := newID()
	mc, _ := json.Marshal(memberChange{ID: id, Name: name})
	cc := &pb.ConfChange{Type: t.Enum(), NodeId: new(IDOf(name)), Context: mc}
	n.mu.Lock()
	n.names[IDOf(name)] = name
	n.mu.Unlock()
	_, err := n.submit(ctx, id, func(rn raft.Node) error { return rn.ProposeConfChange(ctx, cc) })
	return err
}

// submit proposes through propose and waits for the entry id to be
// applied here. It proposes only once a majority is in contact, so that
// a write on the minority side of a partition is refused without
// entering any log where it could wait.
func (n *Node) submit(ctx context.Context, id string, propose func(raft.Node) error) (result, error) {
	if err := n.awaitQuorum(ctx); err != nil {
		return result{}, err
	}
	rn := n.running()
	if rn == nil {
		return result{}, ErrStopped
	}
	w := make(chan result, 1)
	n.mu.Lock()
	n.waiters[id] = w
	n.mu.Unlock()
	defer func() {
		n.mu.Lock()
		delete(n.waiters, id)
		n.mu.Unlock()
	}()
	lead := n.Contact().Leader
	if err := propose(rn); err != nil {
		if ctx.Err() != nil {
			return result{}, n.unconfirmed(ctx.Err())
		}
		return result{}, fmt.Errorf("proposing: %w", err)
	}
	stopped := n.progress.Subscribe()
	defer n.progress.Unsubscribe(stopped)
	// A proposal a follower forwards to a leader that has just died is
	// lost without a word: propose again when a new leader is known, and
	// every election timeout, until it is applied. Applying it twice is
	// harmless: the second copy finds the version it was made from gone
	// (ErrStale) and answers no one; a member added or removed twice is a
	// no-op for raft.
	again := time.NewTicker(time.Duration(n.opts.ElectionTicks) * n.opts.Tick)
	defer again.Stop()
	for {
		select {
		case r := <-w:
			return r, nil
		case <-ctx.Done():
			return result{}, n.unconfirmed(ctx.Err())
		case <-stopped:
			rn := n.running()
			if rn == nil {
				return result{}, ErrStopped
			}
			if c := n.Contact(); c.Quorum && c.Leader != lead {
				lead = c.Leader
				if err := propose(rn); err != nil && ctx.Err() == nil {
					n.log.Debug("proposing again", "err", err)
				}
			}
		case <-again.C:
			if rn := n.running(); rn != nil && n.Contact().Quorum {
				if err := propose(rn); err != nil && ctx.Err() == nil {
					n.log.Debug("proposing again", "err", err)
				}
			}
		}
	}
}

// awaitQuorum waits until a majority is in contact, up to ctx; a Node
// whose Run has not started yet is waited for too.
func (n *Node) awaitQuorum(ctx context.Context) error {
	ch := n.progress.Subscribe()
	defer n.progress.Unsubscribe(ch)
	t := time.NewTicker(n.opts.Tick)
	defer t.Stop()
	for {
		n.mu.Lock()
		stopped := n.stopped
		n.mu.Unlock()
		if stopped {
			return ErrStopped
		}
		if n.Contact().Quorum {
			return nil
		}
		select {
		case <-ctx.Done():
			return n.noQuorum(ctx.Err())
		case <-ch:
		case <-t.C:
		}
	}
}

func (n *Node) noQuorum(err error) error {
	c := n.Contact()
	return &NoQuorumError{Unreachable: c.Unreachable, Err: err}
}

// unconfirmed is the error of a proposal whose context ended after it was
// handed to raft: without a majority in contact it cannot commit (a cut-off
// leader's entries are replaced when the partition heals); with one, it
// may still commit, which the caller learns by reading the version.
func (n *Node) unconfirmed(err error) error {
	if c := n.Contact(); !c.Quorum {
		return &NoQuorumError{Unreachable: c.Unreachable, Err: err}
	}
	return fmt.Errorf("%w before the cluster confirmed the change: it was not acknowledged, "+
		"and may still be committed (read the current version to know)", err)
}

// Read returns the committed version as a linearizable read: the leader
// confirms it still leads (raft's ReadIndex) and this member waits until
// it has applied up to the index the leader gave.
func (n *Node) Read(ctx context.Context) (cluster.Doc, bool, error) {
	if err := n.awaitQuorum(ctx); err != nil {
		return cluster.Doc{}, false, err
	}
	id := newID()
	w := make(chan uint64, 1)
	n.mu.Lock()
	n.reads[id] = w
	n.mu.Unlock()
	defer func() {
		n.mu.Lock()
		delete(n.reads, id)
		n.mu.Unlock()
	}()
	progress := n.progress.Subscribe()
	defer n.progress.Unsubscribe(progress)
	// A read index request is lost when there is no leader, or with the
	// message carrying it: ask again every election timeout.
	retry := time.NewTicker(time.Duration(n.opts.ElectionTicks) * n.opts.Tick)
	defer retry.Stop()
	var index uint64
	asked := false
	for {
		if index == 0 && !asked {
			rn := n.running()
			if rn == nil {
				return cluster.Doc{}, false, ErrStopped
			}
			if err := rn.ReadIndex(ctx, []byte(id)); err != nil {
				return cluster.Doc{}, false, n.noQuorum(ctx.Err())
			}
			asked = true
		}
		if index > 0 {
			n.mu.Lock()
			applied := n.applied
			d, ok := n.fsm.current()
			n.mu.Unlock()
			if applied >= index {
				return d, ok, nil
			}
		}
		select {
		case index = <-w:
		case <-progress:
			if n.running() == nil {
				return cluster.Doc{}, false, ErrStopped
			}
		case <-retry.C:
			asked = false
		case <-ctx.Done():
			return cluster.Doc{}, false, n.noQuorum(ctx.Err())
		}
	}
}
