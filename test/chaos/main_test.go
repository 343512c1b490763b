package chaos

import (
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/edgelb/edgelb/test/nslab"
)

func TestMain(m *testing.M) { os.Exit(nslab.Main(m)) }

// full selects the full counts of `make chaos` over the reduced ones that
// keep `go test ./test/chaos` in the normal suite's budget.
var full = os.Getenv("EDGELB_CHAOS_FULL") == "1"

// count returns n in a full run and reduced otherwise.
func count[T any](n, reduced T) T {
	if full {
		return n
	}
	return reduced
}

// figure prints one figure of a scenario, in the form `make chaos`
// collects: FIGURE<tab>scenario<tab>name<tab>value.
func figure(t testing.TB, scenario, name string, value any) {
	t.Helper()
	if d, ok := value.(time.Duration); ok {
		value = d.Round(time.Millisecond)
	}
	t.Logf("FIGURE\t%s\t%s\t%v", scenario, name, value)
}

// ms formats durations as a list of milliseconds.
func ms(ds []time.Duration) string {
	s := ""
	for i, d := range ds {
		if i > 0 {
			s += " "
		}
		s += fmt.Sprint(d.Milliseconds())
	}
	return s + " ms"
}
