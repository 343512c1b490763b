package cli

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/edgelb/edgelb/api"
	"github.com/edgelb/edgelb/api/apitest"
	"github.com/edgelb/edgelb/cluster"
	"github.com/edgelb/edgelb/cmd/edgelb/node"
	"github.com/edgelb/edgelb/lb/config"
	"github.com/edgelb/edgelb/vip"
)

func runMain(args ...string) (int, string, string) {
	var out, errb bytes.Buffer
	code := Main(context.Background(), args, &out, &errb)
	return code, out.String(), errb.String()
}

func TestCheck(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.yaml")
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(good, []byte("cluster: {insecure: true}\npools: [{name: a, addresses: [192.0.2.0/24]}]\n"), 0o600)
	os.WriteFile(bad, []byte("cluster: {insecure: true}\npools:\n  - {name: a, addresses: [192.0.2.0/33]}\n"), 0o600)

	if code, out, errs := runMain("check", "--config", good); code != 0 || !strings.Contains(out, "ok") {
		t.Errorf("good file: exit %d, %q %q", code, out, errs)
	}
	code, _, errs := runMain("check", "--config", bad)
	if code != 1 || !strings.Contains(errs, bad+":3: pools[0].addresses[0]:") {
		t.Errorf("bad file: exit %d, stderr %q", code, errs)
	}
	if code, _, errs := runMain("check", "--config", filepath.Join(dir, "missing.yaml")); code != 1 || !strings.Contains(errs, "cannot read") {
		t.Errorf("missing file: exit %d, %q", code, errs)
	}
	hold := filepath.Join(dir, "hold.yaml")
	os.WriteFile(hold, []byte("cluster:\n  insecure: true\n  restartHold: 1h\n"), 0o600)
	if code, _, errs := runMain("check", "--config", hold); code != 1 || !strings.Contains(errs, hold+":3: cluster.restartHold: 1h0m0s is out of range") {
		t.Errorf("restartHold out of range: exit %d, stderr %q", code, errs)
	}
}

// check refuses a kubeconfig or TLS files that are missing or unusable,
// which would otherwise make the service fail at every start.
func TestCheckReadsTheFilesTheConfigNames(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct{ name, yaml, want string }{
		{"kubeconfig", "kubernetes: {kubeconfig: " + filepath.Join(dir, "nope") + "}\n", "kubernetes.kubeconfig:"},
		{"tls", "api: {tls: {certFile: " + filepath.Join(dir, "c.pem") + ", keyFile: " + filepath.Join(dir, "k.pem") + "}}\n", "api.tls: certificate"},
	} {
		path := filepath.Join(dir, tc.name+".yaml")
		os.WriteFile(path, []byte("cluster: {insecure: true}\n"+tc.yaml), 0o600)
		code, out, errs := runMain("check", "--config", path)
		if code != 1 || !strings.Contains(errs, path+": "+tc.want) || strings.Contains(out, "ok") {
			t.Errorf("%s: exit %d, stdout %q, stderr %q", tc.name, code, out, errs)
		}
	}
}

func TestRunHelpDescribesSignals(t *testing.T) {
	code, _, errs := runMain("run", "--help")
	if code != 0 || !strings.Contains(errs, "SIGUSR2") || !strings.Contains(errs, "SIGTERM") {
		t.Errorf("exit %d, help %q", code, errs)
	}
}

func TestErrRestartIsBothPartsRestart(t *testing.T) {
	if !errors.Is(ErrRestart, cluster.ErrRestart) || !errors.Is(ErrRestart, vip.ErrRestart) {
		t.Fatal("ErrRestart does not match cluster.ErrRestart and vip.ErrRestart")
	}
	if errors.Is(context.Canceled, cluster.ErrRestart) {
		t.Fatal("a plain cancel is a restart")
	}
}

// run refuses a bad config before doing anything.
func TestRunRefusesBadConfig(t *testing.T) {
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	os.WriteFile(bad, []byte("dataplane: {backend: magic}\n"), 0o600)
	code, _, errs := runMain("run", "--config", bad)
	if code != 1 || !strings.Contains(errs, "refusing to start") || !strings.Contains(errs, `"magic" is not one of`) {
		t.Errorf("exit %d, stderr %q", code, errs)
	}
}

func TestKeygenMakesAUsableKey(t *testing.T) {
	code, out, _ := runMain("keygen")
	if code != 0 {
		t.Fatalf("exit %d", code)
	}
	key, err := config.DecodeKey([]byte(out))
	if err != nil || len(key) != 32 {
		t.Fatalf("keygen printed %q: %v", out, err)
	}
	if _, err := base64.StdEncoding.DecodeString(strings.TrimSpace(out)); err != nil {
		t.Fatal(err)
	}
}

func TestUsage(t *testing.T) {
	if code, _, errs := runMain(); code != 2 || !strings.Contains(errs, "Usage:") {
		t.Errorf("no args: exit %d", code)
	}
	if code, _, errs := runMain("frobnicate"); code != 2 || !strings.Contains(errs, `unknown command "frobnicate"`) {
		t.Errorf("unknown: exit %d %q", code, errs)
	}
	if code, out, _ := runMain("version"); code != 0 || !strings.HasPrefix(out, "edgelb ") {
		t.Errorf("version: %d %q", code, out)
	}
	if code, _, _ := runMain("check", "--nope"); code != 2 {
		t.Errorf("bad flag: exit %d", code)
	}
}

func TestStatusFromAPI(t *testing.T) {
	f := apitest.Sample()
	f.Svcs[1].Ports[0].Problem = "the kernel refused its Service's source ranges, so it is closed: set full"
	f.St.Healthy, f.St.ConfigUnapplied = false, 4
	f.St.Problem = "config: cannot apply the committed cluster configuration version 4 over this host's config file (running version 3, owning no VIPs): node.interface: required for dataplane.method dr"
	f.SetMember("lb1", func(m *api.Member) { m.Unapplied = 4 })
	srv := httptest.NewServer(api.New(api.Options{State: f, Bus: f.Bus, Log: slog.New(slog.DiscardHandler),
		Tokens: map[string][]string{"viewer": {"viewer-token-0123456789"}}}).Handler())
	defer srv.Close()
	code, out, errs := runMain("status", "--api", srv.URL, "--token", "viewer-token-0123456789")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	for _, want := range []string{"node lb1", "lb1 (self)", "192.0.2.10  lb1", "demo/web", "192.0.2.10:8080/tcp", "1/2", "pool default: 1 of 41",
		"PROBLEM _static/dns 192.0.2.53:53/udp: the kernel refused its Service's source ranges, so it is closed: set full",
		"UNHEALTHY: config: cannot apply the committed cluster configuration version 4", "v3 (cannot apply v4)",
		"this host cannot apply the committed version 4"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	code, out, _ = runMain("status", "--api", srv.URL, "--token", "viewer-token-0123456789", "--output", "json")
	var v struct {
		Members []api.Member `json:"members"`
	}
	if code != 0 || json.Unmarshal([]byte(out), &v) != nil || len(v.Members) != 3 {
		t.Errorf("json: exit %d, %s", code, out)
	}
	code, _, errs = runMain("status", "--api", srv.URL)
	if code != 1 || !strings.Contains(errs, "bearer token is required") {
		t.Errorf("no token: exit %d, %q", code, errs)
	}
	t.Setenv("EDGELB_TOKEN", "viewer-token-0123456789")
	if code, _, errs = runMain("status", "--api", srv.URL); code != 0 {
		t.Errorf("token from $EDGELB_TOKEN: exit %d, %q", code, errs)
	}
}

func TestJournalKey(t *testing.T) {
	for in, want := range map[string]string{"vip": "VIP", "service": "SERVICE", "err": "ERR", "handingOver": "HANDINGOVER", "x-y.z": "X_Y_Z", "_private": "PRIVATE"} {
		if got := journalKey(in); got != want {
			t.Errorf("journalKey(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestLogFormatAutoIsTextOffTheJournal(t *testing.T) {
	t.Setenv("JOURNAL_STREAM", "1:1")
	var b strings.Builder
	log, err := newLogger(&b, "info", "auto")
	if err != nil {
		t.Fatal(err)
	}
	log.Info("hello", "vip", "192.0.2.1")
	if !strings.Contains(b.String(), "vip=192.0.2.1") {
		t.Errorf("auto format off the journal is not text: %q", b.String())
	}
}

func TestCheckWarnsAboutTheQuorum(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "gossip.key"), []byte("MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=\n"), 0o600)
	for _, tc := range []struct{ name, cluster, warn string }{
		{"three", "join: [10.0.0.11, 10.0.0.12, 10.0.0.13]", ""},
		{"two", "join: [10.0.0.11, 10.0.0.12]", "run `edgelb witness` on a third machine"},
		{"two-quorum-1", "join: [10.0.0.11, 10.0.0.12], quorum: 1", "a partition between them gives every VIP two owners"},
		{"pair-and-witness", "join: [10.0.0.11, 10.0.0.12, 10.0.0.13]", ""},
		{"single", "quorum: 0", ""},
	} {
		path := filepath.Join(dir, tc.name+".yaml")
		os.WriteFile(path, []byte("node: {name: lb1}\ncluster: {secretKeyFile: gossip.key, bindAddr: 10.0.0.11, "+tc.cluster+"}\n"), 0o600)
		code, out, errs := runMain("check", "--config", path)
		if code != 0 || !strings.Contains(out, "ok") {
			t.Errorf("%s: exit %d, %q %q", tc.name, code, out, errs)
		}
		if tc.warn == "" && errs != "" || !strings.Contains(errs, tc.warn) {
			t.Errorf("%s: stderr %q, want %q", tc.name, errs, tc.warn)
		}
	}
}

// cluster.insecure is accepted with a warning that says what it costs:
// in a cluster of several hosts, nothing but ownership crosses between
// them, and the API refuses what would have to.
func TestCheckWarnsAboutInsecure(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct{ name, cluster, warn string }{
		{"three", "join: [10.0.0.11, 10.0.0.12, 10.0.0.13]", "the API refuses configuration changes, backend admin states and drains of other members (409)"},
		{"single", "quorum: 0", "a host that joins takes no configuration from this one"},
	} {
		path := filepath.Join(dir, tc.name+".yaml")
		os.WriteFile(path, []byte("node: {name: lb1}\ncluster: {insecure: true, bindAddr: 10.0.0.11, "+tc.cluster+"}\n"), 0o600)
		code, out, errs := runMain("check", "--config", path)
		if code != 0 || !strings.Contains(out, "ok") {
			t.Errorf("%s: exit %d, %q %q", tc.name, code, out, errs)
		}
		if want := path + ": warning: cluster.insecure"; !strings.Contains(errs, want) || !strings.Contains(errs, tc.warn) {
			t.Errorf("%s: stderr %q, want %q and %q", tc.name, errs, want, tc.warn)
		}
	}
}

func TestClusterDefaultsAreTheConfigDefaults(t *testing.T) {
	def := config.Default()
	o := node.ClusterOptions(&def, nil, nil)
	if o.ProbeInterval != cluster.DefaultProbeInterval || o.ProbeTimeout != cluster.DefaultProbeTimeout || o.SuspicionMult != cluster.DefaultSuspicionMult ||
		o.GossipInterval != cluster.DefaultGossipInterval || o.RestartHold != cluster.DefaultRestartHold || o.HandoverTimeout != cluster.DefaultHandoverTimeout {
		t.Fatalf("config defaults %+v differ from the cluster package's", o)
	}
}

// status --help and the man page name the variable the token defaults
// to, never its value.
func TestStatusHelpNamesTheTokenVariable(t *testing.T) {
	t.Setenv("EDGELB_TOKEN", "secret-token-from-the-environment")
	_, _, help := runMain("status", "--help")
	var man strings.Builder
	if err := WriteManPage(&man, "1.2.3", "2026-01-02"); err != nil {
		t.Fatal(err)
	}
	for what, text := range map[string]string{"status --help": help, "the man page": roffPlain(man.String())} {
		if strings.Contains(text, "secret-token") {
			t.Errorf("%s shows $EDGELB_TOKEN's value", what)
		}
		if !strings.Contains(text, "default: $EDGELB_TOKEN") {
			t.Errorf("%s does not name $EDGELB_TOKEN as --token's default:\n%s", what, text)
		}
	}
}
