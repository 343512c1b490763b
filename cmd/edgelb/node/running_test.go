package node

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/edgelb/edgelb/api"
	"github.com/edgelb/edgelb/lb"
	"github.com/edgelb/edgelb/lb/config"
)

const liveFile = `node: {name: lb1}
cluster: {insecure: true}
pools:
  - {name: default, addresses: ["192.0.2.10-192.0.2.50"]}
services:
  - {name: dns, vip: 192.0.2.53, ports: [{port: 53, protocol: UDP}], backends: ["10.0.1.5:53"]}
`

func newTestLive(t *testing.T, stateDir string) *liveConfig {
	t.Helper()
	path := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(path, []byte(liveFile), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	l, err := newLiveConfigFrom(cfg, []byte(liveFile), stateDir, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// A new version's static services and pools reach the desired state at
// run time, and what the old version managed stays edgelb's to remove.
func TestStaticServicesFollowTheClusterConfiguration(t *testing.T) {
	dir := t.TempDir()
	l := newTestLive(t, dir)
	if _, v := l.Config(); v != 1 {
		t.Fatalf("seeded version %d, want 1", v)
	}
	store := lb.NewStore()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cur, sub := l.Subscribe()
	go l.Run(ctx)
	go staticLoop(ctx, cur, sub, store, slog.New(slog.DiscardHandler))
	built := store.Subscribe()
	waitVIPs := func(want string) {
		t.Helper()
		timeout := time.After(10 * time.Second)
		for {
			if vips, _ := store.VIPs(); len(vips) == 1 && vips[0].String() == want {
				return
			}
			select {
			case <-built:
			case <-timeout:
				vips, _ := store.VIPs()
				t.Fatalf("desired VIPs %v, want [%s]", vips, want)
			}
		}
	}
	waitVIPs("192.0.2.53")

	spec := json.RawMessage(`{"pools":[{"name":"new","addresses":["198.51.100.0/28"]}],"services":[{"name":"web","vip":"203.0.113.80","ports":[{"port":80}],"backends":["10.0.1.7:8080"]}]}`)
	if _, err := l.versions.Propose(context.Background(), spec, "test", 1); err != nil {
		t.Fatal(err)
	}
	waitVIPs("203.0.113.80")
	cfg, v := l.Config()
	if v != 2 || len(cfg.Pools) != 1 || cfg.Pools[0].Name != "new" {
		t.Errorf("running version %d with pools %+v", v, cfg.Pools)
	}
	for _, a := range []string{"192.0.2.53", "192.0.2.10", "203.0.113.80", "198.51.100.1"} {
		if !l.Owns(netip.MustParseAddr(a)) {
			t.Errorf("%s is not edgelb's any more", a)
		}
	}
	if _, err := l.versions.Propose(context.Background(), json.RawMessage(`{"pools":[{"name":"x","addresses":["nonsense"]}]}`), "test", 2); err == nil {
		t.Error("an invalid version was taken")
	}

	// Started again, the host runs the persisted version, not the file's.
	again := newTestLive(t, dir)
	if cfg, v := again.Config(); v != 2 || cfg.Services[0].Name != "web" {
		t.Errorf("after a restart: version %d, services %+v", v, cfg.Services)
	}
}

// edgelb cleanup removes the IPVS services of the versions the host ran,
// not only the file's.
func TestCleanupManagedIncludesTheClusterConfiguration(t *testing.T) {
	dir := t.TempDir()
	l := newTestLive(t, dir)
	if _, err := l.versions.Propose(context.Background(), json.RawMessage(`{"services":[{"name":"web","vip":"203.0.113.80","ports":[{"port":80}],"backends":["10.0.1.7:8080"]}]}`), "test", 1); err != nil {
		t.Fatal(err)
	}
	cfg, _ := config.Load(l.cfg.Path)
	set := cleanupManaged(cfg, dir)
	for _, a := range []string{"192.0.2.53", "192.0.2.20", "203.0.113.80"} {
		if !set.Contains(netip.MustParseAddr(a)) {
			t.Errorf("cleanup would leave %s", a)
		}
	}
	if set.Contains(netip.MustParseAddr("203.0.113.81")) {
		t.Error("cleanup would touch an address edgelb never managed")
	}
}

// Drained and disabled backends show in GET /api/v1/services.
func TestServicesShowBackendStates(t *testing.T) {
	l := newTestLive(t, "")
	spec := `{"services":[{"name":"dns","vip":"192.0.2.53","ports":[{"port":53,"protocol":"UDP"}],"backends":["10.0.1.5:53","10.0.1.6:53","10.0.1.7:53"]}],
		"backendStates":[{"service":"_static/dns","backend":"10.0.1.5:53","state":"drain"},{"service":"_static/dns","backend":"10.0.1.6:53","state":"disable"}]}`
	if _, err := l.versions.Propose(context.Background(), json.RawMessage(spec), "test", 1); err != nil {
		t.Fatal(err)
	}
	l.update()
	store := lb.NewStore()
	cfg, _ := l.Config()
	d, _ := lb.Build(lb.Snapshot{}, lb.OptionsFromConfig(cfg))
	store.Set(d)
	st := &state{node: &Node{cfg: cfg, live: l, store: store}}
	svcs := st.services(false, true, nil)
	if len(svcs) != 1 || len(svcs[0].Ports) != 1 {
		t.Fatalf("services %+v", svcs)
	}
	// The summary counts what the full view lists: two backends, the
	// drained one (weight 0) not taking new connections.
	sum := st.services(false, false, nil)
	if n, down, serving := sum[0].Ports[0].Counted(); sum[0].Ports[0].Backends != nil || n != 2 || down != 0 || serving != 1 {
		t.Errorf("summary: backends %v, counted %d, %d down, %d serving; want none listed, 2, 0, 1", sum[0].Ports[0].Backends, n, down, serving)
	}
	if n, down, serving := svcs[0].Ports[0].Counted(); n != 2 || down != 0 || serving != 1 {
		t.Errorf("full view counted %d, %d down, %d serving; want 2, 0, 1", n, down, serving)
	}
	bs := svcs[0].Ports[0].Backends
	if len(bs) != 2 || bs[0].Address != "10.0.1.5:53" || bs[0].AdminState != "drain" || bs[0].Weight != 0 || bs[1].AdminState != "" {
		t.Errorf("backends %+v", bs)
	}
	if got := svcs[0].DisabledBackends; len(got) != 1 || got[0] != "10.0.1.6:53" {
		t.Errorf("disabled backends %v", got)
	}
}

// GET /api/v1/services/{namespace}/{name} builds that service's view
// alone (state.Service), the same as its view in the whole list.
func TestServiceAloneIsItsViewInTheList(t *testing.T) {
	l := newTestLive(t, "")
	spec := `{"services":[{"name":"dns","vip":"192.0.2.53","ports":[{"port":53,"protocol":"UDP"},{"port":53,"protocol":"TCP"}],"backends":["10.0.1.5:53","10.0.1.6:53"]},
		{"name":"web","vip":"192.0.2.80","ports":[{"port":80}],"backends":["10.0.1.7:80"]}],
		"backendStates":[{"service":"_static/dns","backend":"10.0.1.6:53","state":"drain"}]}`
	if _, err := l.versions.Propose(context.Background(), json.RawMessage(spec), "test", 1); err != nil {
		t.Fatal(err)
	}
	l.update()
	store := lb.NewStore()
	cfg, _ := l.Config()
	d, _ := lb.Build(lb.Snapshot{}, lb.OptionsFromConfig(cfg))
	store.Set(d)
	st := &state{node: &Node{cfg: cfg, live: l, store: store}}
	all := st.Services()
	if len(all) != 2 {
		t.Fatalf("services %+v", all)
	}
	for _, want := range all {
		got, ok := st.Service(want.Namespace, want.Name)
		if !ok || !reflect.DeepEqual(got, want) {
			t.Errorf("Service(%s, %s) = %+v, %v; in the list: %+v", want.Namespace, want.Name, got, ok, want)
		}
	}
	for _, c := range [][2]string{{"_static", "nosuch"}, {"default", "dns"}, {"", "web"}} {
		if got, ok := st.Service(c[0], c[1]); ok {
			t.Errorf("Service(%s, %s) = %+v, want none", c[0], c[1], got)
		}
	}
}

// With cluster.insecure in a cluster of several hosts no version
// replicates and the API makes none: a host runs the cluster-wide keys
// of its own file, taken again at each start when they changed. A host
// alone, or an encrypted cluster (its consensus log), keeps the version
// it ran (changed through the API) whatever its file says.
func TestInsecureClusterRunsItsFile(t *testing.T) {
	const services = `services:
  - {name: dns, vip: %s, ports: [{port: 53, protocol: UDP}], backends: ["10.0.1.5:53"]}
`
	for _, tc := range []struct {
		name, cluster string
		fileWins      bool
	}{
		{"insecure, three hosts", `{insecure: true, bindAddr: 10.0.0.11, join: [10.0.0.11, 10.0.0.12, 10.0.0.13]}`, true},
		{"insecure, one host", `{insecure: true, bindAddr: 10.0.0.11}`, false},
		{"encrypted, one host", `{secretKeyFile: gossip.key, bindAddr: 10.0.0.11, join: [10.0.0.11]}`, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir, state := t.TempDir(), t.TempDir()
			path := filepath.Join(dir, "config.yaml")
			if err := os.WriteFile(filepath.Join(dir, "gossip.key"), []byte("MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="), 0o600); err != nil {
				t.Fatal(err)
			}
			stop := func() {}
			defer func() { stop() }()
			start := func(vip string) *liveConfig {
				t.Helper()
				stop()
				data := []byte("node: {name: lb1}\ncluster: " + tc.cluster + "\n" + fmt.Sprintf(services, vip))
				if err := os.WriteFile(path, data, 0o600); err != nil {
					t.Fatal(err)
				}
				cfg, err := config.Load(path)
				if err != nil {
					t.Fatal(err)
				}
				l, err := newLiveConfigFrom(cfg, data, state, slog.New(slog.DiscardHandler))
				if err != nil {
					t.Fatal(err)
				}
				if l.raft != nil {
					stop = runLive(t, l)
				}
				return l
			}
			if cfg, v := start("192.0.2.53").Config(); v != 1 || cfg.Services[0].VIP.String() != "192.0.2.53" {
				t.Fatalf("first start: version %d, %v", v, cfg.Services)
			}
			// The same file again changes nothing.
			if _, v := start("192.0.2.53").Config(); v != 1 {
				t.Fatalf("the same file made version %d", v)
			}
			cfg, v := start("192.0.2.54").Config()
			vip := cfg.Services[0].VIP.String()
			switch {
			case tc.fileWins && (v != 2 || vip != "192.0.2.54"):
				t.Errorf("a changed file: version %d with VIP %s, want version 2 with the file's 192.0.2.54", v, vip)
			case !tc.fileWins && (v != 1 || vip != "192.0.2.53"):
				t.Errorf("a changed file: version %d with VIP %s, want version 1 kept", v, vip)
			}
		})
	}
}

// runLive runs l and its consensus log until the returned function is
// called, and waits until l runs a committed version.
func runLive(t *testing.T, l *liveConfig) func() {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	raftDone, liveDone := make(chan error, 1), make(chan error, 1)
	go func() { raftDone <- l.raft.Run(ctx) }()
	go func() { liveDone <- l.Run(ctx) }()
	stop := func() {
		cancel()
		<-liveDone
		if err := <-raftDone; err != nil {
			t.Error(err)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, v := l.Config(); v > 0 {
			return stop
		}
		if time.Now().After(deadline) {
			stop()
			t.Fatal("no committed version after 10 s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// A host whose file's cluster-wide keys differ from the running cluster
// configuration runs the configuration and says its file differs.
func TestFileDiffersIsReported(t *testing.T) {
	l := newLab(t, 3, nil)
	l.eventually(t, "converged", l.converged)
	h := l.hosts[0]
	if h.node.state.Status().ConfigFileDiffers {
		t.Fatal("the file differs before any change")
	}
	next := editSpec(t, l.hosts[1], func(spec map[string]any) { delete(spec, "services") })
	l.eventually(t, "every host runs the new version and says its file differs", func() bool {
		for _, h := range l.hosts {
			if _, v := h.node.live.Config(); v != next.Version || !h.node.state.Status().ConfigFileDiffers {
				return false
			}
		}
		return true
	})
}

// Without Kubernetes every host lists the running version's pools in its
// status, none of their addresses used: a pool added is shown by every
// host, not left out as if none were configured.
func TestPoolsShownWithoutKubernetes(t *testing.T) {
	l := newLab(t, 3, nil)
	l.eventually(t, "converged", l.converged)
	next := editSpec(t, l.hosts[1], func(spec map[string]any) {
		spec["pools"] = []any{map[string]any{"name": "team", "addresses": []any{"198.51.100.0/30"}, "namespaces": []any{"team-a"}}}
	})
	l.eventually(t, "every host runs the new version and shows the pool team", func() bool {
		for _, h := range l.hosts {
			st := h.node.state.Status()
			if _, v := h.node.live.Config(); v != next.Version ||
				len(st.Pools) != 1 || st.Pools[0] != (api.PoolUsage{Name: "team", Size: 4, Used: 0}) {
				return false
			}
		}
		return true
	})
}

// edgelb cleanup also removes the IPVS services of versions committed
// through the consensus log (an encrypted cluster), read from the log
// with edgelb stopped.
func TestCleanupManagedReadsTheConsensusLog(t *testing.T) {
	dir, state := t.TempDir(), t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "gossip.key"), []byte("MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="), 0o600); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "config.yaml")
	data := []byte(`node: {name: lb1}
cluster: {secretKeyFile: gossip.key, bindAddr: 10.0.0.11}
services:
  - {name: dns, vip: 192.0.2.53, ports: [{port: 53, protocol: UDP}], backends: ["10.0.1.5:53"]}
`)
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	l, err := newLiveConfigFrom(cfg, data, state, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if l.raft == nil {
		t.Fatal("an encrypted host runs no consensus log")
	}
	stop := runLive(t, l)
	_, v := l.Config()
	if _, err := l.versions.Propose(context.Background(), json.RawMessage(`{"services":[{"name":"web","vip":"203.0.113.80","ports":[{"port":80}],"backends":["10.0.1.7:8080"]}]}`), "test", v); err != nil {
		stop()
		t.Fatal(err)
	}
	stop()
	set := cleanupManaged(cfg, state)
	for _, a := range []string{"192.0.2.53", "203.0.113.80"} {
		if !set.Contains(netip.MustParseAddr(a)) {
			t.Errorf("cleanup would leave %s", a)
		}
	}
}
