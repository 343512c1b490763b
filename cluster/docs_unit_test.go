package cluster

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func newTestDocs(t *testing.T, name, path string, history int) *Docs {
	t.Helper()
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	d, err := NewDocs(DocOptions{Name: name, Path: path, Validate: validBody, History: history,
		Now: func() time.Time { now = now.Add(time.Second); return now }})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// Two members that made different versions pick the same one whichever
// order they learn of them, and keep the other in the history.
func TestDocsMergeIsDeterministic(t *testing.T) {
	a, b := newTestDocs(t, "a", "", 0), newTestDocs(t, "b", "", 0)
	a.Seed([]byte(`{"v":1}`), "file")
	b.merge(a.state(), "a")
	a3, _ := a.Propose([]byte(`{"a":2}`), "alice", 1)
	b3, _ := b.Propose([]byte(`{"b":2}`), "bob", 1)
	sa, sb := a.state(), b.state()
	a.merge(sb, "b")
	b.merge(sa, "a")
	ca, _ := a.Current()
	cb, _ := b.Current()
	if ca.ID() != cb.ID() {
		t.Fatalf("a runs %s, b runs %s", ca.Body, cb.Body)
	}
	winner, loser := a3, b3
	if b3.Compare(a3) > 0 {
		winner, loser = b3, a3
	}
	if ca.ID() != winner.ID() {
		t.Errorf("both run %s, want the higher %s", ca.Body, winner.Body)
	}
	for _, d := range []*Docs{a, b} {
		n := 0
		for _, h := range d.History() {
			if h.ID() == loser.ID() && h.Lost {
				n++
			}
		}
		if n != 1 {
			t.Errorf("the loser is not in the history, lost: %+v", d.History())
		}
	}
	// An older version never replaces a newer one, nor an invalid one a
	// valid one.
	old := a.state()
	old.Current = &Doc{Version: 9, Body: []byte(`"invalid"`), Hash: hashBody([]byte(`"invalid"`))}
	a.merge(old, "x")
	if c, _ := a.Current(); c.ID() != winner.ID() {
		t.Errorf("an invalid version 9 replaced the current one: %s", c.Body)
	}
	forged := a.state()
	forged.Current = &Doc{Version: 10, Body: []byte(`{"x":1}`), Hash: "not the hash"}
	a.merge(forged, "x")
	if c, _ := a.Current(); c.ID() != winner.ID() {
		t.Errorf("a version whose hash does not match was taken: %s", c.Body)
	}
}

func TestDocsHistoryIsBoundedAndPersisted(t *testing.T) {
	path := filepath.Join(t.TempDir(), "cluster-config.json")
	d := newTestDocs(t, "a", path, 5)
	d.Seed([]byte(`{"v":1}`), "file")
	for v := uint64(1); v < 8; v++ {
		if _, err := d.Propose([]byte(fmt.Sprintf(`{"v":%d}`, v+1)), "alice", v); err != nil {
			t.Fatal(err)
		}
	}
	if h := d.History(); len(h) != 5 || h[0].Version != 4 || h[4].Version != 8 {
		t.Errorf("history %+v, want versions 4 to 8", h)
	}
	if _, err := d.Get(2); !errors.Is(err, ErrNoVersion) {
		t.Errorf("Get(2) = %v, want ErrNoVersion", err)
	}
	again := newTestDocs(t, "a", path, 5)
	if c, ok := again.Current(); !ok || c.Version != 8 || string(c.Body) != `{"v":8}` {
		t.Errorf("reloaded %+v", c)
	}
	if len(again.History()) != 5 {
		t.Errorf("reloaded history %+v", again.History())
	}
	if seeded, _ := again.Seed([]byte(`{"v":"file"}`), "file"); seeded {
		t.Error("a persisted version was replaced by the file's seed")
	}
	entries, _ := os.ReadDir(filepath.Dir(path))
	if len(entries) != 1 {
		t.Errorf("the state directory holds %d files (a temporary one left?)", len(entries))
	}
}

// The versions sent in one exchange stay under memberlist's push/pull
// limit however large the documents are.
func TestDocsStateIsBounded(t *testing.T) {
	d := newTestDocs(t, "a", "", 50)
	big := make([]byte, 512<<10)
	for i := range big {
		big[i] = 'x'
	}
	d.Seed(big, "file")
	for v := uint64(1); v < 30; v++ {
		body := append([]byte(fmt.Sprint(v)), big...)
		if _, err := d.Propose(body, "alice", v); err != nil {
			t.Fatal(err)
		}
	}
	st := d.state()
	size := 0
	for _, h := range st.History {
		size += wireSize(h)
	}
	if size > maxStateBytes || len(st.History) == 0 || st.History[len(st.History)-1].Version != 30 || st.Current.Version != 30 {
		t.Errorf("state of %d bytes, %d versions, current %d", size, len(st.History), st.Current.Version)
	}
}
