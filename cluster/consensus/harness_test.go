package consensus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"runtime/pprof"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/edgelb/edgelb/cluster"
	"github.com/edgelb/edgelb/cluster/consensus/consensustest"
)

// testTick keeps elections fast (100 ms) yet well above the scheduling
// noise of -race on a busy machine.
const testTick = 10 * time.Millisecond

// tcluster runs members of one cluster in this process on an in-memory
// network, each with its own directory, so that any can be stopped and
// started again from it.
type tcluster struct {
	t     testing.TB
	net   *consensustest.Network
	peers []string
	dirs  map[string]string
	mod   func(*Options)

	mu    sync.Mutex
	nodes map[string]*running
}

type running struct {
	n      *Node
	cancel context.CancelFunc
	done   chan error
}

func names(size int) []string {
	var out []string
	for i := 1; i <= size; i++ {
		out = append(out, fmt.Sprintf("n%d", i))
	}
	return out
}

// newCluster starts size members that bootstrap together; mod, if set,
// changes each member's options.
func newCluster(t testing.TB, size int, mod func(*Options)) *tcluster {
	c := &tcluster{t: t, net: consensustest.NewNetwork(), peers: names(size), dirs: map[string]string{},
		mod: mod, nodes: map[string]*running{}}
	t.Cleanup(c.stopAll)
	for _, p := range c.peers {
		c.start(p, false)
	}
	return c
}

func (c *tcluster) dir(name string) string {
	if d, ok := c.dirs[name]; ok {
		return d
	}
	d, err := os.MkdirTemp(c.t.TempDir(), name)
	if err != nil {
		c.t.Fatal(err)
	}
	c.dirs[name] = d
	return d
}

func (c *tcluster) start(name string, join bool) *Node {
	c.t.Helper()
	opts := Options{Name: name, Peers: c.peers, Join: join, Dir: c.dir(name), Transport: c.net.Transport(name),
		Tick: testTick, Log: slog.New(slog.DiscardHandler)}
	if os.Getenv("CONSENSUS_LOG") != "" {
		opts.Log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})).With("self", name)
	}
	if c.mod != nil {
		c.mod(&opts)
	}
	n, err := New(opts)
	if err != nil {
		c.t.Fatalf("starting %s: %v", name, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{n: n, cancel: cancel, done: make(chan error, 1)}
	c.mu.Lock()
	c.nodes[name] = r
	c.mu.Unlock()
	c.net.Attach(name, n)
	go func() { r.done <- n.Run(ctx) }()
	return n
}

// stop stops a member as a crash would: its Run ends and nothing reaches
// it any more.
func (c *tcluster) stop(name string) {
	c.mu.Lock()
	r := c.nodes[name]
	delete(c.nodes, name)
	c.mu.Unlock()
	if r == nil {
		return
	}
	c.net.Detach(name)
	r.cancel()
	if err := <-r.done; err != nil {
		c.t.Errorf("%s: Run: %v", name, err)
	}
}

func (c *tcluster) stopAll() {
	c.mu.Lock()
	var all []string
	for name := range c.nodes {
		all = append(all, name)
	}
	c.mu.Unlock()
	for _, name := range all {
		c.stop(name)
	}
}

func (c *tcluster) node(name string) *Node {
	c.mu.Lock()
	defer c.mu.Unlock()
	if r := c.nodes[name]; r != nil {
		return r.n
	}
	return nil
}

func (c *tcluster) running() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for _, p := range append(c.peers, "n9") {
		if c.nodes[p] != nil {
			out = append(out, p)
		}
	}
	return out
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t testing.TB, within time.Duration, what string, cond func() bool) {
	t.Helper()
	eventuallyf(t, within, func() string { return what }, cond)
}

// eventuallyf is eventually with a failure message made at the end.
func eventuallyf(t testing.TB, within time.Duration, what func() string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			msg := what()
			if os.Getenv("CONSENSUS_DUMP") != "" {
				pprof.Lookup("goroutine").WriteTo(os.Stderr, 2)
			}
			t.Fatalf("after %v: %s", within, msg)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// state describes the members for a failure message.
func (c *tcluster) state() string {
	var b strings.Builder
	for _, m := range c.running() {
		n := c.node(m)
		n.mu.Lock()
		fmt.Fprintf(&b, "\n  %s (%p): applied %d, snapshot %d, version %d", m, n, n.applied, n.snapIndex, n.fsm.current0())
		n.mu.Unlock()
		fmt.Fprintf(&b, ", %+v", n.Contact())
	}
	return b.String()
}

// leader waits until one of members leads and is in contact with a
// majority, and returns its name.
func (c *tcluster) leader(members ...string) string {
	c.t.Helper()
	if len(members) == 0 {
		members = c.running()
	}
	var lead string
	eventually(c.t, 10*time.Second, "no leader among "+fmt.Sprint(members), func() bool {
		for _, m := range members {
			if n := c.node(m); n != nil {
				if ct := n.Contact(); ct.Leader == m && ct.Quorum {
					lead = m
					return true
				}
			}
		}
		return false
	})
	return lead
}

func (c *tcluster) follower(lead string) string {
	for _, m := range c.running() {
		if m != lead {
			return m
		}
	}
	c.t.Fatal("no follower")
	return ""
}

// waitVersion waits until every member named shows version v with the
// same content.
func (c *tcluster) waitVersion(v uint64, members ...string) cluster.Doc {
	c.t.Helper()
	if len(members) == 0 {
		members = c.running()
	}
	var want cluster.Doc
	eventuallyf(c.t, 10*time.Second, func() string {
		return fmt.Sprintf("members %v do not all show version %d:%s", members, v, c.state())
	}, func() bool {
		var docs []cluster.Doc
		for _, m := range members {
			n := c.node(m)
			if n == nil {
				return false
			}
			d, _ := n.Current()
			if d.Version != v {
				return false
			}
			docs = append(docs, d)
		}
		for _, d := range docs[1:] {
			if d.ID() != docs[0].ID() || !d.UpdatedAt.Equal(docs[0].UpdatedAt) || d.Member != docs[0].Member {
				return false
			}
		}
		want = docs[0]
		return true
	})
	return want
}

// propose proposes on member m with a generous deadline and fails the
// test on an error.
func (c *tcluster) propose(m string, body string, ifVersion uint64) cluster.Doc {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	d, err := c.node(m).Propose(ctx, []byte(body), "test", ifVersion)
	if err != nil {
		c.t.Fatalf("proposing %q on %s from version %d: %v", body, m, ifVersion, err)
	}
	return d
}

func isNoQuorum(err error) bool { return errors.Is(err, ErrNoQuorum) }
