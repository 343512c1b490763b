package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/edgelb/edgelb/api"
	"github.com/edgelb/edgelb/api/clustercfg"
	"github.com/edgelb/edgelb/cluster"
	"github.com/edgelb/edgelb/lb/config"
)

// putService makes, through h, the version made from version from with
// one more static service named name on vip, with the API's deadline.
func putService(h *host, from uint64, name, vip string) (api.ConfigDoc, error) {
	cc := &clustercfg.Config{Versions: h.node.live.versions, Host: h.node.live.host}
	cur, err := cc.Version(from, false)
	if err != nil {
		return api.ConfigDoc{}, err
	}
	var spec map[string]any
	if err := json.Unmarshal(cur.Spec, &spec); err != nil {
		return api.ConfigDoc{}, err
	}
	spec["services"] = append(spec["services"].([]any), map[string]any{"name": name, "vip": vip,
		"ports": []any{map[string]any{"port": 123, "protocol": "UDP"}}, "backends": []any{"10.0.1.7:123"}})
	body, _ := json.Marshal(spec)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return cc.Put(ctx, body, from, "test")
}

// runs reports whether h runs a version with a static service named
// name.
func (h *host) runs(name string) bool {
	cfg, _ := h.node.live.Config()
	for _, s := range cfg.Services {
		if s.Name == name {
			return true
		}
	}
	return false
}

// The cluster configuration is committed by consensus: of two writes
// made from the same version through two hosts, exactly one is
// acknowledged and the other is stale; a write through a host cut off
// from the others is refused (no majority) and never appears, while the
// majority's write reaches every host once the link is back.
func TestConfigurationIsCommittedByConsensus(t *testing.T) {
	l := newLab(t, 3, nil)
	l.eventually(t, "three nodes converge", l.converged)

	t.Run("two writes from the same version: one succeeds, the other is stale", func(t *testing.T) {
		from := l.hosts[0].version()
		var wg sync.WaitGroup
		docs := make([]api.ConfigDoc, 2)
		errs := make([]error, 2)
		for i, name := range []string{"alice", "bob"} {
			wg.Go(func() { docs[i], errs[i] = putService(l.hosts[i], from, name, "192.0.2.123") })
		}
		wg.Wait()
		ok, stale := -1, 0
		for i, err := range errs {
			switch {
			case err == nil:
				ok = i
			case errors.Is(err, api.ErrStale):
				stale++
			default:
				t.Fatalf("write %d: %v, want success or ErrStale", i, err)
			}
		}
		if ok < 0 || stale != 1 {
			t.Fatalf("results %v: want exactly one success and one ErrStale", errs)
		}
		winner, loser := []string{"alice", "bob"}[ok], []string{"alice", "bob"}[1-ok]
		if docs[ok].Version != from+1 {
			t.Errorf("the acknowledged write is version %d, want %d", docs[ok].Version, from+1)
		}
		l.eventually(t, "every host runs the acknowledged write", func() bool {
			for _, h := range l.hosts {
				if h.version() != docs[ok].Version || !h.runs(winner) || h.runs(loser) {
					return false
				}
			}
			return true
		})
	})

	t.Run("a write through a cut-off host is refused and never appears", func(t *testing.T) {
		l.eventually(t, "converged", l.converged)
		from := l.hosts[0].version()
		cut := l.hosts[2]
		cut.link.cut.Store(true)
		_, err := putService(cut, from, "minority", "192.0.2.124")
		if !errors.Is(err, api.ErrNoQuorum) {
			t.Fatalf("a write through the cut-off host: %v, want ErrNoQuorum", err)
		}
		if !strings.Contains(err.Error(), "unreachable") {
			t.Errorf("the error does not name the unreachable members: %v", err)
		}
		next, err := putService(l.hosts[0], from, "majority", "192.0.2.125")
		if err != nil {
			t.Fatalf("a write through the majority: %v", err)
		}
		if cut.runs("minority") {
			t.Fatal("the cut-off host runs the refused write")
		}
		cut.link.cut.Store(false)
		l.eventually(t, "after healing every host runs the majority's write", func() bool {
			for _, h := range l.hosts {
				if h.version() != next.Version || !h.runs("majority") || h.runs("minority") {
					return false
				}
			}
			return true
		})
		for _, h := range l.hosts {
			for _, v := range h.node.live.versions.History() {
				if strings.Contains(string(v.Body), "minority") {
					t.Errorf("%s keeps the refused write as version %d", h.name, v.Version)
				}
			}
		}
	})
}

// A rolling upgrade from the release that kept the versions in
// cluster-config.json (last writer wins) keeps them: the log starts from
// that history, numbers, authors and bodies included, and the next write
// follows its current version.
func TestUpgradeFromClusterConfigKeepsTheHistory(t *testing.T) {
	var want []cluster.Doc
	l := newLabPrepared(t, 3, nil, false, func(h *host) {
		data, err := os.ReadFile(h.path)
		if err != nil {
			t.Fatal(err)
		}
		spec, err := config.SpecFromFile(h.path, data)
		if err != nil {
			t.Fatal(err)
		}
		docs, err := cluster.NewDocs(cluster.DocOptions{Name: h.name, Path: filepath.Join(h.dir, clusterConfigFile)})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := docs.Seed(spec, "file "+h.path); err != nil {
			t.Fatal(err)
		}
		for i, by := range []string{"alice", "bob"} {
			var m map[string]any
			if err := json.Unmarshal(spec, &m); err != nil {
				t.Fatal(err)
			}
			m["services"] = append(m["services"].([]any), map[string]any{"name": fmt.Sprintf("kept%d", i), "vip": fmt.Sprintf("192.0.2.%d", 120+i),
				"ports": []any{map[string]any{"port": 123, "protocol": "UDP"}}, "backends": []any{"10.0.1.7:123"}})
			spec, _ = json.Marshal(m)
			if _, err := docs.Propose(spec, by, uint64(i+1)); err != nil {
				t.Fatal(err)
			}
		}
		if want == nil {
			for _, e := range docs.History() {
				want = append(want, e.Doc)
			}
		}
	})
	l.eventually(t, "every host runs the imported version 3", func() bool {
		for _, h := range l.hosts {
			if h.version() != 3 || !h.runs("kept1") {
				return false
			}
		}
		return true
	})
	for _, h := range l.hosts {
		got := h.node.live.versions.History()
		if len(got) != len(want) {
			t.Fatalf("%s: %d versions after the upgrade, want %d", h.name, len(got), len(want))
		}
		for i := range got {
			// Version 1's author names the seeding host's own file.
			if got[i].Version != want[i].Version || i > 0 && got[i].UpdatedBy != want[i].UpdatedBy || got[i].Hash != want[i].Hash {
				t.Errorf("%s: version %d = %d by %s (%s), want %d by %s (%s)", h.name, i, got[i].Version, got[i].UpdatedBy, got[i].Hash, want[i].Version, want[i].UpdatedBy, want[i].Hash)
			}
		}
	}
	d, err := putService(l.hosts[2], 3, "after", "192.0.2.125")
	if err != nil || d.Version != 4 {
		t.Fatalf("a write after the upgrade: %+v, %v; want version 4", d, err)
	}
}
