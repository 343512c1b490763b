// Package packaging tests the .deb as an administrator would meet it: its
// contents, an install into a throwaway Debian root, `edgelb check` on the
// installed default config, the systemd unit, the maintainer scripts
// (scripts_test.go) and the Debian conventions lintian checks.
package packaging

import (
	"bytes"
	"compress/gzip"
	"debug/buildinfo"
	"io"
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
			"./usr/bin/edgelb", "./usr/lib/edgelb/edgelb-crash-cleanup", "./usr/lib/systemd/system/edgelb.service", "./etc/edgelb/config.yaml",
			"./usr/lib/sysctl.d/60-edgelb.conf", "./usr/lib/modules-load.d/edgelb.conf", "./usr/share/edgelb/rbac.yaml",
			"./usr/share/doc/edgelb/copyright", "./usr/share/doc/edgelb/changelog.gz", "./usr/share/man/man8/edgelb.8.gz",
			"./usr/share/lintian/overrides/edgelb", "./usr/share/doc/edgelb/README.md", "./usr/share/doc/edgelb/CHANGELOG.md",
			"./usr/share/doc/edgelb/docs/operations.md", "./usr/lib/systemd/system/edgelb-witness.service", "./usr/share/edgelb/witness.yaml",
		} {
			if !strings.Contains(list, " "+f+"\n") {
				t.Errorf("package lacks %s:\n%s", f, list)
			}
		}
		for _, bin := range []string{"./usr/bin/edgelb", "./usr/lib/edgelb/edgelb-crash-cleanup"} {
			if !regexp.MustCompile(`-rwxr-xr-x root/root .* ` + regexp.QuoteMeta(bin) + `\n`).MatchString(list) {
				t.Errorf("%s is not root-owned 0755:\n%s", bin, list)
			}
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

	t.Run("copyright, changelog and man page", func(t *testing.T) {
		dir := t.TempDir()
		run(t, root, "dpkg-deb", "-x", deb, dir)
		version := strings.TrimSpace(run(t, root, "dpkg-deb", "--field", deb, "Version"))

		changelog := gunzip(t, filepath.Join(dir, "usr/share/doc/edgelb/changelog.gz"))
		if first, _, _ := strings.Cut(changelog, "\n"); !strings.HasPrefix(first, "edgelb ("+version+") ") {
			t.Errorf("the changelog's first entry is not version %s:\n%s", version, changelog)
		}

		// The entry's text is CHANGELOG.md's section the version was
		// built from: a build between releases carries Unreleased.
		if first := firstChangelogItem(t, filepath.Join(root, "CHANGELOG.md")); !strings.Contains(strings.Join(strings.Fields(changelog), " "), first) {
			t.Errorf("the Debian changelog does not follow CHANGELOG.md: its first entry lacks %q:\n%s", first, changelog)
		}
		// The binary says the package's version and the commit it was
		// built from (edgelb_build_info has the same).
		if out := run(t, root, filepath.Join(dir, "usr/bin/edgelb"), "version"); !regexp.MustCompile(`^edgelb ` + regexp.QuoteMeta(version) + ` \([0-9a-f]{12}\) go`).MatchString(out) {
			t.Errorf("edgelb version in package %s says %q, want the version and the commit", version, out)
		}

		man := gunzip(t, filepath.Join(dir, "usr/share/man/man8/edgelb.8.gz"))
		if !strings.Contains(man, "\n.TH EDGELB 8 ") || !strings.Contains(man, `"edgelb `+version+`"`) {
			t.Errorf("the man page has no title line for version %s:\n%s", version, man)
		}
		if _, err := exec.LookPath("man"); err == nil {
			out, err := exec.Command("man", "--warnings", "-l", filepath.Join(dir, "usr/share/man/man8/edgelb.8.gz")).CombinedOutput()
			if err != nil || !strings.Contains(string(out), "edgelb check --config FILE") {
				t.Errorf("man -l: %v\n%s", err, out)
			}
		}

		// Every Go module linked into the binary has its license in the
		// copyright file: a new dependency needs a stanza there.
		copyright, err := os.ReadFile(filepath.Join(dir, "usr/share/doc/edgelb/copyright"))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.HasPrefix(copyright, []byte("Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n")) {
			t.Error("the copyright file is not in the machine-readable format")
		}
		for _, bin := range []string{"usr/bin/edgelb", "usr/lib/edgelb/edgelb-crash-cleanup"} {
			bi, err := buildinfo.ReadFile(filepath.Join(dir, bin))
			if err != nil {
				t.Fatal(err)
			}
			for _, m := range bi.Deps {
				if !bytes.Contains(copyright, []byte(" vendor/"+m.Path+"/*\n")) {
					t.Errorf("packaging/copyright does not list %s %s (linked into /%s)", m.Path, m.Version, bin)
				}
			}
		}
	})

	t.Run("documentation", func(t *testing.T) {
		dir := t.TempDir()
		run(t, root, "dpkg-deb", "-x", deb, dir)
		testDocs(t, root, filepath.Join(dir, "usr/share/doc/edgelb"))
	})

	t.Run("lintian", func(t *testing.T) {
		if _, err := exec.LookPath("lintian"); err != nil {
			prereq.Missing(t, "lintian is not installed")
		}
		// Exit status 0 or 2 (tags at error level) both print the tags.
		out, _ := exec.Command("lintian", "--display-experimental", "--display-info", "--pedantic", "--show-overrides", deb).CombinedOutput()
		t.Logf("lintian:\n%s", out)
		for _, line := range strings.Split(string(out), "\n") {
			if strings.HasPrefix(line, "E: ") || strings.HasPrefix(line, "W: ") {
				t.Errorf("lintian: %s", line)
			}
		}
		if !strings.Contains(string(out), "O: edgelb: statically-linked-binary") {
			t.Errorf("lintian did not run or did not read the overrides:\n%s", out)
		}
	})

	t.Run("maintainer scripts", func(t *testing.T) {
		testMaintainerScripts(t, root, deb)
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
		// The scripts run chrootless, so the host provides what the
		// package depends on (adduser, init-system-helpers), not the root.
		install := []string{"--root=" + dir, "--log=/dev/null", "--force-script-chrootless", "--force-depends", "-i", deb}
		out := run(t, root, "dpkg", install...)
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
		// The static binary checks the installed default config inside the
		// root: it names a kubeconfig the administrator has yet to make
		// (docs/operations.md), which check refuses, saying so, until the
		// file is there; the rest of the default config passes.
		check := exec.Command("chroot", dir, "/usr/bin/edgelb", "check", "--config", "/etc/edgelb/config.yaml")
		if out, err := check.CombinedOutput(); err == nil || !strings.Contains(string(out), "kubernetes.kubeconfig") || !strings.Contains(string(out), "docs/operations.md") {
			t.Errorf("edgelb check before the kubeconfig is made: %v, %s; want it refused, naming kubernetes.kubeconfig and docs/operations.md", err, out)
		}
		const kubeconfig = `apiVersion: v1
kind: Config
clusters: [{name: k, cluster: {server: "https://192.0.2.1:6443"}}]
users: [{name: edgelb, user: {token: "t0ken"}}]
contexts: [{name: k, context: {cluster: k, user: edgelb}}]
current-context: k
`
		if err := os.WriteFile(filepath.Join(dir, "etc/edgelb/kubeconfig"), []byte(kubeconfig), 0o644); err != nil {
			t.Fatal(err)
		}
		out = run(t, root, "chroot", dir, "/usr/bin/edgelb", "check", "--config", "/etc/edgelb/config.yaml")
		if !strings.Contains(out, ": ok") {
			t.Errorf("edgelb check: %s", out)
		}
		if err := os.Remove(filepath.Join(dir, "etc/edgelb/kubeconfig")); err != nil {
			t.Fatal(err)
		}
		// Reinstalling keeps the key (and an edited config).
		before := string(key)
		run(t, root, "dpkg", install...)
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
		// deb-systemd-helper (DPKG_ROOT-aware) recorded the unit, without
		// enabling it: a fresh install is never enabled.
		state := filepath.Join(dir, "var/lib/systemd/deb-systemd-helper-enabled/edgelb.service.dsh-also")
		if _, err := os.Stat(state); err != nil {
			t.Errorf("the postinst did not record the unit with deb-systemd-helper: %v", err)
		}
		if _, err := os.Lstat(filepath.Join(dir, "etc/systemd/system/multi-user.target.wants/edgelb.service")); !os.IsNotExist(err) {
			t.Errorf("a fresh install enabled the unit: %v", err)
		}
		run(t, root, "dpkg", "--root="+dir, "--log=/dev/null", "--force-script-chrootless", "--purge", "edgelb")
		for _, f := range []string{"etc/edgelb/gossip.key", "etc/edgelb", state} {
			if _, err := os.Stat(filepath.Join(dir, f)); !os.IsNotExist(err) {
				t.Errorf("purge left %s: %v", f, err)
			}
		}
	})

	t.Run("systemd-analyze verify", func(t *testing.T) {
		for _, name := range []string{"edgelb.service", "edgelb-witness.service"} {
			// verify checks that ExecStart exists: point it at the built binary.
			unit, err := os.ReadFile(filepath.Join(root, "packaging", name))
			if err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(t.TempDir(), name)
			bin := filepath.Join(root, "bin", "edgelb")
			if err := os.WriteFile(path, []byte(strings.ReplaceAll(string(unit), "/usr/bin/edgelb", bin)), 0o644); err != nil {
				t.Fatal(err)
			}
			if out, err := exec.Command("systemd-analyze", "verify", path).CombinedOutput(); err != nil || len(out) > 0 {
				t.Errorf("systemd-analyze verify %s: %v\n%s", name, err, out)
			}
		}
	})
}

func gunzip(t *testing.T, path string) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	b, err := io.ReadAll(zr)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return string(b)
}
