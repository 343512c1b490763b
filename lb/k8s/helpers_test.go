package k8s

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"

	"github.com/edgelb/edgelb/lb"
	"github.com/edgelb/edgelb/lb/config"
)

// testConfig returns a config in which edgelb is the default class, with
// the given pools (YAML list entries).
func testConfig(t *testing.T, pools string) *config.Config {
	t.Helper()
	cfg, err := config.Parse("test.yaml", []byte(`node: {name: lb1}
cluster: {insecure: true, bindAddr: 127.0.0.1}
kubernetes: {kubeconfig: /nonexistent, defaultClass: true}
pools:
`+pools+`
dataplane: {backend: none}
`))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

const mainPool = `  - {name: main, addresses: ["192.0.2.0/28"]}`

var epoch = time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)

// lbService returns a LoadBalancer Service with one TCP port, created age
// seconds after the epoch, whose status lists ips.
func lbService(ns, name string, age int, ips ...string) *corev1.Service {
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, UID: types.UID("uid-" + ns + "-" + name),
			CreationTimestamp: metav1.NewTime(epoch.Add(time.Duration(age) * time.Second))},
		Spec: corev1.ServiceSpec{
			Type:  corev1.ServiceTypeLoadBalancer,
			Ports: []corev1.ServicePort{{Name: "http", Port: 80, Protocol: corev1.ProtocolTCP}},
		},
	}
	for _, ip := range ips {
		svc.Status.LoadBalancer.Ingress = append(svc.Status.LoadBalancer.Ingress, corev1.LoadBalancerIngress{IP: ip})
	}
	return svc
}

// newController builds a Controller on client. Its informers are not
// started: call startInformers, or fill its cache by hand with cacheAdd to
// make it lag behind the API server.
func newController(t *testing.T, client kubernetes.Interface, cfg *config.Config, identity string) *Controller {
	t.Helper()
	c := New(client, Options{
		Identity: identity,
		Config:   cfg,
		Store:    lb.NewStore(),
		Log:      slog.New(slog.DiscardHandler),
		Workers:  2,
	})
	return c
}

// startInformers starts c's informers until the test ends and waits for
// them to sync.
func startInformers(t *testing.T, c *Controller) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(c.startInformers(ctx.Done()))
	t.Cleanup(cancel) // first: the informers stop, then the test waits for them
	if !cache.WaitForCacheSync(ctx.Done(), c.synced...) {
		t.Fatal("caches did not sync")
	}
}

// cacheAdd puts Services in c's informer cache as if the informer had
// delivered them, without the API server knowing, and then tells c of
// them in order.
func cacheAdd(t *testing.T, c *Controller, svcs ...*corev1.Service) {
	t.Helper()
	store := c.services.indexer // the Services' cache
	for _, s := range svcs {
		cp := s.DeepCopy()
		if err := store.Add(cp); err != nil {
			t.Fatal(err)
		}
		c.byStatusIP.update(nil, cp)
	}
	for _, s := range svcs {
		c.markDirty()
		c.enqueue(s)
	}
}

// runTerm runs one leadership term the way client-go does, in a goroutine
// of its own; stop ends it and waits until it has returned.
func runTerm(c *Controller) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); c.lead(ctx) }()
	return func() { cancel(); <-done }
}

// eventually polls cond every 10 ms until it returns nil, for at most 10 s.
// What it waits for is the fake API server's state or the Controller's,
// which tell nobody when they change: polling is the way to wait.
func eventually(t *testing.T, what string, cond func() error) {
	t.Helper()
	var last error
	err := wait.PollUntilContextTimeout(context.Background(), 10*time.Millisecond, 10*time.Second, true,
		func(context.Context) (bool, error) {
			last = cond()
			return last == nil, nil
		})
	if err != nil {
		t.Fatalf("%s: %v", what, last)
	}
}

// waitLeader waits until c runs a term.
func waitLeader(t *testing.T, c *Controller) {
	t.Helper()
	eventually(t, c.opts.Identity+" leads", func() error {
		if !c.Leader() {
			return fmt.Errorf("Leader() is false")
		}
		return nil
	})
}

// apiStatus returns the addresses in a Service's status on the API server.
func apiStatus(t *testing.T, client kubernetes.Interface, ns, name string) []string {
	t.Helper()
	svc, err := client.CoreV1().Services(ns).Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, in := range svc.Status.LoadBalancer.Ingress {
		out = append(out, in.IP)
	}
	return out
}

// allStatuses returns every Service's status addresses by namespace/name,
// and fails the test if one address is in two Services' status.
func allStatuses(t *testing.T, client kubernetes.Interface) map[string][]string {
	t.Helper()
	list, err := client.CoreV1().Services("").List(context.Background(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]string{}
	owner := map[string]string{}
	for _, s := range list.Items {
		k := s.Namespace + "/" + s.Name
		for _, in := range s.Status.LoadBalancer.Ingress {
			out[k] = append(out[k], in.IP)
			if o, dup := owner[in.IP]; dup {
				t.Errorf("%s is in the status of both %s and %s", in.IP, o, k)
			}
			owner[in.IP] = k
		}
	}
	return out
}

// waitAddressed waits until every named Service has an address and
// returns them all.
func waitAddressed(t *testing.T, client kubernetes.Interface, keys ...string) map[string][]string {
	t.Helper()
	var got map[string][]string
	eventually(t, "every Service has an address", func() error {
		got = allStatuses(t, client)
		for _, k := range keys {
			if len(got[k]) == 0 {
				return fmt.Errorf("%s has none yet: %v", k, got)
			}
		}
		return nil
	})
	return got
}

// warnings returns the messages of the Warning Events with reason on a
// Service.
func warnings(t *testing.T, client kubernetes.Interface, ns, name, reason string) []string {
	t.Helper()
	evs, err := client.CoreV1().Events(ns).List(context.Background(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range evs.Items {
		if e.InvolvedObject.Name == name && e.Type == corev1.EventTypeWarning && e.Reason == reason {
			out = append(out, e.Message)
		}
	}
	slices.Sort(out)
	return out
}

// waitWarning waits for a Warning Event with reason on a Service whose
// message contains substr.
func waitWarning(t *testing.T, client kubernetes.Interface, ns, name, reason, substr string) {
	t.Helper()
	eventually(t, fmt.Sprintf("Warning %s on %s/%s", reason, ns, name), func() error {
		msgs := warnings(t, client, ns, name, reason)
		for _, m := range msgs {
			if strings.Contains(m, substr) {
				return nil
			}
		}
		return fmt.Errorf("events so far: %q", msgs)
	})
}

// waitWatching returns once c's Service informer is watching: the fake
// clientset, unlike an API server, cannot resume a watch from the list's
// resourceVersion, so an object created between an informer's list and
// its watch would never reach the cache. It creates ClusterIP Services
// (edgelb ignores them) until c's cache has one.
func waitWatching(t *testing.T, client kubernetes.Interface, c *Controller) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for i := 0; ; i++ {
		name := fmt.Sprintf("watch-%s-%d", c.opts.Identity, i)
		s := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "probe", Name: name}}
		if _, err := client.CoreV1().Services("probe").Create(context.Background(), s, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		// Polled, not handler-driven: returning the instant the probe lands makes TestElectionHandover flaky (the old leader writes after releasing the Lease).
		for end := time.Now().Add(100 * time.Millisecond); time.Now().Before(end); time.Sleep(5 * time.Millisecond) {
			if _, err := c.services.Services("probe").Get(name); err == nil {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s's Service informer does not watch", c.opts.Identity)
		}
	}
}
