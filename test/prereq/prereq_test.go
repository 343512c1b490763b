package prereq

import (
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
)

// A missing prerequisite skips by hand and fails under CI=true.
func TestMissing(t *testing.T) {
	if os.Getenv("PREREQ_CHILD") == "1" {
		Missing(t, "the %s tool", "frobnicator")
		return
	}
	for _, ci := range []string{"", "true"} {
		cmd := exec.Command(os.Args[0], "-test.run", "^TestMissing$", "-test.v")
		cmd.Env = append(os.Environ(), "PREREQ_CHILD=1", "CI="+ci)
		out, err := cmd.CombinedOutput()
		switch {
		case ci == "" && (err != nil || !strings.Contains(string(out), "--- SKIP") || !strings.Contains(string(out), "frobnicator")):
			t.Errorf("by hand: %v\n%s", err, out)
		case ci == "true" && (err == nil || !strings.Contains(string(out), "--- FAIL") || !strings.Contains(string(out), "CI=true")):
			t.Errorf("under CI=true: %v\n%s", err, out)
		}
	}
}

// A -short skip is a skip by hand and a failure under CI=true.
func TestNotShort(t *testing.T) {
	if os.Getenv("PREREQ_CHILD") == "1" {
		NotShort(t, "the frobnicator VM")
		return
	}
	for _, tc := range []struct {
		ci    string
		short bool
		want  string
	}{
		{"", false, "--- PASS"},
		{"true", false, "--- PASS"},
		{"", true, "--- SKIP"},
		{"true", true, "--- FAIL"},
	} {
		cmd := exec.Command(os.Args[0], "-test.run", "^TestNotShort$", "-test.v", "-test.short="+strconv.FormatBool(tc.short))
		cmd.Env = append(os.Environ(), "PREREQ_CHILD=1", "CI="+tc.ci)
		out, _ := cmd.CombinedOutput()
		if !strings.Contains(string(out), tc.want) {
			t.Errorf("CI=%q -short=%t: want %s:\n%s", tc.ci, tc.short, tc.want, out)
		}
	}
}

// A TestMain that cannot run gives up with 0 by hand and 1 under CI=true.
func TestMissingMain(t *testing.T) {
	for ci, want := range map[string]int{"": 0, "false": 0, "true": 1} {
		t.Setenv("CI", ci)
		if got := MissingMain("the %s server", "frobnicator"); got != want {
			t.Errorf("CI=%q: MissingMain = %d, want %d", ci, got, want)
		}
	}
}
