package cluster

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
)

// cutTransport is memberlist's UDP/TCP transport on loopback that drops
// everything sent to the addresses cut off, both packets and streams: one
// side of a partition.
type cutTransport struct {
	*memberlist.NetTransport
	mu  sync.Mutex
	cut map[string]bool
}

func (t *cutTransport) isCut(addr string) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.cut[addr]
}

func (t *cutTransport) set(addrs []string, cut bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, a := range addrs {
		t.cut[a] = cut
	}
}

func (t *cutTransport) WriteTo(b []byte, addr string) (time.Time, error) {
	if t.isCut(addr) {
		return time.Now(), nil
	}
	return t.NetTransport.WriteTo(b, addr)
}

func (t *cutTransport) WriteToAddress(b []byte, a memberlist.Address) (time.Time, error) {
	return t.WriteTo(b, a.Addr)
}

func (t *cutTransport) DialTimeout(addr string, timeout time.Duration) (net.Conn, error) {
	if t.isCut(addr) {
		return nil, errors.New("partitioned")
	}
	return t.NetTransport.DialTimeout(addr, timeout)
}

func (t *cutTransport) DialAddressTimeout(a memberlist.Address, timeout time.Duration) (net.Conn, error) {
	return t.DialTimeout(a.Addr, timeout)
}

// docMember is a member on loopback with its own state file.
type docMember struct {
	name, addr, path string
	port             int
	docs             *Docs
	c                *Cluster
	tr               *cutTransport
	cancel           context.CancelFunc
	done             chan error
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// validBody refuses bodies that say "invalid", standing in for the app's
// validation.
func validBody(b []byte) error {
	if strings.Contains(string(b), "invalid") {
		return errors.New("invalid body")
	}
	return nil
}

// startDocMember starts a member (again, when m is given) that seeds seed
// when it has no version, and joins join.
func startDocMember(t *testing.T, m *docMember, seed string, join []string) *docMember {
	t.Helper()
	docs, err := NewDocs(DocOptions{Name: m.name, Path: m.path, Validate: validBody, Log: testLog()})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := docs.Seed([]byte(seed), "file"); err != nil {
		t.Fatal(err)
	}
	nt, err := memberlist.NewNetTransport(&memberlist.NetTransportConfig{BindAddrs: []string{"127.0.0.1"}, BindPort: m.port})
	if err != nil {
		t.Fatal(err)
	}
	tr := &cutTransport{NetTransport: nt, cut: map[string]bool{}}
	c, err := New(Options{Name: m.name, BindAddr: netip.MustParseAddr("127.0.0.1"), BindPort: uint16(m.port), Join: join,
		SecretKey: testKey, Quorum: 1, VIPs: vipList(nil), Transport: tr, Docs: docs, Log: testLog(),
		ProbeInterval: 500 * time.Millisecond, ProbeTimeout: 250 * time.Millisecond, RejoinInterval: 500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	m.docs, m.c, m.tr, m.cancel, m.done = docs, c, tr, cancel, make(chan error, 1)
	go func() { m.done <- c.Run(ctx) }()
	return m
}

func (m *docMember) stop(t *testing.T) {
	t.Helper()
	if m.cancel == nil {
		return
	}
	m.cancel()
	if err := <-m.done; err != nil {
		t.Error(err)
	}
	m.cancel = nil
}

func newDocCluster(t *testing.T, names ...string) []*docMember {
	t.Helper()
	dir := t.TempDir()
	var ms []*docMember
	var join []string
	for _, n := range names {
		port := freePort(t)
		m := &docMember{name: n, port: port, addr: fmt.Sprintf("127.0.0.1:%d", port), path: filepath.Join(dir, n+".json")}
		ms = append(ms, m)
		join = append(join, m.addr)
	}
	for _, m := range ms {
		startDocMember(t, m, `{"seed":1}`, join)
	}
	t.Cleanup(func() {
		var wg sync.WaitGroup
		for _, m := range ms {
			wg.Go(func() { m.stop(t) })
		}
		wg.Wait()
	})
	return ms
}

func current(t *testing.T, m *docMember) Doc {
	t.Helper()
	d, ok := m.docs.Current()
	if !ok {
		t.Fatalf("%s has no version", m.name)
	}
	return d
}

// waitAll waits until every member runs a version with body, and gossips
// its number.
func waitAll(t *testing.T, ms []*docMember, version uint64, body string) {
	t.Helper()
	ok := poll(t, func() bool {
		for _, m := range ms {
			d, ok := m.docs.Current()
			if !ok || d.Version != version || string(d.Body) != body {
				return false
			}
			for _, mm := range m.c.Members() {
				if mm.ConfigVersion != version {
					return false
				}
			}
		}
		return true
	})
	if !ok {
		for _, m := range ms {
			d, _ := m.docs.Current()
			t.Logf("%s runs version %d %s", m.name, d.Version, d.Body)
		}
		t.Fatalf("the members do not all run version %d %s", version, body)
	}
}

func TestDocsReplicateOverEncryptedGossip(t *testing.T) {
	ms := newDocCluster(t, "a", "b", "c")
	a, b, c := ms[0], ms[1], ms[2]
	waitAll(t, ms, 1, `{"seed":1}`)
	poll(t, func() bool { return len(a.c.Members()) == 3 })

	// An edit on a reaches b and c.
	v2, err := a.docs.Propose([]byte(`{"edit":2}`), "alice", 1)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.docs.Propose([]byte(`{"edit":"late"}`), "bob", 3); !errors.Is(err, ErrStale) {
		t.Errorf("a proposal from a version that is not current = %v, want ErrStale", err)
	}
	waitAll(t, ms, 2, `{"edit":2}`)
	if got := current(t, c); got.UpdatedBy != "alice" || got.Member != "a" || got.ID() != v2.ID() {
		t.Errorf("c runs %+v, want %+v", got, v2)
	}

	// A body the members do not validate is never taken.
	if _, err := a.docs.Propose([]byte(`"invalid"`), "alice", 2); err == nil {
		t.Error("an invalid body was accepted")
	}

	// Partition: a alone against b and c; both sides edit.
	a.tr.set([]string{b.addr, c.addr}, true)
	b.tr.set([]string{a.addr}, true)
	c.tr.set([]string{a.addr}, true)
	editA, err := a.docs.Propose([]byte(`{"edit":"a in the minority"}`), "alice", 2)
	if err != nil {
		t.Fatal(err)
	}
	editB, err := b.docs.Propose([]byte(`{"edit":"b3"}`), "bob", 2)
	if err != nil {
		t.Fatal(err)
	}
	if !poll(t, func() bool { return current(t, c).Version == 3 }) {
		t.Fatal("c did not get a version 3")
	}
	// c builds on the version 3 it has: b's, or a's if an exchange that
	// was under way when the link was cut carried it (a's wins over b's
	// then, by Compare).
	onLine := current(t, c)
	if _, err := c.docs.Propose([]byte(`{"edit":"c4"}`), "carol", 3); err != nil {
		t.Fatal(err)
	}
	if d := current(t, a); d.Version != 3 || string(d.Body) != `{"edit":"a in the minority"}` {
		t.Fatalf("a, cut off, runs %d %s", d.Version, d.Body)
	}
	lost := editA
	if onLine.ID() == editA.ID() {
		lost = editB
	} else if onLine.ID() != editB.ID() {
		t.Fatalf("c runs a version 3 nobody made: %+v", onLine)
	}

	// Healed: one winner everywhere, and the other side's version 3 is in
	// every history, lost.
	for _, m := range ms {
		m.tr.set([]string{a.addr, b.addr, c.addr}, false)
	}
	waitAll(t, ms, 4, `{"edit":"c4"}`)
	for _, m := range ms {
		if !poll(t, func() bool {
			for _, h := range m.docs.History() {
				if h.ID() == lost.ID() {
					return h.Lost
				}
			}
			return false
		}) {
			t.Errorf("%s's history does not have the lost edit %s: %+v", m.name, lost.Body, m.docs.History())
		}
		var line []string
		for _, h := range m.docs.History() {
			if !h.Lost {
				line = append(line, h.ID())
			}
		}
		if len(line) != 4 || line[2] != onLine.ID() {
			t.Errorf("%s's line of versions = %v, want 1, 2, %s, 4", m.name, line, onLine.ID())
		}
		if d, err := m.docs.Get(3); err != nil || d.ID() != onLine.ID() {
			t.Errorf("%s: version 3 = %s, %v; want %s", m.name, d.Body, err, onLine.Body)
		}
	}

	// c restarts with its persisted copy: it keeps version 4, its file's
	// seed is not used. While it is away a edits again: c takes the newer.
	c.stop(t)
	if _, err := a.docs.Propose([]byte(`{"edit":5}`), "alice", 4); err != nil {
		t.Fatal(err)
	}
	startDocMember(t, c, `{"older file":true}`, []string{a.addr})
	if d := current(t, c); d.Version != 4 {
		t.Errorf("c restarted with version %d, want its persisted 4", d.Version)
	}
	waitAll(t, ms, 5, `{"edit":5}`)

	// A new host with an older file seeds version 1 and does not
	// overwrite the cluster's.
	port := freePort(t)
	d := &docMember{name: "d", port: port, addr: fmt.Sprintf("127.0.0.1:%d", port), path: filepath.Join(t.TempDir(), "d.json")}
	startDocMember(t, d, `{"older file":true}`, []string{b.addr})
	defer d.stop(t)
	waitAll(t, append(ms, d), 5, `{"edit":5}`)

	// Restarted alone, a host comes back with the latest version.
	a.stop(t)
	startDocMember(t, a, `{"seed":1}`, nil)
	if d := current(t, a); d.Version != 5 {
		t.Errorf("a restarted alone with version %d, want 5", d.Version)
	}
}
