// Package prereq is how edgelb's tests treat a missing prerequisite (root,
// a kernel feature, a tool, a cached binary): they skip with the reason
// when run by hand, and fail when the environment has CI=true, because the
// CI machine must provide every prerequisite and a skipped test must never
// count as a pass there.
package prereq

import (
	"fmt"
	"os"
	"testing"
)

// Missing skips t with the reason, or fails it under CI=true.
func Missing(t testing.TB, format string, args ...any) {
	t.Helper()
	reason := fmt.Sprintf(format, args...)
	if os.Getenv("CI") == "true" {
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
