// Package prereq is how edgelb's tests treat a missing prerequisite (root,
// a kernel feature, a tool, a cached binary): they skip with the reason
// when run by hand, and fail when the environment has CI=true, because the
// CI machine must provide every prerequisite and a skipped test must never
// count as a pass there.
package prereq

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// CI reports whether the environment has CI=true: every prerequisite must
// be there and nothing may be skipped.
func CI() bool { return os.Getenv("CI") == "true" }

// Missing skips t with the reason, or fails it under CI=true.
func Missing(t testing.TB, format string, args ...any) {
	t.Helper()
	reason := fmt.Sprintf(format, args...)
	if CI() {
		t.Fatalf("missing test prerequisite (CI=true, not skipping): %s", reason)
	}
	t.Skipf("skipping: %s", reason)
}

// Require calls Missing unless ok.
func Require(t testing.TB, ok bool, format string, args ...any) {
	t.Helper()
	if !ok {
		Missing(t, format, args...)
	}
}

// NotShort calls Missing in -short mode: what is too slow for it (a VM)
// is skipped by hand and fails under CI=true, which never runs -short.
func NotShort(t testing.TB, what string) {
	t.Helper()
	if testing.Short() {
		Missing(t, "%s does not run in -short mode", what)
	}
}

// MissingMain is Missing for a TestMain that cannot run any test of its
// package: it prints the reason to stderr and returns TestMain's exit code,
// 0 by hand (the package is skipped as a whole) and 1 under CI=true.
func MissingMain(format string, args ...any) int {
	reason := fmt.Sprintf(format, args...)
	if CI() {
		fmt.Fprintf(os.Stderr, "missing test prerequisite (CI=true, not skipping): %s\n", reason)
		return 1
	}
	fmt.Fprintf(os.Stderr, "skipping the package: %s\n", reason)
	return 0
}

// RootWith calls Missing unless the test runs as root and every command is
// on PATH (with the Debian package that has it in parentheses, for the
// message), e.g. RootWith(t, "nft (package nftables)", "ip (package
// iproute2)").
func RootWith(t testing.TB, commands ...string) {
	t.Helper()
	if os.Geteuid() != 0 {
		Missing(t, "this test needs root")
	}
	for _, c := range commands {
		name, _, _ := strings.Cut(c, " ")
		if _, err := exec.LookPath(name); err != nil {
			Missing(t, "this test needs the %s command", c)
		}
	}
}
