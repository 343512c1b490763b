// Package consensustest provides an in-memory transport for tests of
// package consensus: whole clusters in one process, with links that can
// be cut to make partitions.
package consensustest

import (
	"fmt"
	"slices"
	"sync"
)

// Receiver takes a delivered message (consensus.Node implements it).
type Receiver interface {
	Deliver(from string, msg []byte)
}

// Network connects named members. Its methods are safe for concurrent
// use.
type Network struct {
	mu    sync.Mutex
	nodes map[string]Receiver
	cut   map[[2]string]bool
}

// NewNetwork returns a network with no member and every link up.
func NewNetwork() *Network {
	return &Network{nodes: map[string]Receiver{}, cut: map[[2]string]bool{}}
}

// Attach makes r receive the messages sent to name, replacing the one
// before (a restarted member).
func (n *Network) Attach(name string, r Receiver) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.nodes[name] = r
}

// Detach makes the messages to name fail, as to a stopped host.
func (n *Network) Detach(name string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	delete(n.nodes, name)
}

// Cut cuts the link between a and b, both ways.
func (n *Network) Cut(a, b string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.cut[[2]string{a, b}] = true
	n.cut[[2]string{b, a}] = true
}

// Partition cuts every link between members of different groups.
func (n *Network) Partition(groups ...[]string) {
	for i, g := range groups {
		for _, h := range groups[i+1:] {
			for _, a := range g {
				for _, b := range h {
					n.Cut(a, b)
				}
			}
		}
	}
}

// Heal restores every link.
func (n *Network) Heal() {
	n.mu.Lock()
	defer n.mu.Unlock()
	clear(n.cut)
}

// Transport is the member from's end of the network.
func (n *Network) Transport(from string) *Transport { return &Transport{net: n, from: from} }

// Transport sends as one member.
type Transport struct {
	net  *Network
	from string
}

// Send delivers a copy of msg to the member to at once, or fails when
// the link is cut or the member is detached.
func (t *Transport) Send(to string, msg []byte) error {
	t.net.mu.Lock()
	r, ok := t.net.nodes[to]
	cut := t.net.cut[[2]string{t.from, to}]
	t.net.mu.Unlock()
	if !ok {
		return fmt.Errorf("%s is down", to)
	}
	if cut {
		return fmt.Errorf("the link %s-%s is cut", t.from, to)
	}
	r.Deliver(t.from, slices.Clone(msg))
	return nil
}
