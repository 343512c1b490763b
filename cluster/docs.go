package cluster

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/edgelb/edgelb/lb/notify"
)

// Doc is one version of the replicated document (the cluster
// configuration). The cluster package never reads Body: the app checks it
// with DocOptions.Validate before a version is taken.
type Doc struct {
	Version   uint64    `json:"version"`
	UpdatedAt time.Time `json:"updatedAt"`
	// UpdatedBy says who made the version (a token's name, "file").
	UpdatedBy string `json:"updatedBy"`
	// Member is the member the version was made on.
	Member string `json:"member"`
	// Parent is the ID of the version this one was made from; "" for a
	// seed.
	Parent string `json:"parent,omitempty"`
	Body   []byte `json:"body"`
	// Hash is the hex SHA-256 of Body.
	Hash string `json:"hash"`
}

// ID names a version: its number and content.
func (d Doc) ID() string { return fmt.Sprintf("%d:%s", d.Version, d.Hash) }

// Compare orders versions the same way on every member: the higher
// version wins, then (two partitions made the same version) the higher
// hash, then the later time and the member name, so that members that saw
// different edits all pick the same one.
func (d Doc) Compare(o Doc) int {
	return cmp.Or(
		cmp.Compare(d.Version, o.Version),
		cmp.Compare(d.Hash, o.Hash),
		d.UpdatedAt.Compare(o.UpdatedAt),
		cmp.Compare(d.Member, o.Member),
		cmp.Compare(d.UpdatedBy, o.UpdatedBy),
	)
}

func hashBody(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// HistoryEntry is a version in the history. Lost: it was made in a
// partition whose edits lost to the other side's (it is not an ancestor of
// the current version).
type HistoryEntry struct {
	Doc
	Lost bool `json:"lost"`
}

// Errors of Docs' writes.
var (
	// ErrStale: the version the change was made from is not the current
	// one.
	ErrStale = errors.New("the configuration changed meanwhile: the version given is not the current one")
	// ErrNoVersion: the version asked for is not in the history.
	ErrNoVersion = errors.New("no such version in the history")
)

// DefaultHistory is how many versions Docs keeps.
const DefaultHistory = 50

// DocOptions configures Docs.
type DocOptions struct {
	// Name is this member's name, recorded in the versions it makes.
	Name string
	// Path is the file the versions are persisted in; "" keeps nothing.
	Path string
	// Validate checks a body before it becomes the current version (from
	// the persisted file or a local write); nil accepts all.
	Validate func(body []byte) error
	// History bounds the versions kept; 0 means DefaultHistory.
	History int
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	Log *slog.Logger
}

// Docs is a versioned document kept by one host: the versions of an
// insecure cluster's host (cluster.insecure: nothing replicates) and the
// file an older release kept, read once on upgrade. Earlier releases
// replicated it to every member by last writer wins; the cluster
// configuration now replicates only through the consensus log
// (cluster/consensus), and no member sends or takes a Docs version. Its
// methods are safe for concurrent use.
type Docs struct {
	opts DocOptions
	log  *slog.Logger

	mu      sync.Mutex
	current *Doc
	history []Doc // sorted by Compare, oldest first
	changed notify.Broadcaster
}

// docState is the persisted file: the current version and the history
// (as older releases also exchanged it between members).
type docState struct {
	Current *Doc  `json:"current,omitempty"`
	History []Doc `json:"history,omitempty"`
}

// NewDocs reads the persisted versions, if any; it starts nothing.
func NewDocs(opts DocOptions) (*Docs, error) {
	if opts.History <= 0 {
		opts.History = DefaultHistory
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	d := &Docs{opts: opts, log: opts.Log}
	if opts.Path == "" {
		return d, nil
	}
	b, err := os.ReadFile(opts.Path)
	if errors.Is(err, os.ErrNotExist) {
		return d, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading the cluster configuration: %w", err)
	}
	var st docState
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("reading the cluster configuration %s: %w", opts.Path, err)
	}
	d.mergeLocked(st, "persisted")
	return d, nil
}

// Current is the version this member runs.
func (d *Docs) Current() (Doc, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.current == nil {
		return Doc{}, false
	}
	return *d.current, true
}

// Version returns the current version's number, 0 without one.
func (d *Docs) Version() uint64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.current == nil {
		return 0
	}
	return d.current.Version
}

// Subscribe returns a new channel that receives a value (coalesced)
// whenever the current version changes. It starts signalled (see package
// notify): the consumer's first pass reads Current as it is, which may be
// no version yet.
func (d *Docs) Subscribe() <-chan struct{} { return d.changed.Subscribe() }

// Unsubscribe stops signalling ch, a channel Subscribe returned.
func (d *Docs) Unsubscribe(ch <-chan struct{}) { d.changed.Unsubscribe(ch) }

// Seed makes body version 1 when there is no version yet (from the file,
// the persisted copy or a peer); it reports whether it did.
func (d *Docs) Seed(body []byte, by string) (bool, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.current != nil {
		return false, nil
	}
	if err := d.validate(body); err != nil {
		return false, err
	}
	d.makeLocked(body, by, 1, "")
	return true, nil
}

// Propose makes body the next version if the current version is
// ifVersion (ErrStale otherwise).
func (d *Docs) Propose(body []byte, by string, ifVersion uint64) (Doc, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	var cur Doc
	if d.current != nil {
		cur = *d.current
	}
	if cur.Version != ifVersion {
		return Doc{}, ErrStale
	}
	if err := d.validate(body); err != nil {
		return Doc{}, err
	}
	parent := ""
	if d.current != nil {
		parent = cur.ID()
	}
	return d.makeLocked(body, by, cur.Version+1, parent), nil
}

// LocalDocs is Docs with the Propose of consensus.Versions: the versions
// of a host that replicates them to no one (an insecure cluster, tests,
// the dashboard's development server).
type LocalDocs struct{ *Docs }

// Propose is Docs.Propose; ctx is not needed, as nothing is waited for.
func (l LocalDocs) Propose(_ context.Context, body []byte, by string, ifVersion uint64) (Doc, error) {
	return l.Docs.Propose(body, by, ifVersion)
}

// Get returns version n as it was taken on the current line of versions
// (a version lost in a partition only if no other has that number).
func (d *Docs) Get(n uint64) (Doc, error) {
	for _, e := range slices.Backward(d.History()) {
		if e.Version == n && !e.Lost {
			return e.Doc, nil
		}
	}
	for _, e := range d.History() {
		if e.Version == n {
			return e.Doc, nil
		}
	}
	return Doc{}, ErrNoVersion
}

// History returns the kept versions, oldest first, the lost partition
// edits included.
func (d *Docs) History() []HistoryEntry {
	d.mu.Lock()
	defer d.mu.Unlock()
	line := map[string]bool{}
	byID := map[string]Doc{}
	for _, h := range d.history {
		byID[h.ID()] = h
	}
	if d.current != nil {
		for id := d.current.ID(); id != "" && !line[id]; {
			line[id] = true
			h, ok := byID[id]
			if !ok {
				break
			}
			id = h.Parent
		}
	}
	out := make([]HistoryEntry, len(d.history))
	for i, h := range d.history {
		out[i] = HistoryEntry{Doc: h, Lost: !line[h.ID()]}
	}
	return out
}

func (d *Docs) validate(body []byte) error {
	if d.opts.Validate == nil {
		return nil
	}
	return d.opts.Validate(body)
}

// makeLocked makes a new current version here. d.mu must be held.
func (d *Docs) makeLocked(body []byte, by string, version uint64, parent string) Doc {
	doc := Doc{Version: version, UpdatedAt: d.opts.Now().UTC(), UpdatedBy: by, Member: d.opts.Name,
		Parent: parent, Body: slices.Clone(body), Hash: hashBody(body)}
	d.current = &doc
	d.addLocked(doc)
	d.changedLocked()
	d.log.Info("cluster configuration changed", "version", doc.Version, "by", by)
	return doc
}

// addLocked adds doc to the history, keeping the newest. d.mu must be
// held.
func (d *Docs) addLocked(doc Doc) bool {
	if slices.ContainsFunc(d.history, func(h Doc) bool { return h.ID() == doc.ID() }) {
		return false // the same version made on two members (a seed)
	}
	i, _ := slices.BinarySearchFunc(d.history, doc, Doc.Compare)
	d.history = slices.Insert(d.history, i, doc)
	if n := len(d.history) - d.opts.History; n > 0 {
		d.history = slices.Delete(d.history, 0, n)
	}
	return true
}

func (d *Docs) changedLocked() {
	d.changed.Notify()
	if err := d.persistLocked(); err != nil {
		d.log.Error("persisting the cluster configuration", "err", err)
	}
}

// mergeLocked takes versions read from the persisted file.
func (d *Docs) mergeLocked(st docState, from string) {
	changed := false
	for _, h := range st.History {
		if h.Hash != hashBody(h.Body) {
			continue
		}
		changed = d.addLocked(h) || changed
	}
	if c := st.Current; c != nil && c.Hash == hashBody(c.Body) && (d.current == nil || c.Compare(*d.current) > 0) {
		if err := d.validate(c.Body); err != nil {
			d.log.Warn("refusing a cluster configuration that does not validate here", "version", c.Version, "from", from, "err", err)
		} else {
			if d.current != nil {
				d.log.Info("cluster configuration replaced by a newer version", "version", c.Version, "was", d.current.Version, "from", from, "by", c.UpdatedBy)
			}
			doc := *c
			d.current = &doc
			d.addLocked(doc)
			d.changed.Notify()
			changed = true
		}
	}
	if changed && from != "persisted" {
		if err := d.persistLocked(); err != nil {
			d.log.Error("persisting the cluster configuration", "err", err)
		}
	}
}

// persistLocked writes the versions atomically: a temporary file, fsync,
// rename, fsync of the directory. d.mu must be held.
func (d *Docs) persistLocked() error {
	if d.opts.Path == "" {
		return nil
	}
	b, err := json.Marshal(docState{Current: d.current, History: d.history})
	if err != nil {
		return err
	}
	return writeFileAtomic(d.opts.Path, b)
}

func writeFileAtomic(path string, b []byte) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer os.Remove(tmp) // after the rename there is nothing left to remove
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Chmod(tmp, 0o600); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	if dh, err := os.Open(dir); err == nil {
		err = dh.Sync()
		dh.Close()
		return err
	}
	return nil
}

// followConfig gossips Meta again whenever Options.Config's version
// changes, so that every member shows which version each runs.
func (c *Cluster) followConfig(ctx context.Context) {
	if c.opts.Config == nil {
		return
	}
	changed := c.opts.Config.Subscribe()
	defer c.opts.Config.Unsubscribe(changed)
	for {
		select {
		case <-ctx.Done():
			return
		case <-changed:
			c.kick()
			select {
			case c.metaDirty <- struct{}{}:
			default:
			}
		}
	}
}
