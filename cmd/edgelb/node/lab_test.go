package node

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
	authorizationv1 "k8s.io/api/authorization/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/edgelb/edgelb/api"
	"github.com/edgelb/edgelb/api/clustercfg"
	"github.com/edgelb/edgelb/lb/config"
	"github.com/edgelb/edgelb/lb/filter/filtertest"
	"github.com/edgelb/edgelb/lb/ipvs"
	"github.com/edgelb/edgelb/lb/ipvs/ipvstest"
	"github.com/edgelb/edgelb/vip/bgp"
	"github.com/edgelb/edgelb/vip/bgp/bgptest"
	"github.com/edgelb/edgelb/vip/viptest"
)

// The in-process lab: nodes built by New and run by Run, exactly as
// `edgelb run` builds and runs them, on memberlist's in-memory network,
// the fake kernels and a clock the tests step. It shows in seconds what
// the namespace, VM and Debian suites show on real kernels.

// clock is real time plus what a test stepped it by.
type clock struct{ offset atomic.Int64 }

func (c *clock) Now() time.Time { return time.Now().Add(time.Duration(c.offset.Load())) }

// Step moves the clock forward by d.
func (c *clock) Step(d time.Duration) { c.offset.Add(int64(d)) }

// link is a node's place on the in-memory network, which can be cut (a
// crash, a partition) and mended. It forwards what the MockTransport
// receives and always reads it, so that the others never block on a node
// that is cut or stopped (MockTransport delivers through unbuffered
// channels); a restarted process takes the same link, and so keeps its
// address.
type link struct {
	inner   *memberlist.MockTransport
	cut     atomic.Bool
	packets chan *memberlist.Packet
	streams chan net.Conn
	stop    chan struct{}
}

var _ memberlist.Transport = (*link)(nil)

func newLink(n *memberlist.MockNetwork, name string) *link {
	l := &link{inner: n.NewTransport(name), packets: make(chan *memberlist.Packet), streams: make(chan net.Conn), stop: make(chan struct{})}
	go func() {
		for {
			select {
			case <-l.stop:
				return
			case p := <-l.inner.PacketCh():
				if l.cut.Load() {
					continue
				}
				select {
				case l.packets <- p:
				case <-time.After(100 * time.Millisecond): // no process reads: lost
				case <-l.stop:
					return
				}
			case c := <-l.inner.StreamCh():
				if l.cut.Load() {
					c.Close()
					continue
				}
				select {
				case l.streams <- c:
				case <-time.After(100 * time.Millisecond):
					c.Close()
				case <-l.stop:
					c.Close()
					return
				}
			}
		}
	}()
	return l
}

func (l *link) FinalAdvertiseAddr(ip string, port int) (net.IP, int, error) {
	return l.inner.FinalAdvertiseAddr(ip, port)
}

func (l *link) WriteTo(b []byte, addr string) (time.Time, error) {
	if l.cut.Load() {
		return time.Now(), nil // sent into the void, as UDP is
	}
	return l.inner.WriteTo(b, addr)
}

func (l *link) PacketCh() <-chan *memberlist.Packet { return l.packets }

func (l *link) DialTimeout(addr string, timeout time.Duration) (net.Conn, error) {
	if l.cut.Load() {
		return nil, errors.New("link cut")
	}
	return l.inner.DialTimeout(addr, timeout)
}

func (l *link) StreamCh() <-chan net.Conn { return l.streams }

// Shutdown leaves the link to the next process.
func (l *link) Shutdown() error { return nil }

// quieter is an in-memory vip.Quieter; changed, when set before use, is
// called after each change.
type quieter struct {
	mu      sync.Mutex
	quiet   []netip.Addr
	changed func()
}

func (q *quieter) Quiet(vips []netip.Addr) error {
	q.mu.Lock()
	q.quiet = slices.Clone(vips)
	q.mu.Unlock()
	if q.changed != nil {
		q.changed()
	}
	return nil
}

func (q *quieter) Is(a netip.Addr) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	return slices.Contains(q.quiet, a)
}

type noSNAT struct{}

func (noSNAT) Sync([]netip.Addr) error { return nil }

// host is one appliance host of the lab: its kernels outlive the node
// processes run on it.
type host struct {
	name string
	path string
	dir  string
	link *link
	vip  *viptest.Kernel
	ipvs *ipvstest.Fake
	// filter is the source-range filter's table.
	filter *filtertest.Fake
	quiet  *quieter
	bgp    *bgptest.Speaker
	// The running process.
	node   *Node
	cancel context.CancelCauseFunc
	done   chan error
}

type lab struct {
	t     *testing.T
	clock *clock
	net   *memberlist.MockNetwork
	hosts []*host
	// kube, when set, is the API server every host watches (a client-go
	// fake clientset) and the file has a kubernetes section.
	kube kubernetes.Interface
	// reserved are links made before any host starts, for hosts added
	// later (MockNetwork takes no new transport while others run).
	reserved map[string]*link
	// observer, when set, is called on every change of a host's VIPs or
	// quiet set (watch).
	observer atomic.Pointer[func()]
}

// newHost is a host of the lab on lk, with fake kernels on the lab's
// clock, not started.
func (l *lab) newHost(name string, lk *link) *host {
	h := &host{name: name, dir: l.t.TempDir(), link: lk,
		vip: viptest.NewKernel(), ipvs: ipvstest.New(), filter: filtertest.New(), quiet: &quieter{}}
	h.vip.Now = l.clock.Now
	h.vip.Changed, h.quiet.changed = l.observe, l.observe
	return h
}

// editFile rewrites h's config file with edit, before h starts
// (newLabPrepared's prepare).
func editFile(t *testing.T, h *host, edit func(file string) string) {
	t.Helper()
	data, err := os.ReadFile(h.path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(h.path, []byte(edit(string(data))), 0o600); err != nil {
		t.Fatal(err)
	}
}

// observe is the hosts' VIP kernels' and quieters' change hook.
func (l *lab) observe() {
	if f := l.observer.Load(); f != nil {
		(*f)()
	}
}

// labConfig is a host's config file: an l2 static service, a bgp one,
// three configured members on the in-memory network, with encrypted
// gossip (the key in labKey next to the file) unless insecure.
func labConfig(name string, port int, join []string, kube, insecure bool) string {
	k := ""
	if kube {
		k = `kubernetes: {kubeconfig: /nonexistent, defaultClass: true}
`
	}
	gossip := "secretKeyFile: " + labKey
	if insecure {
		gossip = "insecure: true"
	}
	return k + fmt.Sprintf(`node: {name: %s, interface: eth0}
cluster:
  %s
  bindAddr: 127.0.0.1
  bindPort: %d
  join: [%s]
  # The in-memory network shares a busy test machine (-race).
  probeInterval: 500ms
  probeTimeout: 250ms
  handoverTimeout: 2s
  restartHold: 30s
api: {listen: "127.0.0.1:0"}
dataplane: {backend: ipvs, mode: nodeport, method: dr}
bgp:
  asn: 64512
  peers: [{address: 192.0.2.254, asn: 64500, password: md5-lab-key}]
pools:
  - {name: edge, addresses: ["198.51.100.0/28"], announce: bgp, autoAssign: false}
  - {name: default, addresses: ["192.0.2.100-192.0.2.110"]}
services:
  - {name: dns, vip: 192.0.2.53, ports: [{port: 53, protocol: UDP}], backends: ["10.0.1.5:53", "10.0.1.6:53"]}
  - {name: anycast, vip: 198.51.100.53, announce: bgp, ports: [{port: 53, protocol: UDP}], backends: ["10.0.1.5:53"]}
`, name, gossip, port, strings.Join(join, ", "))
}

// labKey is the gossip key file of every lab host, next to its config
// file: the configuration and drains of other members replicate only
// over encrypted gossip.
const labKey = "gossip.key"

func newLab(t *testing.T, n int, kube kubernetes.Interface) *lab {
	t.Helper()
	return newLabWith(t, n, kube, false)
}

// newLabWith is newLab, with gossip in the clear when insecure.
func newLabWith(t *testing.T, n int, kube kubernetes.Interface, insecure bool) *lab {
	t.Helper()
	return newLabPrepared(t, n, kube, insecure, nil)
}

// newLabPrepared is newLabWith, calling prepare (when not nil) on each
// host once its files are written, before its first start.
func newLabPrepared(t *testing.T, n int, kube kubernetes.Interface, insecure bool, prepare func(h *host)) *lab {
	t.Helper()
	return newLabReserving(t, n, kube, insecure, prepare, nil)
}

// newLabReserving is newLabPrepared, with a link reserved on the network
// for each host named in reserve, which a test adds later.
func newLabReserving(t *testing.T, n int, kube kubernetes.Interface, insecure bool, prepare func(h *host), reserve []string) *lab {
	t.Helper()
	l := &lab{t: t, clock: &clock{}, net: &memberlist.MockNetwork{}, kube: kube, reserved: map[string]*link{}}
	for _, name := range reserve {
		l.reserved[name] = newLink(l.net, name)
	}
	if fc, ok := kube.(*fake.Clientset); ok {
		// The fake API server grants every permission edgelb asks about
		// (the access check's SelfSubjectAccessReviews).
		fc.PrependReactor("create", "selfsubjectaccessreviews", func(a k8stesting.Action) (bool, runtime.Object, error) {
			r := a.(k8stesting.CreateAction).GetObject().(*authorizationv1.SelfSubjectAccessReview).DeepCopy()
			r.Status.Allowed = true
			return true, r, nil
		})
	}
	var join []string
	for i := range n {
		h := l.newHost(fmt.Sprintf("lb%d", i+1), newLink(l.net, fmt.Sprintf("lb%d", i+1)))
		ip, port, err := h.link.FinalAdvertiseAddr("", 0)
		if err != nil {
			t.Fatal(err)
		}
		join = append(join, fmt.Sprintf("%q", net.JoinHostPort(ip.String(), fmt.Sprint(port))))
		l.hosts = append(l.hosts, h)
	}
	for _, h := range l.hosts {
		_, port, _ := h.link.FinalAdvertiseAddr("", 0)
		h.path = filepath.Join(h.dir, "config.yaml")
		if err := os.WriteFile(h.path, []byte(labConfig(h.name, port, join, kube != nil, insecure)), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(h.dir, labKey), []byte(base64.StdEncoding.EncodeToString([]byte("lab gossip key, 32 bytes long!!!"))), 0o600); err != nil {
			t.Fatal(err)
		}
		if prepare != nil {
			prepare(h)
		}
		l.start(h)
	}
	t.Cleanup(func() {
		var wg sync.WaitGroup
		for _, h := range l.hosts {
			wg.Go(func() { l.stop(h, nil) })
		}
		wg.Wait()
		for _, h := range l.hosts {
			delete(l.reserved, h.name)
			close(h.link.stop)
		}
		for _, lk := range l.reserved {
			close(lk.stop)
		}
	})
	return l
}

func testLog(t *testing.T, name string) *slog.Logger {
	if os.Getenv("EDGELB_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})).With("host", name)
	}
	return slog.New(slog.DiscardHandler)
}

// start runs a new edgelb process on h, as `edgelb run` does.
func (l *lab) start(h *host) {
	l.t.Helper()
	cfg, err := config.Load(h.path)
	if err != nil {
		l.t.Fatal(err)
	}
	// GoBGP runs in the process: a new one for each.
	h.bgp = bgptest.NewSpeaker()
	speaker := h.bgp
	n, err := New(cfg, Options{
		Kernels: Kernels{
			VIP: h.vip, ARP: &viptest.Announcer{}, Quiet: h.quiet,
			IPVS: h.ipvs, IPVSStats: h.ipvs,
			Prepare: func(ipvs.PrepareOptions) error { return nil },
			SNAT:    func(func(netip.Addr) bool) ipvs.SNAT { return noSNAT{} },
			Filter:  h.filter,
			BGP:     func(bgp.Config, *slog.Logger) bgp.Speaker { return speaker },
		},
		Kube:      l.kube,
		Transport: h.link,
		Now:       l.clock.Now,
		StateDir:  h.dir,
		Log:       testLog(l.t, h.name),
		Version:   "test",
	})
	if err != nil {
		l.t.Fatalf("%s: %v", h.name, err)
	}
	ctx, cancel := context.WithCancelCause(context.Background())
	h.node, h.cancel, h.done = n, cancel, make(chan error, 1)
	go func() { h.done <- n.Run(ctx) }()
}

// stop ends h's process with cause (nil: a stop; ErrRestart: a
// graceful restart) and waits for it.
func (l *lab) stop(h *host, cause error) {
	if h.cancel == nil {
		return
	}
	if cause == nil {
		cause = context.Canceled
	}
	h.cancel(cause)
	select {
	case err := <-h.done:
		if err != nil && !errors.Is(err, context.Canceled) {
			l.t.Errorf("%s stopped: %v", h.name, err)
		}
	case <-time.After(30 * time.Second):
		l.t.Errorf("%s did not stop within 30 s", h.name)
	}
	h.cancel = nil
}

// eventually waits for cond, for at most 20 s, and fails t with what
// otherwise.
func (l *lab) eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.After(20 * time.Second)
	poll := time.NewTicker(5 * time.Millisecond)
	defer poll.Stop()
	for !cond() {
		select {
		case <-deadline:
			t.Fatalf("after 20 s: %s: %s", what, l.describe())
		case <-poll.C: // the fakes have no notification of their own
		}
	}
}

func (l *lab) describe() string {
	var b strings.Builder
	for _, h := range l.hosts {
		vips, _ := h.vip.VIPs()
		fmt.Fprintf(&b, "\n  %s: VIPs %v quiet %v routes %v", h.name, vips, h.quiet.quiet, h.bgp.Advertised())
	}
	return b.String()
}

var (
	l2VIP  = netip.MustParseAddr("192.0.2.53")
	bgpVIP = netip.MustParseAddr("198.51.100.53")
)

// holders are the hosts that hold a on their interface and announce it
// (held and not quiet).
func (l *lab) holders(a netip.Addr) []string {
	var out []string
	for _, h := range l.hosts {
		if h.holds(a) && !h.quiet.Is(a) {
			out = append(out, h.name)
		}
	}
	return out
}

func (h *host) holds(a netip.Addr) bool {
	vips, _ := h.vip.VIPs()
	return slices.Contains(vips, a)
}

// version is the version of the cluster configuration h runs, 0 before
// one is committed.
func (h *host) version() uint64 {
	_, v := h.node.live.Config()
	return v
}

// programmed reports whether h's IPVS table has a virtual service on a.
func (h *host) programmed(a netip.Addr) bool {
	all, _ := h.ipvs.GetVirtualServers()
	return slices.ContainsFunc(all, func(vs *ipvs.VirtualServer) bool { return vs.Address == a })
}

func (h *host) advertises(a netip.Addr) bool {
	return slices.Contains(h.bgp.Advertised(), netip.PrefixFrom(a, a.BitLen()))
}

// converged: every host runs the same committed version of the cluster
// configuration, programs both VIPs, one holds the l2 VIP (and announces
// it: no handover under way), every one holds the bgp VIP quietly and
// advertises it.
func (l *lab) converged() bool {
	for _, h := range l.hosts {
		if _, v := h.node.live.Config(); v == 0 || v != l.hosts[0].version() {
			return false
		}
	}
	if len(l.holders(l2VIP)) != 1 || len(slices.DeleteFunc(slices.Clone(l.hosts), func(h *host) bool { return !h.holds(l2VIP) })) != 1 {
		return false
	}
	for _, h := range l.hosts {
		if !h.programmed(l2VIP) || !h.programmed(bgpVIP) || !h.holds(bgpVIP) || !h.quiet.Is(bgpVIP) || !h.advertises(bgpVIP) {
			return false
		}
	}
	return true
}

func (l *lab) host(name string) *host {
	for _, h := range l.hosts {
		if h.name == name {
			return h
		}
	}
	l.t.Fatalf("no host %s", name)
	return nil
}

// watch records, until the returned function is called, the fewest and
// the most hosts that held a at once (quiet or not), and the most that
// announced it (held, not quiet): sampled on every change of a host's
// VIPs or quiet set (a loaded machine may leave a timer's goroutine
// asleep through a whole handover), and every millisecond.
func (l *lab) watch(a netip.Addr) func() (fewest, most, announced int) {
	var mu sync.Mutex
	var states []string // each distinct state, for the log
	fewest, most, announced := len(l.hosts), 0, 0
	sample := func() {
		mu.Lock()
		defer mu.Unlock()
		n, held := 0, 0
		var state []string
		for _, h := range l.hosts {
			if h.holds(a) {
				n++
				q := "announced"
				if h.quiet.Is(a) {
					q = "quiet"
				} else {
					held++
				}
				state = append(state, h.name+" "+q)
			}
		}
		if st := strings.Join(state, ", "); len(states) == 0 || states[len(states)-1] != st {
			states = append(states, st)
		}
		fewest, most, announced = min(fewest, n), max(most, n), max(announced, held)
	}
	sample()
	l.observer.Store(&sample)
	stop, stopped := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(stopped)
		tick := time.NewTicker(time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				sample()
			}
		}
	}()
	return func() (int, int, int) {
		l.observer.Store(nil)
		close(stop)
		<-stopped
		sample()
		mu.Lock()
		defer mu.Unlock()
		l.t.Logf("%s held by: %s", a, strings.Join(states, " → "))
		return fewest, most, announced
	}
}

// editSpec changes the running cluster configuration through h as an
// operator does with PUT /api/v1/config: edit gets the spec GET gives
// (secrets as placeholders) and changes it; the new version is returned.
func editSpec(t *testing.T, h *host, edit func(spec map[string]any)) api.ConfigDoc {
	t.Helper()
	cc := &clustercfg.Config{Versions: h.node.live.versions, Host: h.node.live.host}
	cur, err := cc.Current(false)
	if err != nil {
		t.Fatal(err)
	}
	var spec map[string]any
	if err := json.Unmarshal(cur.Spec, &spec); err != nil {
		t.Fatal(err)
	}
	edit(spec)
	body, _ := json.Marshal(spec)
	next, err := cc.Put(context.Background(), body, cur.Version, "test")
	if err != nil {
		t.Fatal(err)
	}
	return next
}
