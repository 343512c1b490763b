package consensus

import (
	"bytes"
	"context"
	"io"
	"log"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
)

// mlDelegate hands memberlist's user messages to the Node, as the
// cluster's delegate will.
type mlDelegate struct{ node atomic.Pointer[Node] }

func (d *mlDelegate) NodeMeta(int) []byte { return nil }
func (d *mlDelegate) NotifyMsg(b []byte) {
	if n := d.node.Load(); n != nil {
		Handle(n, b)
	}
}
func (d *mlDelegate) GetBroadcasts(int, int) [][]byte { return nil }
func (d *mlDelegate) LocalState(bool) []byte          { return nil }
func (d *mlDelegate) MergeRemoteState([]byte, bool)   {}

// Three members over memberlist's encrypted user channel (on its
// in-memory network) commit a version.
func TestOverMemberlist(t *testing.T) {
	net := &memberlist.MockNetwork{}
	peers := names(3)
	// MockNetwork's transports must all exist before any member runs.
	transports := map[string]*memberlist.MockTransport{}
	for _, p := range peers {
		transports[p] = net.NewTransport(p)
	}
	key := []byte("0123456789abcdef0123456789abcdef")
	var nodes []*Node
	for _, p := range peers {
		conf := memberlist.DefaultLocalConfig()
		conf.Name, conf.Transport, conf.SecretKey = p, transports[p], key
		conf.Logger = log.New(io.Discard, "", 0)
		d := &mlDelegate{}
		conf.Delegate = d
		ml, err := memberlist.Create(conf)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ml.Shutdown() })
		n, err := New(Options{Name: p, Peers: peers, Dir: t.TempDir(), Tick: testTick,
			Transport: &Memberlist{Self: p, List: ml}})
		if err != nil {
			t.Fatal(err)
		}
		d.node.Store(n)
		nodes = append(nodes, n)
	}
	seed := nodes[0].opts.Transport.(*Memberlist).List.LocalNode().Address()
	for _, n := range nodes[1:] {
		if _, err := n.opts.Transport.(*Memberlist).List.Join([]string{seed}); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	for _, n := range nodes {
		go func() { n.Run(ctx); done <- struct{}{} }()
	}
	t.Cleanup(func() {
		cancel()
		for range nodes {
			<-done
		}
	})
	pctx, pcancel := context.WithTimeout(ctx, 10*time.Second)
	defer pcancel()
	// A configuration of some size: its append goes over TCP, the
	// heartbeats and acknowledgements as packets.
	body := bytes.Repeat([]byte("x"), 4096)
	if _, err := nodes[2].Propose(pctx, body, "test", 0); err != nil {
		t.Fatalf("Propose: %v", err)
	}
	eventually(t, 10*time.Second, "not every member has version 1", func() bool {
		for _, n := range nodes {
			if n.Version() != 1 {
				return false
			}
		}
		return true
	})
}

func TestHandleFrames(t *testing.T) {
	if Handle(nil, []byte("d{}")) {
		t.Error("Handle took a message of another prefix")
	}
	from, msg, err := parseFrame([]byte{MsgPrefix, 2, 'n', '1', 'x', 'y'})
	if err != nil || from != "n1" || string(msg) != "xy" {
		t.Errorf("parseFrame = %q, %q, %v", from, msg, err)
	}
	if _, _, err := parseFrame([]byte{MsgPrefix, 9, 'n'}); err == nil {
		t.Error("a short frame parsed")
	}
}
