package chaos

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/watch"

	"github.com/edgelb/edgelb/lb"
	"github.com/edgelb/edgelb/test/nslab"
	"github.com/edgelb/edgelb/test/testenv"
)

const (
	namespace = "chaos"
	class     = "edgelb.io/chaos"
	leaseName = "chaos"
)

// kubeLab is the lab with a real kube-apiserver on its uplink: the hosts
// run edgelb against it, with a pool on the lab's subnet, and allocate
// the Services' addresses.
type kubeLab struct {
	*nslab.Lab
	env *testenv.Env
}

// newKubeLab builds a lab of n hosts, all the configured cluster, starts
// the API server on the uplink and edgelb on every host.
func newKubeLab(t *testing.T, n int) *kubeLab {
	t.Helper()
	nslab.Require(t)
	l := nslab.New(t, n)
	env := l.StartKube(namespace, class, leaseName)
	for _, h := range l.Hosts {
		h.Start()
	}
	return &kubeLab{Lab: l, env: env}
}

// createService creates a LoadBalancer Service of edgelb's class with
// one TCP port, 8080 (the responders' port).
func (k *kubeLab) createService(ctx context.Context, name string) error {
	c := class
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name},
		Spec: corev1.ServiceSpec{
			Type:              corev1.ServiceTypeLoadBalancer,
			LoadBalancerClass: &c,
			Selector:          map[string]string{"app": name},
			Ports:             []corev1.ServicePort{{Name: "http", Port: 8080, TargetPort: intstr.FromInt32(8080), Protocol: corev1.ProtocolTCP}},
		},
	}
	_, err := k.env.Admin.CoreV1().Services(namespace).Create(ctx, svc, metav1.CreateOptions{})
	return err
}

// addressedServices creates n Services named prefix0, prefix1, ..., waits
// until each has an address on one settled owner, and returns the
// addresses by name and all of them sorted.
func (k *kubeLab) addressedServices(ctx context.Context, t *testing.T, prefix string, n int) (map[string][]netip.Addr, []netip.Addr) {
	t.Helper()
	for i := range n {
		if err := k.createService(ctx, fmt.Sprintf("%s%d", prefix, i)); err != nil {
			t.Fatal(err)
		}
	}
	byName, ok := k.addressed(t, 30*time.Second)
	if !ok {
		t.Fatalf("not every Service has an address: %v", byName)
	}
	var vips []netip.Addr
	for _, ips := range byName {
		vips = append(vips, ips...)
	}
	slices.SortFunc(vips, netip.Addr.Compare)
	for _, v := range vips {
		k.SettledOwner(v, time.Second)
	}
	return byName, vips
}

// addresses returns the status addresses of every Service, by name.
func (k *kubeLab) addresses(t *testing.T) map[string][]netip.Addr {
	t.Helper()
	svcs, err := k.env.Admin.CoreV1().Services(namespace).List(context.Background(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]netip.Addr{}
	for i := range svcs.Items {
		out[svcs.Items[i].Name] = lb.VIPs(&svcs.Items[i])
	}
	return out
}

// addressed waits until every Service has an address and returns the
// addresses, and whether they all had one in time.
func (k *kubeLab) addressed(t *testing.T, timeout time.Duration) (map[string][]netip.Addr, bool) {
	t.Helper()
	var got map[string][]netip.Addr
	ok := nslab.Poll(timeout, func() bool {
		got = k.addresses(t)
		for _, ips := range got {
			if len(ips) == 0 {
				return false
			}
		}
		return true
	})
	return got, ok
}

// leaseHolder returns the Lease's holder, or "".
func (k *kubeLab) leaseHolder(ctx context.Context) string {
	l, err := k.env.Admin.CoordinationV1().Leases("kube-system").Get(ctx, leaseName, metav1.GetOptions{})
	if err != nil || l.Spec.HolderIdentity == nil {
		return ""
	}
	return *l.Spec.HolderIdentity
}

// host returns the lab host of that name.
func (k *kubeLab) host(name string) *nslab.Host {
	i := slices.IndexFunc(k.Hosts, func(h *nslab.Host) bool { return h.Name == name })
	if i < 0 {
		return nil
	}
	return k.Hosts[i]
}

// statusWatch follows every change of the Services' status through a
// Watch and checks the two allocation rules as they happen: an address
// is never held by two live Services at once, and a Service's addresses
// never change once set.
type statusWatch struct {
	mu         sync.Mutex
	ips        map[string][]netip.Addr // by Service UID, once set
	holder     map[netip.Addr]string   // UID of the live Service holding it
	names      map[string]string       // UID -> name, for messages
	renumbered []string
	doubled    []string
	events     int
	err        error
	done       chan struct{}
}

func newStatusWatch() *statusWatch {
	return &statusWatch{ips: map[string][]netip.Addr{}, holder: map[netip.Addr]string{}, names: map[string]string{}, done: make(chan struct{})}
}

// watchStatuses starts a statusWatch from the current list of Services;
// it runs until ctx ends.
func (k *kubeLab) watchStatuses(ctx context.Context, t *testing.T) *statusWatch {
	t.Helper()
	w := newStatusWatch()
	svcs := k.env.Admin.CoreV1().Services(namespace)
	list, err := svcs.List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for i := range list.Items {
		w.observe(watch.Added, &list.Items[i])
	}
	go func() {
		defer close(w.done)
		// A closed watch is opened again from the last version seen.
		rv := list.ResourceVersion
		for ctx.Err() == nil {
			wi, err := svcs.Watch(ctx, metav1.ListOptions{ResourceVersion: rv, AllowWatchBookmarks: true})
			if err != nil {
				if ctx.Err() == nil {
					w.fail(fmt.Errorf("watching Services: %w", err))
				}
				return
			}
			for ev := range wi.ResultChan() {
				if ev.Type == watch.Error {
					if ctx.Err() != nil {
						return // the end, not a failure
					}
					w.fail(fmt.Errorf("watching Services: %v", apierrors.FromObject(ev.Object)))
					wi.Stop()
					return
				}
				svc, ok := ev.Object.(*corev1.Service)
				if !ok {
					continue
				}
				rv = svc.ResourceVersion
				if ev.Type != watch.Bookmark {
					w.observe(ev.Type, svc)
				}
			}
		}
	}()
	return w
}

func (w *statusWatch) fail(err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.err = err
}

func (w *statusWatch) observe(typ watch.EventType, svc *corev1.Service) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.events++
	uid := string(svc.UID)
	w.names[uid] = svc.Name
	if typ == watch.Deleted {
		for _, ip := range w.ips[uid] {
			if w.holder[ip] == uid {
				delete(w.holder, ip)
			}
		}
		delete(w.ips, uid)
		return
	}
	ips := lb.VIPs(svc)
	old, set := w.ips[uid]
	if set && !slices.Equal(old, ips) {
		w.renumbered = append(w.renumbered, fmt.Sprintf("%s: %v -> %v", svc.Name, old, ips))
		for _, ip := range old {
			if w.holder[ip] == uid {
				delete(w.holder, ip)
			}
		}
		delete(w.ips, uid)
	}
	if len(ips) == 0 {
		return
	}
	w.ips[uid] = ips
	for _, ip := range ips {
		if h, ok := w.holder[ip]; ok && h != uid {
			w.doubled = append(w.doubled, fmt.Sprintf("%s given to %s while %s holds it", ip, svc.Name, w.names[h]))
			continue
		}
		w.holder[ip] = uid
	}
}

// result returns what the watch saw; call it after ctx ended.
func (w *statusWatch) result() (events int, renumbered, doubled []string, err error) {
	<-w.done
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.events, w.renumbered, w.doubled, w.err
}
