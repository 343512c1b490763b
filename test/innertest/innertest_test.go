package innertest

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

// What a test binary run with -test.v inside the VM prints (run.sh strips
// the console's carriage returns, but not always a kernel's messages).
const good = `=== RUN   TestDataplane
    e2e_test.go:120: topology up
=== RUN   TestDataplane/nat
--- PASS: TestDataplane (12.30s)
    --- PASS: TestDataplane/nat (3.10s)
=== RUN   TestFailover
--- PASS: TestFailover (20.00s)
PASS
`

func TestCheck(t *testing.T) {
	for _, tc := range []struct {
		name string
		out  string
		want []error // each must be in the error; none means nil
		text []string
	}{
		{name: "good", out: good},
		{name: "good with carriage returns and go test's ok line",
			out: strings.ReplaceAll(good, "\n", "\r\n") + "ok  \tgithub.com/edgelb/edgelb/test/vm/e2e\t32.4s\r\n"},
		{name: "good, several packages",
			out: "=== RUN   TestA\n--- PASS: TestA (0.00s)\nPASS\nok  \ta\t0.1s\n=== RUN   TestB\n--- PASS: TestB (0.00s)\nPASS\nok  \tb\t0.1s\n"},
		{name: "skipped",
			out: "=== RUN   TestDataplane\n--- PASS: TestDataplane (1.00s)\n=== RUN   TestDirectRoutingAndTunnel\n" +
				"    e2e_test.go:404: needs the topology of TestDataplane\n--- SKIP: TestDirectRoutingAndTunnel (0.00s)\nPASS\n",
			want: []error{ErrSkipped},
			text: []string{"TestDirectRoutingAndTunnel (needs the topology of TestDataplane)"}},
		{name: "skipped subtest",
			out:  "=== RUN   TestA\n=== RUN   TestA/v6\n--- PASS: TestA (0.00s)\n    --- SKIP: TestA/v6 (0.00s)\nPASS\n",
			want: []error{ErrSkipped}, text: []string{"TestA/v6"}},
		{name: "all skipped",
			out:  "=== RUN   TestKubernetes\n    kubernetes_test.go:88: needs the host's kube-apiserver\n--- SKIP: TestKubernetes (0.00s)\nPASS\n",
			want: []error{ErrSkipped, ErrNoneRan}},
		{name: "none ran", out: "testing: warning: no tests to run\nPASS\n", want: []error{ErrNoneRan}},
		{name: "empty output", out: "", want: []error{ErrNoneRan, ErrNoReport}},
		{name: "truncated",
			out:  "=== RUN   TestDataplane\n--- PASS: TestDataplane (1.00s)\n=== RUN   TestFailover\n    e2e_test.go:500: cutting the link\n",
			want: []error{ErrNoReport}},
		{name: "truncated after one package reported",
			out:  "=== RUN   TestA\n--- PASS: TestA (0.00s)\nPASS\nok  \ta\t0.1s\n=== RUN   TestB\n",
			want: []error{ErrNoReport}},
		{name: "failed",
			out:  "=== RUN   TestA\n--- PASS: TestA (0.00s)\n=== RUN   TestB\n    b_test.go:9: boom\n--- FAIL: TestB (0.00s)\nFAIL\n",
			want: []error{ErrFailed}, text: []string{"TestB failed"}},
		{name: "failed without a failing test",
			out:  "=== RUN   TestA\n--- PASS: TestA (0.00s)\nFAIL\tgithub.com/edgelb/edgelb/test/e2e\t0.2s\n",
			want: []error{ErrFailed}},
		{name: "panic",
			out:  "=== RUN   TestA\n--- PASS: TestA (0.00s)\n=== RUN   TestB\npanic: test timed out after 7m0s\n\ngoroutine 1 [running]:\n",
			want: []error{ErrFailed, ErrNoReport}, text: []string{"panic: test timed out"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := Check(tc.out)
			if len(tc.want) == 0 {
				if err != nil {
					t.Fatalf("Check: %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Check: nil, want %v", tc.want)
			}
			for _, w := range tc.want {
				if !errors.Is(err, w) {
					t.Errorf("Check: %v, want it to include %q", err, w)
				}
			}
			for _, all := range []error{ErrSkipped, ErrNoneRan, ErrNoReport, ErrFailed} {
				if errors.Is(err, all) && !slices.Contains(tc.want, all) {
					t.Errorf("Check: %v, did not expect %q", err, all)
				}
			}
			for _, s := range tc.text {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("Check: %v, want it to mention %q", err, s)
				}
			}
		})
	}
}
