package packaging

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/edgelb/edgelb/test/prereq"
	"github.com/edgelb/edgelb/test/testenv"
)

// The package's Debian changelog follows CHANGELOG.md: a build between
// releases carries the Unreleased section, a release its own section, and
// a release whose section is missing is refused with what to do. Each
// entry is one that dpkg-parsechangelog reads, with lines lintian accepts.
func TestDebChangelogFollowsCHANGELOG(t *testing.T) {
	for _, tool := range []string{"dpkg-parsechangelog"} {
		if _, err := exec.LookPath(tool); err != nil {
			prereq.Missing(t, "%s is not installed (dpkg-dev)", tool)
		}
	}
	repo := testenv.RepoRoot()
	// A copy of the script beside a CHANGELOG.md of the test's own.
	dir := t.TempDir()
	for _, f := range []string{"hack/deb-changelog.sh", "packaging/nfpm.yaml"} {
		b, err := os.ReadFile(filepath.Join(repo, f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(filepath.Join(dir, filepath.Dir(f)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, f), b, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	const changelog = `# Changelog

Intro text that is no release.

## [Unreleased]

### Added
- A feature that is not released yet, described at some length so that its
  line has to be wrapped when it goes into the Debian changelog, which has
  lines of at most eighty columns, see [the docs](docs/operations.md#x).

## [1.2.3] - 2026-12-01

### Fixed
- The fix that 1.2.3 shipped.
`
	if err := os.WriteFile(filepath.Join(dir, "CHANGELOG.md"), []byte(changelog), 0o644); err != nil {
		t.Fatal(err)
	}
	render := func(version string) (string, error) {
		out, err := exec.Command(filepath.Join(dir, "hack", "deb-changelog.sh"), version, "1764547200").CombinedOutput()
		return string(out), err
	}
	for _, tc := range []struct {
		version   string
		has, hasn []string
	}{
		{"1.2.3+git4.abc1234", []string{"A feature that is not released yet", "see the docs.", "  Added:"}, []string{"The fix that 1.2.3", "](", "Intro"}},
		{"1.2.3", []string{"The fix that 1.2.3 shipped.", "  Fixed:"}, []string{"not released yet", "Intro"}},
	} {
		out, err := render(tc.version)
		if err != nil {
			t.Fatalf("deb-changelog.sh %s: %v\n%s", tc.version, err, out)
		}
		flat := strings.Join(strings.Fields(out), " ")
		for _, s := range tc.has {
			if !strings.Contains(flat, strings.Join(strings.Fields(s), " ")) && !strings.Contains(out, s) {
				t.Errorf("%s: the entry lacks %q:\n%s", tc.version, s, out)
			}
		}
		for _, s := range tc.hasn {
			if strings.Contains(out, s) {
				t.Errorf("%s: the entry has %q:\n%s", tc.version, s, out)
			}
		}
		for _, line := range strings.Split(out, "\n") {
			if len(line) > 80 {
				t.Errorf("%s: a line over 80 columns (lintian: debian-changelog-line-too-long): %q", tc.version, line)
			}
		}
		f := filepath.Join(t.TempDir(), "changelog")
		if err := os.WriteFile(f, []byte(out), 0o644); err != nil {
			t.Fatal(err)
		}
		parsed, err := exec.Command("dpkg-parsechangelog", "-l", f, "-S", "Version").CombinedOutput()
		if err != nil || strings.TrimSpace(string(parsed)) != tc.version {
			t.Errorf("dpkg-parsechangelog reads version %q (%v) from:\n%s", parsed, err, out)
		}
	}

	// A release without its own section: refused, saying what to do.
	out, err := render("1.3.0")
	if err == nil || !strings.Contains(out, `CHANGELOG.md has no section "## [1.3.0]"`) || !strings.Contains(out, "before tagging v1.3.0") {
		t.Errorf("a release without its section: %v\n%s", err, out)
	}
}
