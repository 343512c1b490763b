package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// edgelb witness refuses, before it joins anything, a config it cannot
// be the third voter of a pair with: gossip in the clear, a join list
// that is not the pair and itself, no state directory.
func TestWitnessRefuses(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "gossip.key"), []byte("MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=\n"), 0o600)
	state := t.TempDir()
	for _, tc := range []struct{ name, cluster, stateDir, want string }{
		{"insecure", "insecure: true, join: [10.0.0.11, 10.0.0.12, 10.0.0.13]", state, "a witness needs encrypted gossip"},
		{"one-host", "secretKeyFile: gossip.key, join: [10.0.0.11]", state, "cluster.join names 2 members with the witness"},
		{"five", "secretKeyFile: gossip.key, join: [10.0.0.11, 10.0.0.12, 10.0.0.13, 10.0.0.14, 10.0.0.15]", state, "cluster.join names 5 members"},
		{"no-state", "secretKeyFile: gossip.key, join: [10.0.0.11, 10.0.0.12, 10.0.0.13]", "/nonexistent/state", "none is writable"},
	} {
		path := filepath.Join(dir, tc.name+".yaml")
		os.WriteFile(path, []byte("node: {name: witness}\ncluster: {bindAddr: 10.0.0.13, "+tc.cluster+"}\n"), 0o600)
		t.Setenv("STATE_DIRECTORY", tc.stateDir)
		code, _, errs := runMain("witness", "--config", path, "--log-format", "text")
		if code != 1 || !strings.Contains(errs, "refusing to start") || !strings.Contains(errs, tc.want) {
			t.Errorf("%s: exit %d, stderr %q; want 1 and %q", tc.name, code, errs, tc.want)
		}
	}
}
