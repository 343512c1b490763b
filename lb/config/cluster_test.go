package config

import (
	"strings"
	"testing"
	"time"
)

func TestClusterTimingKeys(t *testing.T) {
	base := "node: {name: lb1, interface: eth0}\ncluster:\n  insecure: true\n"
	cfg, err := Parse("c.yaml", []byte(base))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Cluster.HandoverTimeout != 3*time.Second || cfg.Cluster.AnnounceRefresh != 0 || cfg.Cluster.NeighbourRepair != 64 {
		t.Fatalf("defaults: handoverTimeout %s, announceRefresh %s, neighbourRepair %d", cfg.Cluster.HandoverTimeout, cfg.Cluster.AnnounceRefresh, cfg.Cluster.NeighbourRepair)
	}
	cfg, err = Parse("c.yaml", []byte(base+"  handoverTimeout: 5s\n  announceRefresh: 30s\n  neighbourRepair: 0\n"))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Cluster.HandoverTimeout != 5*time.Second || cfg.Cluster.AnnounceRefresh != 30*time.Second || cfg.Cluster.NeighbourRepair != 0 {
		t.Fatalf("got handoverTimeout %s, announceRefresh %s, neighbourRepair %d", cfg.Cluster.HandoverTimeout, cfg.Cluster.AnnounceRefresh, cfg.Cluster.NeighbourRepair)
	}
	for _, tc := range []struct{ yaml, want string }{
		{"  handoverTimeout: soon\n", "c.yaml:4: cluster.handoverTimeout"},
		{"  announceRefresh: 10ms\n", "c.yaml:4: cluster.announceRefresh"},
		{"  announceRefresh: 0s\n", "c.yaml:4: cluster.announceRefresh"},
		{"  neighbourRepair: -1\n", "c.yaml:4: cluster.neighbourRepair"},
	} {
		_, err := Parse("c.yaml", []byte(base+tc.yaml))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: error %v, want one starting %q", tc.yaml, err, tc.want)
		}
	}
}

func TestRestartHold(t *testing.T) {
	base := "node: {name: lb1, interface: eth0}\ncluster:\n  insecure: true\n"
	cfg, err := Parse("c.yaml", []byte(base))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Cluster.RestartHold != 10*time.Second {
		t.Fatalf("default restartHold %s, want 10s", cfg.Cluster.RestartHold)
	}
	cfg, err = Parse("c.yaml", []byte(base+"  restartHold: 30s\n"))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Cluster.RestartHold != 30*time.Second {
		t.Fatalf("restartHold %s, want 30s", cfg.Cluster.RestartHold)
	}
	for _, tc := range []struct{ yaml, want string }{
		{"  restartHold: 0s\n", "c.yaml:4: cluster.restartHold: must be positive"},
		{"  restartHold: -5s\n", "c.yaml:4: cluster.restartHold: must be positive"},
		{"  restartHold: later\n", "c.yaml:4: cluster.restartHold"},
		{"  restartHold: 1s\n", "c.yaml:4: cluster.restartHold: 1s is out of range"},
		{"  restartHold: 11m\n", "c.yaml:4: cluster.restartHold: 11m0s is out of range"},
		{"  restartHold: 2500ms\n", "c.yaml:4: cluster.restartHold: 2.5s is not a whole number of seconds"},
	} {
		_, err := Parse("c.yaml", []byte(base+tc.yaml))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: error %v, want one containing %q", tc.yaml, err, tc.want)
		}
	}
}

func TestHeartbeatKeys(t *testing.T) {
	base := "node: {name: lb1, interface: eth0}\ncluster:\n  insecure: true\n"
	cfg, err := Parse("c.yaml", []byte(base))
	if err != nil {
		t.Fatal(err)
	}
	if hb := cfg.Cluster.Heartbeat; hb != (Heartbeat{Enabled: true, Interval: 50 * time.Millisecond, Multiplier: 3}) {
		t.Fatalf("default heartbeat %+v, want on, 50ms × 3, port bindPort + 1", hb)
	}
	cfg, err = Parse("c.yaml", []byte(base+"  heartbeat: {interval: 100ms, multiplier: 5, port: 7950}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if hb := cfg.Cluster.Heartbeat; hb != (Heartbeat{Enabled: true, Interval: 100 * time.Millisecond, Multiplier: 5, Port: 7950}) {
		t.Fatalf("heartbeat %+v", hb)
	}
	cfg, err = Parse("c.yaml", []byte(base+"  heartbeat: {enabled: false}\n"))
	if err != nil || cfg.Cluster.Heartbeat.Enabled {
		t.Fatalf("enabled: false: %v, %+v", err, cfg.Cluster.Heartbeat)
	}
	for _, tc := range []struct{ yaml, want string }{
		{"  heartbeat: {interval: 1ms}\n", "c.yaml:4: cluster.heartbeat.interval"},
		{"  heartbeat: {interval: soon}\n", "c.yaml:4: cluster.heartbeat.interval"},
		{"  heartbeat: {multiplier: 1}\n", "c.yaml:4: cluster.heartbeat.multiplier"},
		{"  heartbeat: {port: 7946}\n", "c.yaml:4: cluster.heartbeat.port: 7946 is the gossip port"},
		{"  bindPort: 65535\n", "cluster.heartbeat.port: bindPort is 65535"},
		{"  heartbeat: {every: 1s}\n", "c.yaml:4: cluster.heartbeat.every"},
	} {
		_, err := Parse("c.yaml", []byte(base+tc.yaml))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: error %v, want one containing %q", tc.yaml, err, tc.want)
		}
	}
}
