package consensus

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"github.com/edgelb/edgelb/cluster"
)

// op is a normal log entry: a proposed version. Everything the apply
// step needs is in it (the proposer's clock and name included), so that
// every replica makes the same version from it.
type op struct {
	// ID matches the entry to the Propose call waiting for it.
	ID        string    `json:"id"`
	Body      []byte    `json:"body"`
	By        string    `json:"by"`
	Member    string    `json:"member"`
	At        time.Time `json:"at"`
	IfVersion uint64    `json:"ifVersion"`
	// Import, in a seed (IfVersion 0) only, is the history an older
	// release kept (cluster-config.json, last-writer-wins), oldest
	// first: it becomes the log's history as it is, numbers, authors and
	// times included, so that an upgrade loses none of it. Body is then
	// unused.
	Import []cluster.Doc `json:"import,omitempty"`
}

// memberChange is the Context of a ConfChange entry.
type memberChange struct {
	ID   string `json:"id,omitempty"`
	Name string `json:"name"`
}

// fsm is the replicated state machine: the kept versions of the cluster
// configuration, oldest first (the last is the current one), and the
// names of the members, which raft knows only by ID. It is the snapshot's
// content.
type fsm struct {
	History []cluster.Doc     `json:"history"`
	Names   map[uint64]string `json:"names"`
	// Removed are the members removed (and not added since), so that one
	// that did not learn of it, cut off at the time, can be told.
	Removed map[uint64]string `json:"removed,omitempty"`
}

func (f *fsm) current() (cluster.Doc, bool) {
	if len(f.History) == 0 {
		return cluster.Doc{}, false
	}
	return f.History[len(f.History)-1], true
}

// apply takes a proposed version. The compare-and-set happens here, in
// log order, identically on every replica: of two proposals made from
// the same version the first in the log wins and the second is stale.
func (f *fsm) apply(o op, keep int) (cluster.Doc, error) {
	cur, ok := f.current()
	if cur.Version != o.IfVersion {
		return cluster.Doc{}, cluster.ErrStale
	}
	if len(o.Import) > 0 && !ok {
		f.History = slices.Clone(o.Import)
		if n := len(f.History) - keep; n > 0 {
			f.History = slices.Delete(f.History, 0, n)
		}
		d, _ := f.current()
		return d, nil
	}
	parent := ""
	if ok {
		parent = cur.ID()
	}
	sum := sha256.Sum256(o.Body)
	d := cluster.Doc{Version: cur.Version + 1, UpdatedAt: o.At.UTC(), UpdatedBy: o.By, Member: o.Member,
		Parent: parent, Body: slices.Clone(o.Body), Hash: hex.EncodeToString(sum[:])}
	f.History = append(f.History, d)
	if n := len(f.History) - keep; n > 0 {
		f.History = slices.Delete(f.History, 0, n)
	}
	return d, nil
}

func (f *fsm) current0() uint64 {
	d, _ := f.current()
	return d.Version
}

func (f *fsm) marshal() ([]byte, error) { return json.Marshal(f) }

func (f *fsm) restore(b []byte) error {
	var n fsm
	if len(b) > 0 {
		if err := json.Unmarshal(b, &n); err != nil {
			return fmt.Errorf("decoding the snapshot's state: %w", err)
		}
	}
	if n.Names == nil {
		n.Names = map[uint64]string{}
	}
	if n.Removed == nil {
		n.Removed = map[uint64]string{}
	}
	*f = n
	return nil
}
