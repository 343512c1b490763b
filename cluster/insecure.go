package cluster

import (
	"errors"
	"fmt"
)

// Insecure gossip. With Options.Insecure, memberlist runs without its
// keyring: nothing it carries is encrypted or authenticated, so anyone
// who can reach the gossip port can join and say anything. That mode is
// for a lab, where what matters is the failover itself; it must not hand
// the network the appliance's configuration. So an insecure member takes
// from its peers only membership, health and VIP ownership (the gossiped
// Meta and the members a push/pull lists), and refuses everything else
// a peer sends — a version of the cluster configuration (by message or
// in a push/pull exchange; backend admin states are part of it) and a
// drain or undrain request — logging each kind once. It sends none of
// them either: the configuration holds secrets (BGP passwords) that would
// cross the network in clear text, and its peers would refuse them
// anyway. Changes that must reach other members are refused where they
// are asked for: AskDrain of another member returns ErrInsecure, and the
// app refuses configuration writes when Unreplicated says so.

// ErrInsecure is why an insecure member neither takes nor sends what
// would change another member.
var ErrInsecure = errors.New("cluster.insecure is set: gossip is neither encrypted nor authenticated, " +
	"so members take no configuration and no drain request from their peers")

// refusedMsg is the message logged, once per kind, when a peer's message
// is refused; the kinds are refusedConfig and refusedDrain.
const (
	refusedMsg    = "refusing what a peer sent over gossip"
	refusedConfig = "configuration"
	refusedDrain  = "drain request"
)

// Unreplicated says why a new version of the cluster configuration made
// on this member would reach no other member, or nil when it replicates:
// an insecure member of a cluster of more than one configured host runs
// a configuration the others never see, so the app must not make new
// versions through its API. A host alone has no one to replicate to.
func (o Options) Unreplicated() error {
	if !o.Insecure || o.Size() <= 1 {
		return nil
	}
	return fmt.Errorf("%w (%d configured hosts)", ErrInsecure, o.Size())
}

// InsecureWarning says what cluster.insecure costs, or "" without it.
func (o Options) InsecureWarning() string {
	if !o.Insecure {
		return ""
	}
	if o.Size() <= 1 {
		return "cluster.insecure: gossip is neither encrypted nor authenticated; a host that joins takes no configuration from this one: " +
			"set cluster.secretKeyFile (see `edgelb keygen`) before adding hosts"
	}
	return "cluster.insecure: gossip is neither encrypted nor authenticated, so anyone on the network can join and take VIPs; " +
		"the hosts take no configuration and no drain request from each other: each runs its own file's cluster-wide keys, " +
		"and the API refuses configuration changes, backend admin states and drains of other members (409); " +
		"set cluster.secretKeyFile (see `edgelb keygen`) on every host to manage the cluster through the API"
}

// refuse logs, the first time for each kind, that a peer's message of
// that kind was refused because gossip is insecure.
func (c *Cluster) refuse(kind, from string) {
	c.mu.Lock()
	first := !c.refused[kind]
	if first {
		if c.refused == nil {
			c.refused = map[string]bool{}
		}
		c.refused[kind] = true
	}
	c.mu.Unlock()
	if first {
		c.log.Warn(refusedMsg, "kind", kind, "from", from, "node", c.opts.Name,
			"reason", "cluster.insecure: gossip is not authenticated, anyone on the network could have sent it; "+
				"only membership, health and VIP ownership are taken from peers (this is logged once per kind)")
	}
}
