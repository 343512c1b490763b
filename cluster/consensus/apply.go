package consensus

import (
	"encoding/json"
	"errors"
	"fmt"

	"go.etcd.io/raft/v3"
	pb "go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

// restore replaces the state machine with a snapshot's, received from
// the leader.
func (n *Node) restore(snap *pb.Snapshot) error {
	var f fsm
	if err := f.restore(snap.GetData()); err != nil {
		return err
	}
	n.mu.Lock()
	n.confState = proto.Clone(snap.GetMetadata().GetConfState()).(*pb.ConfState)
	n.snapIndex = snap.GetMetadata().GetIndex()
	n.fsm = f
	n.applied = n.snapIndex
	for id, name := range f.Names {
		n.names[id] = name
	}
	n.mu.Unlock()
	n.changed.Notify()
	n.progress.Notify()
	n.log.Info("consensus state taken from a snapshot", "index", n.snapIndex)
	return nil
}

// apply applies committed entries to the state machine and answers the
// local callers waiting for them.
func (n *Node) apply(rn raft.Node, ents []*pb.Entry) error {
	if len(ents) == 0 {
		return nil
	}
	changed := false
	for _, e := range ents {
		idx := e.GetIndex()
		n.mu.Lock()
		applied := n.applied
		n.mu.Unlock()
		if idx <= applied {
			continue // in the snapshot already
		}
		switch e.GetType() {
		case pb.EntryNormal:
			if len(e.GetData()) > 0 {
				changed = n.applyOp(e.GetData()) || changed
			}
		case pb.EntryConfChange:
			var cc pb.ConfChange
			if err := proto.Unmarshal(e.GetData(), &cc); err != nil {
				return fmt.Errorf("decoding membership change %d: %w", idx, err)
			}
			cs := rn.ApplyConfChange(&cc)
			n.mu.Lock()
			n.confState = cs
			n.mu.Unlock()
			n.applyMember(&cc)
		case pb.EntryConfChangeV2:
			var cc pb.ConfChangeV2
			if err := proto.Unmarshal(e.GetData(), &cc); err != nil {
				return fmt.Errorf("decoding membership change %d: %w", idx, err)
			}
			cs := rn.ApplyConfChange(&cc)
			n.mu.Lock()
			n.confState = cs
			n.mu.Unlock()
		}
		n.mu.Lock()
		n.applied = idx
		n.mu.Unlock()
	}
	if changed {
		n.changed.Notify()
	}
	n.progress.Notify()
	return nil
}

func (n *Node) applyOp(data []byte) bool {
	var o op
	if err := json.Unmarshal(data, &o); err != nil {
		// Every replica skips it alike.
		n.log.Error("skipping a log entry that does not decode", "err", err)
		return false
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	d, err := n.fsm.apply(o, n.opts.History)
	if err == nil {
		n.log.Info("cluster configuration committed", "version", d.Version, "by", d.UpdatedBy, "member", d.Member)
	}
	if w, ok := n.waiters[o.ID]; ok {
		w <- result{doc: d, err: err}
		delete(n.waiters, o.ID)
	}
	return err == nil
}

func (n *Node) applyMember(cc *pb.ConfChange) {
	var mc memberChange
	_ = json.Unmarshal(cc.GetContext(), &mc)
	n.mu.Lock()
	defer n.mu.Unlock()
	id := cc.GetNodeId()
	switch cc.GetType() {
	case pb.ConfChangeAddNode, pb.ConfChangeAddLearnerNode, pb.ConfChangeUpdateNode:
		if mc.Name != "" {
			n.fsm.Names[id] = mc.Name
			n.names[id] = mc.Name
		}
		delete(n.fsm.Removed, id)
		if id == n.id {
			n.removed = false
		}
		n.log.Info("consensus member added", "node", n.names[id])
	case pb.ConfChangeRemoveNode:
		delete(n.fsm.Names, id)
		n.fsm.Removed[id] = n.names[id]
		n.log.Info("consensus member removed", "node", n.names[id])
	}
	if w, ok := n.waiters[mc.ID]; ok && mc.ID != "" {
		w <- result{}
		delete(n.waiters, mc.ID)
	}
}

// maybeSnapshot replaces the log by a snapshot of the state machine once
// it has grown by SnapshotEntries, keeping a quarter as many entries so
// that a member a little behind still catches up from the log.
func (n *Node) maybeSnapshot() error {
	n.mu.Lock()
	applied, snapIndex, cs := n.applied, n.snapIndex, n.confState
	every := uint64(n.opts.SnapshotEntries)
	if applied-snapIndex < every {
		n.mu.Unlock()
		return nil
	}
	data, err := n.fsm.marshal()
	n.mu.Unlock()
	if err != nil {
		return err
	}
	snap, err := n.ms.CreateSnapshot(applied, cs, data)
	if err != nil {
		return fmt.Errorf("making a snapshot at %d: %w", applied, err)
	}
	compact := applied - every/4
	if err := n.st.compact(snap, compact); err != nil {
		return fmt.Errorf("persisting a snapshot at %d: %w", applied, err)
	}
	if compact > snapIndex {
		if err := n.ms.Compact(compact); err != nil && !errors.Is(err, raft.ErrCompacted) {
			return fmt.Errorf("compacting the log to %d: %w", compact, err)
		}
	}
	n.mu.Lock()
	n.snapIndex = applied
	n.mu.Unlock()
	n.log.Debug("consensus snapshot", "index", applied)
	return nil
}

// freshen replaces the snapshot a MsgSnap carries, the last one stored,
// with one of the state applied now, as etcd does: a member just added
// is in no stored snapshot's ConfState yet, and raft refuses a snapshot
// that does not list it.
func (n *Node) freshen(m *pb.Message) {
	n.mu.Lock()
	applied, cs := n.applied, proto.Clone(n.confState).(*pb.ConfState)
	data, err := n.fsm.marshal()
	n.mu.Unlock()
	if err != nil || applied <= m.GetSnapshot().GetMetadata().GetIndex() {
		return
	}
	term, err := n.ms.Term(applied)
	if err != nil {
		return
	}
	m.Snapshot = &pb.Snapshot{Data: data, Metadata: &pb.SnapshotMetadata{ConfState: cs, Index: new(applied), Term: new(term)}}
}

func (n *Node) readStates(rs []raft.ReadState) {
	if len(rs) == 0 {
		return
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, r := range rs {
		if w, ok := n.reads[string(r.RequestCtx)]; ok {
			w <- r.Index
			delete(n.reads, string(r.RequestCtx))
		}
	}
}
