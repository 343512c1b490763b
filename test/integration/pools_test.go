package integration

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// countEvents returns how many Events of the given type and reason a
// Service has whose message contains substr.
func countEvents(t testing.TB, ns, name, typ, reason, substr string) int {
	t.Helper()
	evs, err := env.Admin.CoreV1().Events(ns).List(context.Background(), metav1.ListOptions{
		FieldSelector: "involvedObject.kind=Service,involvedObject.name=" + name,
	})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range evs.Items {
		if e.Type == typ && e.Reason == reason && strings.Contains(e.Message, substr) {
			n++
		}
	}
	return n
}

// A pool renamed (the one a Service names in edgelb.io/pool) and narrowed
// to fewer namespaces, through `edgelb config apply`: both Services keep
// their EXTERNAL-IP, each with a Warning Event AddressKept saying why it
// no longer fits. A restart (a new leadership term, which rebuilds the
// allocation from the statuses) keeps them too, and a new Service gets
// another address.
func TestPoolEditsKeepExternalIP(t *testing.T) {
	const class, nsA, nsB = "edgelb.io/poolkeep", "poolkeep-a", "poolkeep-b"
	createNamespace(t, nsA)
	createNamespace(t, nsB)
	before := `  - {name: web, addresses: ["203.0.113.32/29"], namespaces: [poolkeep-a, poolkeep-b]}`
	after := `  - {name: edge, addresses: ["203.0.113.32/29"], namespaces: [poolkeep-a]}`
	cfg := config(t, "lb1", class, "lease-poolkeep", before)
	cfg += "  tokens: {admin: [\"admin-token-0123456789\"]}\n"
	base := "http://" + regexp.MustCompile(`listen: "([^"]+)"`).FindStringSubmatch(cfg)[1]
	p := start(t, "lb1", cfg)

	named := lbService(nsA, "named", class, 80)
	named.Annotations["edgelb.io/pool"] = "web"
	createService(t, named)
	plain := lbService(nsB, "plain", class, 80)
	createService(t, plain)
	had := map[string]string{"named": waitIPs(t, nsA, "named", 1)[0], "plain": waitIPs(t, nsB, "plain", 1)[0]}
	ns := map[string]string{"named": nsA, "plain": nsB}

	edited := strings.Replace(cfg, before, after, 1)
	file := filepath.Join(t.TempDir(), "edited.yaml")
	if err := os.WriteFile(file, []byte(edited), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(edgelb, "config", "apply", "-f", file, "--api", base, "--token", "admin-token-0123456789").CombinedOutput()
	if err != nil {
		t.Fatalf("edgelb config apply: %v\n%s", err, out)
	}
	t.Logf("edgelb config apply:\n%s", out)
	warn := map[string]string{"named": `"web" does not exist`, "plain": `namespace "poolkeep-b"`}
	for name, w := range warn {
		t.Logf("%s: %s", name, waitEvent(t, ns[name], name, corev1.EventTypeWarning, "AddressKept", w))
	}
	check := func(when string) {
		t.Helper()
		for name, ip := range had {
			if got := ingressIPs(getService(t, ns[name], name)); len(got) != 1 || got[0] != ip {
				t.Errorf("%s: %s had %s, has %v", when, name, ip, got)
			}
			kc, err := env.Kubectl(context.Background(), "get", "svc", "-n", ns[name], name)
			if err != nil {
				t.Fatal(err, kc)
			}
			if f := strings.Fields(strings.Split(kc, "\n")[1]); len(f) < 4 || f[3] != ip {
				t.Errorf("%s: kubectl does not show %s as %s's EXTERNAL-IP:\n%s", when, ip, name, kc)
			}
		}
	}
	check("after the edit")

	// A new term: the host restarts with the edited file (its own fresh
	// state directory, so the file seeds the configuration).
	p.stop(t)
	start(t, "lb1", edited)
	for name, w := range warn {
		name, w := name, w
		eventually(t, 30*time.Second, "the new term's AddressKept Event on "+name, func() error {
			if n := countEvents(t, ns[name], name, corev1.EventTypeWarning, "AddressKept", w); n < 2 {
				return fmt.Errorf("%d AddressKept Events", n)
			}
			return nil
		})
	}
	newcomer := lbService(nsA, "newcomer", class, 80)
	newcomer.Annotations["edgelb.io/pool"] = "edge"
	createService(t, newcomer)
	got := waitIPs(t, nsA, "newcomer", 1)[0]
	if got == had["named"] || got == had["plain"] {
		t.Errorf("newcomer got %s, which another Service keeps (%v)", got, had)
	}
	check("after the restart")
}
