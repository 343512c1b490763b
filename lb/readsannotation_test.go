package lb

import (
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// The informers' cache keeps only the annotations ReadsAnnotation answers
// true for (lb/k8s slim): every annotation edgelb reads must be one.
func TestEveryAnnotationReadIsCached(t *testing.T) {
	names, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, file := range names {
		if strings.HasSuffix(file, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(token.NewFileSet(), file, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		{
			ast.Inspect(f, func(nd ast.Node) bool {
				vs, ok := nd.(*ast.ValueSpec)
				if !ok {
					return true
				}
				for i, name := range vs.Names {
					if !strings.HasPrefix(name.Name, "Annotation") || name.Name == "AnnotationPrefix" || i >= len(vs.Values) {
						continue
					}
					lit, ok := vs.Values[i].(*ast.BasicLit)
					if !ok || lit.Kind != token.STRING {
						continue
					}
					v, _ := strconv.Unquote(lit.Value)
					n++
					if !ReadsAnnotation(v) {
						t.Errorf("%s = %q: ReadsAnnotation is false, the cache would drop it", name.Name, v)
					}
				}
				return true
			})
		}
	}
	if n < 10 {
		t.Errorf("found %d annotation constants; the test no longer finds them", n)
	}
}
