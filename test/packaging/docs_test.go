package packaging

import (
	"bufio"
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// mdLink is a Markdown link's target: [text](target).
var mdLink = regexp.MustCompile(`\]\(([^)\s]+)\)`)

// testDocs checks the documentation installed in doc (the package's
// /usr/share/doc/edgelb): README.md, CHANGELOG.md and every docs/*.md of
// the repository, unchanged, and every relative link between them leads
// to a file that is installed too, so that nothing README or the docs
// point to is dead on the host.
func testDocs(t *testing.T, root, doc string) {
	t.Helper()
	want := []string{"README.md", "CHANGELOG.md"}
	mds, _ := filepath.Glob(filepath.Join(root, "docs", "*.md"))
	if len(mds) == 0 {
		t.Fatal("no docs/*.md in the repository")
	}
	for _, md := range mds {
		want = append(want, filepath.Join("docs", filepath.Base(md)))
	}
	links := 0
	for _, rel := range want {
		src, err := os.ReadFile(filepath.Join(root, rel))
		if err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(filepath.Join(doc, rel))
		if err != nil {
			t.Errorf("the package lacks /usr/share/doc/edgelb/%s: %v", rel, err)
			continue
		}
		if !bytes.Equal(src, got) {
			t.Errorf("/usr/share/doc/edgelb/%s differs from the repository's %s", rel, rel)
		}
		for _, m := range mdLink.FindAllStringSubmatch(string(got), -1) {
			target, _, _ := strings.Cut(m[1], "#")
			if target == "" || strings.Contains(target, "://") || strings.HasPrefix(target, "mailto:") {
				continue
			}
			links++
			if _, err := os.Stat(filepath.Join(doc, filepath.Dir(rel), target)); err != nil {
				t.Errorf("/usr/share/doc/edgelb/%s links to %s, which the package does not install", rel, m[1])
			}
		}
	}
	if links == 0 {
		t.Error("no relative link found in the documentation: the link check checked nothing")
	}
	t.Logf("%d documents, %d relative links resolved", len(want), links)
}

// firstChangelogItem is the first entry of CHANGELOG.md's top section, its
// words joined by single spaces and Markdown links reduced to their text,
// as hack/deb-changelog.sh renders it.
func firstChangelogItem(t *testing.T, path string) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var item []string
	inSection := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "## ") {
			if inSection {
				break
			}
			inSection = true
			continue
		}
		if !inSection {
			continue
		}
		if item == nil {
			if strings.HasPrefix(line, "- ") {
				item = append(item, strings.TrimPrefix(line, "- "))
			}
			continue
		}
		if !strings.HasPrefix(line, "  ") {
			break // the first entry ends where its indented lines do
		}
		item = append(item, line)
	}
	if item == nil {
		t.Fatalf("%s has no entry in its top section", path)
	}
	text := strings.Join(strings.Fields(strings.Join(item, " ")), " ")
	return regexp.MustCompile(`\[([^]]*)\]\([^)]*\)`).ReplaceAllString(text, "$1")
}
