// Package packaging tests the .deb as an administrator would meet it: its
// contents, an install into a throwaway Debian root, `edgelb check` on the
// installed default config, and the systemd unit.
package packaging

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/edgelb/edgelb/lb/config"
	"github.com/edgelb/edgelb/test/prereq"
	"github.com/edgelb/edgelb/test/testenv"
)

func need(t *testing.T, tools ...string) {
	t.Helper()
	if os.Geteuid() != 0 {
		prereq.Missing(t, "%s", "needs root (dpkg --root, chroot)")
	}
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			prereq.Missing(t, "%s", tool+" is not installed")
		}
	}
}

func run(t *testing.T, dir string, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

func TestDebPackage(t *testing.T) {
	need(t, "dpkg", "dpkg-deb", "chroot", "systemd-analyze", "make")
	root := testenv.RepoRoot()
	run(t, root, "make", "deb")
	debs, _ := filepath.Glob(filepath.Join(root, "dist", "edgelb_*.deb"))
	if len(debs) != 1 {
		t.Fatalf("make deb made %v", debs)
	}
	deb := debs[0]

	t.Run("contents", func(t *testing.T) {
		list := run(t, root, "dpkg-deb", "--contents", deb)
		for _, f := range []string{
			"./usr/bin/edgelb", "./usr/lib/systemd/system/edgelb.service", "./etc/edgelb/config.yaml",
			"./usr/lib/sysctl.d/60-edgelb.conf", "./usr/lib/modules-load.d/edgelb.conf", "./usr/share/edgelb/rbac.yaml",
		} {
			if !strings.Contains(list, " "+f+"\n") {
				t.Errorf("package lacks %s:\n%s", f, list)
			}
		}
		if !regexp.MustCompile(`-rwxr-xr-x root/root .* ./usr/bin/edgelb`).MatchString(list) {
			t.Errorf("the binary is not root-owned 0755:\n%s", list)
		}
		conffiles := run(t, root, "dpkg-deb", "--info", deb, "conffiles")
		if !strings.Contains(conffiles, "/etc/edgelb/config.yaml") {
			t.Errorf("config.yaml is not a conffile: %q", conffiles)
		}
		ctrl := run(t, root, "dpkg-deb", "--field", deb, "Package", "Version", "Architecture")
		if !strings.Contains(ctrl, "Package: edgelb") {
			t.Errorf("control: %s", ctrl)
		}
	})

	t.Run("install into a throwaway root", func(t *testing.T) {
		dir := t.TempDir()
		for _, d := range []string{"var/lib/dpkg/info", "var/lib/dpkg/updates", "etc"} {
			if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
				t.Fatal(err)
			}
		}
		if err := os.WriteFile(filepath.Join(dir, "var/lib/dpkg/status"), nil, 0o644); err != nil {
			t.Fatal(err)
		}
		out := run(t, root, "dpkg", "--root="+dir, "--log=/dev/null", "--force-script-chrootless", "-i", deb)
		t.Logf("dpkg -i:\n%s", out)
		key, err := os.ReadFile(filepath.Join(dir, "etc/edgelb/gossip.key"))
		if err != nil {
			t.Fatalf("postinst made no gossip key: %v", err)
		}
		if _, err := config.DecodeKey(key); err != nil {
			t.Errorf("the gossip key is unusable: %v", err)
		}
		if fi, _ := os.Stat(filepath.Join(dir, "etc/edgelb/gossip.key")); fi.Mode().Perm()&0o077 != 0 {
			t.Errorf("gossip.key mode %v is readable by others", fi.Mode())
		}
		// The static binary checks the installed default config inside the root.
		out = run(t, root, "chroot", dir, "/usr/bin/edgelb", "check", "--config", "/etc/edgelb/config.yaml")
		if !strings.Contains(out, ": ok") {
			t.Errorf("edgelb check: %s", out)
		}
		// Reinstalling keeps the key (and an edited config).
		before := string(key)
		run(t, root, "dpkg", "--root="+dir, "--log=/dev/null", "--force-script-chrootless", "-i", deb)
		if after, _ := os.ReadFile(filepath.Join(dir, "etc/edgelb/gossip.key")); string(after) != before {
			t.Error("reinstalling replaced the gossip key")
		}
		sec, err := exec.Command("systemd-analyze", "security", "--offline=yes", "--root="+dir, "edgelb.service").CombinedOutput()
		m := regexp.MustCompile(`Overall exposure level for edgelb.service: ([0-9.]+)`).FindStringSubmatch(string(sec))
		if m == nil {
			t.Fatalf("systemd-analyze security: %v\n%s", err, sec)
		}
		score, _ := strconv.ParseFloat(m[1], 64)
		t.Logf("systemd-analyze security exposure: %.1f", score)
		if score > 3.0 {
			t.Errorf("exposure %.1f is worse than 3.0:\n%s", score, sec)
		}
		run(t, root, "dpkg", "--root="+dir, "--log=/dev/null", "--force-script-chrootless", "--purge", "edgelb")
		if _, err := os.Stat(filepath.Join(dir, "etc/edgelb/gossip.key")); !os.IsNotExist(err) {
			t.Errorf("purge left the gossip key: %v", err)
		}
	})

	t.Run("systemd-analyze verify", func(t *testing.T) {
		// verify checks that ExecStart exists: point it at the built binary.
		unit, err := os.ReadFile(filepath.Join(root, "packaging", "edgelb.service"))
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(t.TempDir(), "edgelb.service")
		bin := filepath.Join(root, "bin", "edgelb")
		if err := os.WriteFile(path, []byte(strings.ReplaceAll(string(unit), "/usr/bin/edgelb", bin)), 0o644); err != nil {
			t.Fatal(err)
		}
		if out, err := exec.Command("systemd-analyze", "verify", path).CombinedOutput(); err != nil || len(out) > 0 {
			t.Errorf("systemd-analyze verify: %v\n%s", err, out)
		}
	})
}
