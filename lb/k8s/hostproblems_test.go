package k8s

import (
	"context"
	"fmt"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/edgelb/edgelb/lb"
)

// What a host's kernel refuses for a Service is a Warning Event on that
// Service from that host — on every host, not only the Lease holder —
// recorded once while it lasts, and again when it comes back. Problems
// said before the caches synced wait for them; static services have no
// Service to record on.
func TestHostProblemsAreWarningsFromThatHost(t *testing.T) {
	fc := fake.NewClientset()
	create(t, fc, lbService("ns", "web", 0, "192.0.2.10"), lbService("ns", "db", 1, "192.0.2.11"))
	c := newController(t, fc, testConfig(t, mainPool), "lb2")
	refused := lb.Problem{Source: lb.Source{Namespace: "ns", Name: "web"}, Reason: ReasonSourceRangesRefused,
		Message: "lb2's kernel refused the source ranges: too many elements; the Service is closed on lb2"}
	static := lb.Problem{Source: lb.Source{Name: "dns"}, Reason: ReasonVirtualServiceRefused, Message: "static"}
	c.SetHostProblems([]lb.Problem{refused, static}) // before the caches: waits
	startInformers(t, c)
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() { defer close(done); c.recordHostProblems(stop) }()
	defer func() { close(stop); <-done }()

	waitWarning(t, fc, "ns", "web", ReasonSourceRangesRefused, "closed on lb2")
	count := func() (n int32, hosts []string) {
		evs, err := fc.CoreV1().Events("ns").List(context.Background(), metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range evs.Items {
			if e.Reason == ReasonSourceRangesRefused {
				n += e.Count
				hosts = append(hosts, e.Source.Host)
			}
		}
		return n, hosts
	}
	for range 5 {
		c.SetHostProblems([]lb.Problem{refused})
	}
	// The broadcaster writes in order: once a later problem is there, a
	// duplicate of the first would be too.
	marker := lb.Problem{Source: lb.Source{Namespace: "ns", Name: "db"}, Reason: ReasonVirtualServiceRefused, Message: "marker"}
	c.SetHostProblems([]lb.Problem{refused, marker})
	waitWarning(t, fc, "ns", "db", ReasonVirtualServiceRefused, "marker")
	if n, hosts := count(); n != 1 || len(hosts) != 1 || hosts[0] != "lb2" {
		t.Fatalf("recorded %d times from %v, want once from lb2", n, hosts)
	}
	// Gone, then back: recorded again.
	c.SetHostProblems(nil)
	c.SetHostProblems([]lb.Problem{refused})
	eventually(t, "the problem recorded again after it came back", func() error {
		if n, _ := count(); n != 2 {
			return fmt.Errorf("recorded %d times", n)
		}
		return nil
	})
}
