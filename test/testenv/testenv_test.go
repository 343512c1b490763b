package testenv

import (
	"os"
	"path/filepath"
	"regexp"
	"testing"
)

// The binaries the tests build are the ones `make build` and `make deb`
// ship: the same build tags.
func TestBuildTagsAreTheMakefiles(t *testing.T) {
	mk, err := os.ReadFile(filepath.Join(RepoRoot(), "Makefile"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^TAGS := (.*)$`).FindSubmatch(mk)
	if m == nil {
		t.Fatal("the Makefile sets no TAGS")
	}
	if string(m[1]) != BuildTags {
		t.Errorf("Makefile TAGS %q, testenv.BuildTags %q", m[1], BuildTags)
	}
}
