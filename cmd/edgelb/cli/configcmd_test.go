package cli

import (
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/edgelb/edgelb/api"
	"github.com/edgelb/edgelb/api/clustercfg"
	"github.com/edgelb/edgelb/cluster"
	"github.com/edgelb/edgelb/lb/config"
)

const liveFile = `node: {name: lb1}
cluster: {insecure: true}
pools:
  - {name: default, addresses: ["192.0.2.10-192.0.2.50"]}
services:
  - {name: dns, vip: 192.0.2.53, ports: [{port: 53, protocol: UDP}], backends: ["10.0.1.5:53"]}
`

// newTestDocs is a host's cluster configuration seeded from liveFile, as
// the API serves it.
func newTestDocs(t *testing.T) (*cluster.Docs, *config.Host) {
	t.Helper()
	return newTestDocsFrom(t, liveFile)
}

func newTestDocsFrom(t *testing.T, liveFile string) (*cluster.Docs, *config.Host) {
	t.Helper()
	dir := t.TempDir()
	path := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(path, []byte(liveFile), 0o600); err != nil {
		t.Fatal(err)
	}
	host := config.NewHost(path, []byte(liveFile), dir)
	docs, err := cluster.NewDocs(cluster.DocOptions{Name: "lb1", Path: filepath.Join(dir, "cluster-config.json"),
		Validate: func(b []byte) error { _, err := host.Apply(b); return err }})
	if err != nil {
		t.Fatal(err)
	}
	spec, err := config.SpecFromFile(path, []byte(liveFile))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := docs.Seed(spec, "file"); err != nil {
		t.Fatal(err)
	}
	return docs, host
}

// edgelb config against the API of a host whose cluster configuration is
// seeded from liveFile.
func TestConfigCommands(t *testing.T) {
	docs, host := newTestDocs(t)
	srv := httptest.NewServer(api.New(api.Options{
		NamedTokens: []api.Token{{Name: "ops", Role: "admin", Secret: "ops-token-0123456789"}},
		Config:      &clustercfg.Config{Versions: cluster.LocalDocs{Docs: docs}, Host: host},
		Log:         slog.New(slog.DiscardHandler),
	}).Handler())
	defer srv.Close()
	t.Setenv("EDGELB_TOKEN", "ops-token-0123456789")
	cfgCmd := func(args ...string) (int, string, string) {
		return runMain(append(append([]string{"config"}, args...), "--api", srv.URL)...)
	}

	code, out, errOut := cfgCmd("get")
	if code != 0 || !strings.HasPrefix(out, "# edgelb cluster configuration version 1") || !strings.Contains(out, "vip: 192.0.2.53") {
		t.Fatalf("config get: %d\n%s%s", code, out, errOut)
	}

	// What get printed, edited, is applied.
	dir := t.TempDir()
	edited := filepath.Join(dir, "edited.yaml")
	os.WriteFile(edited, []byte(strings.ReplaceAll(out, "192.0.2.53", "192.0.2.54")), 0o600)
	if code, out, errOut := cfgCmd("diff", "-f", edited); code != 0 || out != "+ vip 192.0.2.54\n- vip 192.0.2.53\n~ service dns\n" {
		t.Errorf("config diff: %d\n%s%s", code, out, errOut)
	}
	if code, out, errOut := cfgCmd("apply", "-f", edited); code != 0 || out != "applied: version 2 (was 1)\n" {
		t.Fatalf("config apply: %d\n%s%s", code, out, errOut)
	}
	if code, out, _ := cfgCmd("apply", "-f", edited); code != 0 || out != "unchanged: version 2\n" {
		t.Errorf("config apply again: %d %s", code, out)
	}

	// An invalid file: check's messages, with the file's name; nothing changes.
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, []byte("pools:\n  - {name: a, addresses: [192.0.2.0/33]}\n"), 0o600)
	code, _, errOut = cfgCmd("apply", "-f", bad)
	if code != 1 || !strings.HasPrefix(errOut, bad+": spec.pools[0].addresses[0]: ") {
		t.Errorf("config apply of a bad file: %d\n%s", code, errOut)
	}
	if code, _, errOut := cfgCmd("diff", "-f", bad); code != 1 || !strings.Contains(errOut, "spec.pools[0].addresses[0]") {
		t.Errorf("config diff of a bad file: %d\n%s", code, errOut)
	}

	// A whole config file: its host-local keys are left out, a misspelt
	// key is refused like check refuses it.
	whole := filepath.Join(dir, "whole.yaml")
	os.WriteFile(whole, []byte(liveFile+"pols: []\n"), 0o600)
	if code, _, errOut := cfgCmd("diff", "-f", whole); code != 1 || !strings.Contains(errOut, whole+": spec.pols: unknown key") {
		t.Errorf("config diff of a file with a misspelt key: %d\n%s", code, errOut)
	}
	os.WriteFile(whole, []byte(liveFile), 0o600)
	if code, out, errOut := cfgCmd("diff", "-f", whole); code != 0 || !strings.Contains(out, "+ vip 192.0.2.53") {
		t.Errorf("config diff of the whole config file: %d\n%s%s", code, out, errOut)
	}

	if code, out, errOut := cfgCmd("rollback", "1"); code != 0 || out != "rolled back: version 3 has the content of version 1\n" {
		t.Errorf("config rollback: %d\n%s%s", code, out, errOut)
	}
	code, out, _ = cfgCmd("history")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if code != 0 || len(lines) != 4 || !strings.Contains(lines[2], "ops") || !strings.HasSuffix(lines[3], "current") {
		t.Errorf("config history: %d\n%s", code, out)
	}
	if d, _ := docs.Current(); d.Version != 3 || !strings.Contains(string(d.Body), `"vip":"192.0.2.53"`) {
		t.Errorf("the current version is %d: %s", d.Version, d.Body)
	}
	if code, _, _ := cfgCmd("rollback"); code != 2 {
		t.Errorf("rollback without a version: exit %d", code)
	}
	if code, _, _ := cfgCmd("apply"); code != 2 {
		t.Errorf("apply without -f: exit %d", code)
	}
}

// edgelb config with a BGP password: get shows "(secret)" to every token
// and the password only to an admin who asks; what get printed, applied
// again, keeps the password; diff names a new password without showing it.
func TestConfigCommandsHideSecrets(t *testing.T) {
	const password = "md5-cli-0xC0FFEE"
	file := liveFile + "bgp:\n  asn: 64512\n  routerID: 10.0.0.11\n  peers: [{address: 10.0.0.1, asn: 64500, password: " + password + "}]\n"
	docs, host := newTestDocsFrom(t, file)
	srv := httptest.NewServer(api.New(api.Options{
		NamedTokens: []api.Token{{Name: "ops", Role: "admin", Secret: "ops-token-0123456789"}, {Name: "eve", Role: "viewer", Secret: "eve-token-0123456789"}},
		Config:      &clustercfg.Config{Versions: cluster.LocalDocs{Docs: docs}, Host: host},
		Log:         slog.New(slog.DiscardHandler),
	}).Handler())
	defer srv.Close()
	cfgCmd := func(token string, args ...string) (int, string, string) {
		return runMain(append(append([]string{"config"}, args...), "--api", srv.URL, "--token", token)...)
	}
	const admin, viewer = "ops-token-0123456789", "eve-token-0123456789"

	for _, tok := range []string{viewer, admin} {
		for _, output := range []string{"yaml", "json"} {
			code, out, errOut := cfgCmd(tok, "get", "--output", output)
			if code != 0 || strings.Contains(out, password) || !strings.Contains(out, "(secret)") {
				t.Errorf("config get --output %s: %d\n%s%s", output, code, out, errOut)
			}
		}
	}
	if code, out, errOut := cfgCmd(viewer, "get", "--show-secrets"); code != 1 || strings.Contains(out, password) || !strings.Contains(errOut, "needs an admin token") {
		t.Errorf("config get --show-secrets as a viewer: %d\n%s%s", code, out, errOut)
	}
	if code, out, errOut := cfgCmd(admin, "get", "--show-secrets"); code != 0 || !strings.Contains(out, "password: "+password) {
		t.Errorf("config get --show-secrets as an admin: %d\n%s%s", code, out, errOut)
	}
	// Without --token, --show-secrets takes the config file's admin
	// token, and get alone its viewer token.
	t.Setenv("EDGELB_TOKEN", "")
	local := filepath.Join(t.TempDir(), "config.yaml")
	os.WriteFile(local, []byte("cluster: {insecure: true}\napi: {tokens: {admin: ["+admin+"], viewer: ["+viewer+"]}}\n"), 0o600)
	if code, out, errOut := runMain("config", "get", "--show-secrets", "--config", local, "--api", srv.URL); code != 0 || !strings.Contains(out, "password: "+password) {
		t.Errorf("config get --show-secrets with the config file's tokens: %d\n%s%s", code, out, errOut)
	}
	if code, _, errOut := cfgCmd(admin, "history", "--show-secrets"); code != 2 || !strings.Contains(errOut, "--show-secrets is for get") {
		t.Errorf("config history --show-secrets: %d %s", code, errOut)
	}

	// get, edit, apply: the password is kept.
	_, out, _ := cfgCmd(admin, "get")
	dir := t.TempDir()
	edited := filepath.Join(dir, "edited.yaml")
	os.WriteFile(edited, []byte(strings.ReplaceAll(out, "192.0.2.53", "192.0.2.54")), 0o600)
	if code, out, errOut := cfgCmd(admin, "diff", "-f", edited); code != 0 || out != "+ vip 192.0.2.54\n- vip 192.0.2.53\n~ service dns\n" {
		t.Errorf("config diff of get's output, edited: %d\n%s%s", code, out, errOut)
	}
	if code, out, errOut := cfgCmd(admin, "apply", "-f", edited); code != 0 || out != "applied: version 2 (was 1)\n" {
		t.Fatalf("config apply: %d\n%s%s", code, out, errOut)
	}
	if d, _ := docs.Current(); !strings.Contains(string(d.Body), `"password":"`+password+`"`) {
		t.Errorf("after apply the configuration is %s, want the password kept", d.Body)
	}

	// A new password: diff names it, never shows either value.
	os.WriteFile(edited, []byte(strings.ReplaceAll(out, "(secret)", "md5-new-0xBEEF")), 0o600)
	code, out, errOut := cfgCmd(admin, "diff", "-f", edited)
	if code != 0 || !strings.Contains(out, "~ secret bgp.peers[10.0.0.1].password\n") || strings.Contains(out, password) || strings.Contains(out, "md5-new") {
		t.Errorf("config diff of a new password: %d\n%s%s", code, out, errOut)
	}
	if code, out, errOut := cfgCmd(admin, "apply", "-f", edited); code != 0 {
		t.Fatalf("config apply of a new password: %d\n%s%s", code, out, errOut)
	}
	if code, out, _ := cfgCmd(viewer, "history"); code != 0 || !strings.Contains(out, "changed bgp.peers[10.0.0.1].password") || strings.Contains(out, "md5-") {
		t.Errorf("config history: %d\n%s", code, out)
	}
}
