package cluster

import (
	"maps"
	"net/netip"
	"slices"
	"strings"
	"sync"

	"github.com/hashicorp/memberlist"
)

// The membership as memberlist reports it. memberlist rewrites a node's
// fields (Meta, Addr, Port, State) in place, under its own lock, each
// time it hears of the node; the *memberlist.Node that Members and
// LocalNode return point into that state, so reading them afterwards
// races with memberlist and can see torn metadata. edgelb therefore never
// keeps or reads memberlist's Node structs: the EventDelegate's callbacks,
// which memberlist calls one at a time with its lock held, copy each node
// into a peerTable, and everything that decides or sends (update, missing,
// refreshLoop, AskDrain, sendDocs) reads the copies.

// peer is a live member as memberlist last reported it: its address and
// its metadata, decoded (zero, that is unhealthy, when it cannot be
// read).
type peer struct {
	Name string
	Addr netip.AddrPort
	Meta Meta
}

// peerOf copies what edgelb uses of n. Call it only inside memberlist's
// event callbacks, where n is not being written.
func peerOf(n *memberlist.Node) peer {
	p := peer{Name: n.Name}
	if a, ok := netip.AddrFromSlice(n.Addr); ok {
		p.Addr = netip.AddrPortFrom(a.Unmap(), n.Port)
	}
	if m, err := decodeMeta(n.Meta); err == nil {
		p.Meta = m
	}
	return p
}

// node is a memberlist.Node of edgelb's own, to address p
// (SendReliable): memberlist only reads it.
func (p peer) node() *memberlist.Node {
	return &memberlist.Node{Name: p.Name, Addr: p.Addr.Addr().AsSlice(), Port: p.Addr.Port()}
}

// address is p's host:port, as memberlist.Node.Address gives it.
func (p peer) address() string { return p.Addr.String() }

// peerTable is the live members: those memberlist reported joined (or
// updated) and not left since. Its methods are safe for concurrent use;
// its lock is taken inside memberlist's callbacks, so nothing calls
// memberlist while holding it.
type peerTable struct {
	mu    sync.Mutex
	peers map[string]peer
}

// reset forgets every member, before a new memberlist starts.
func (t *peerTable) reset() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.peers = map[string]peer{}
}

// set records p joined or updated.
func (t *peerTable) set(p peer) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.peers == nil {
		t.peers = map[string]peer{}
	}
	t.peers[p.Name] = p
}

// remove records that name left or failed.
func (t *peerTable) remove(name string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.peers, name)
}

// get returns the member name, if it is live.
func (t *peerTable) get(name string) (peer, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	p, ok := t.peers[name]
	return p, ok
}

// list returns the live members sorted by name: copies, which the
// caller may keep (their Networks are never written once decoded).
func (t *peerTable) list() []peer {
	t.mu.Lock()
	out := slices.Collect(maps.Values(t.peers))
	t.mu.Unlock()
	slices.SortFunc(out, func(a, b peer) int { return strings.Compare(a.Name, b.Name) })
	return out
}
