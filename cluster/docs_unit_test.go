package cluster

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
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

// validBody refuses bodies that say "invalid", standing in for the app's
// validation.
func validBody(b []byte) error {
	if strings.Contains(string(b), "invalid") {
		return errors.New("invalid body")
	}
	return nil
}
