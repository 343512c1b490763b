package packaging

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/edgelb/edgelb/test/prereq"
	"github.com/edgelb/edgelb/test/testenv"
)

// Every build sorts after the one before it, as apt compares them
// (dpkg --compare-versions): commit after commit on a branch without tags,
// across a tag (the tagged build after the untagged ones, the next commit
// after the tag), and across a commit count that gains a digit, so that
// the documented rolling upgrade is never a downgrade.
func TestDebVersionsSortInBuildOrder(t *testing.T) {
	for _, tool := range []string{"git", "dpkg"} {
		if _, err := exec.LookPath(tool); err != nil {
			prereq.Missing(t, "%s is not installed", tool)
		}
	}
	// A scratch repository holding hack/deb-version.sh, as a checkout of
	// edgelb does: the script finds the repository from its own path.
	repo := t.TempDir()
	script, err := os.ReadFile(filepath.Join(testenv.RepoRoot(), "hack", "deb-version.sh"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(repo, "hack"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(repo, "hack", "deb-version.sh"), script, 0o755); err != nil {
		t.Fatal(err)
	}
	git := func(args ...string) {
		t.Helper()
		cmd := exec.Command("git", args...)
		cmd.Dir = repo
		cmd.Env = append(os.Environ(), "GIT_CONFIG_GLOBAL=/dev/null", "GIT_CONFIG_NOSYSTEM=1",
			"GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@t.invalid", "GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@t.invalid")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	git("init", "-q", "-b", "main")
	commit := func() { git("commit", "-q", "--allow-empty", "-m", "change") }
	version := func() string {
		t.Helper()
		out, err := exec.Command(filepath.Join(repo, "hack", "deb-version.sh")).Output()
		if err != nil {
			t.Fatalf("hack/deb-version.sh: %v", err)
		}
		return strings.TrimSpace(string(out))
	}

	// Each step makes a build; want is the shape of its version.
	var builds []string
	step := func(want string, change func()) {
		t.Helper()
		change()
		v := version()
		if !regexp.MustCompile(`^` + want + `$`).MatchString(v) {
			t.Fatalf("after %d builds: version %q, want %s", len(builds), v, want)
		}
		builds = append(builds, v)
	}
	tag := func(name string) func() { return func() { git("tag", "-a", "-m", name, name) } }
	step(`0\.0\.0\+git1\.[0-9a-f]{7}`, commit)
	for range 8 {
		step(`0\.0\.0\+git[2-9]\.[0-9a-f]{7}`, commit)
	}
	step(`0\.0\.0\+git10\.[0-9a-f]{7}`, commit) // 9 -> 10 sorts as a number
	step(`0\.1\.0`, tag("v0.1.0"))
	step(`0\.1\.0\+git1\.[0-9a-f]{7}`, commit)
	step(`0\.1\.0\+git2\.[0-9a-f]{7}`, commit)
	step(`0\.1\.1`, func() { commit(); tag("v0.1.1")() })
	step(`0\.1\.1\+git1\.[0-9a-f]{7}`, commit)
	step(`1\.0\.0`, tag("v1.0.0"))
	// A tag not in the v-semver form is not a release.
	step(`1\.0\.0\+git1\.[0-9a-f]{7}`, func() { commit(); tag("nightly")() })

	for i := 1; i < len(builds); i++ {
		prev, next := builds[i-1], builds[i]
		if err := exec.Command("dpkg", "--compare-versions", next, "gt", prev).Run(); err != nil {
			t.Errorf("build %d (%s) does not sort after build %d (%s): apt would see a downgrade", i, next, i-1, prev)
		}
	}
	t.Logf("builds: %s", strings.Join(builds, " < "))
}
