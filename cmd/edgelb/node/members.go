package node

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/edgelb/edgelb/api"
	"github.com/edgelb/edgelb/cluster"
	"github.com/edgelb/edgelb/cluster/consensus"
)

// memberSet is the configured cluster as the API reads and changes it:
// the consensus log's members, named by their gossip addresses, checked
// against the members gossip sees live before a change, the way etcd's
// strict reconfiguration check refuses a change that would leave no
// reachable majority.
type memberSet struct {
	raft *consensus.Node
	// gossip is the running membership (nil until it is built).
	gossip func() *cluster.Cluster
	// port is this host's cluster.bindPort, the port of an address
	// given without one.
	port uint16
	// quorum is this host's cluster.quorum (0: a majority of the
	// members), checked against the member set a change leaves.
	quorum int
}

// quorumProblem says what an explicit cluster.quorum would cost with
// members configured members after a change, "" when nothing: more than
// there are, and no host with that setting owns a VIP again; half of
// them or fewer, and both sides of a partition may own the same VIP (the
// start-up warning's rule, cluster.Options.QuorumWarning).
func quorumProblem(quorum, members int, what string) string {
	switch {
	case quorum == 0:
		return ""
	case quorum > members:
		return fmt.Sprintf("%s leaves %d configured members, fewer than this host's cluster.quorum %d: no host with that setting would own a VIP; "+
			"lower cluster.quorum in the hosts' files first (or leave it unset: a majority of the members)", what, members, quorum)
	case members > 2 && quorum <= members/2:
		return fmt.Sprintf("%s leaves %d configured members, of which this host's cluster.quorum %d is not a majority: both sides of a partition could own the same VIP; "+
			"raise cluster.quorum in the hosts' files first (or leave it unset: a majority of the members)", what, members, quorum)
	}
	return ""
}

var _ api.MemberSet = memberSet{}

func (m memberSet) Configured() []string { return m.raft.Members() }

func (m memberSet) Contact() api.Contact {
	c := m.raft.Contact()
	return api.Contact{Quorum: c.Quorum, Leader: c.Leader, Unreachable: c.Unreachable}
}

// live are the gossip addresses of the live members, this one included.
func (m memberSet) live() map[string]bool {
	out := map[string]bool{}
	if c := m.gossip(); c != nil {
		for _, mem := range c.Members() {
			if !mem.Absent {
				out[mem.Addr.String()] = true
			}
		}
	}
	return out
}

// reachable checks that a majority of members (the set after the change)
// is live; it returns why not, "" when it is.
func (m memberSet) reachable(members []string, what string) string {
	live := m.live()
	var down []string
	for _, mem := range members {
		if !live[mem] {
			down = append(down, mem)
		}
	}
	need := len(members)/2 + 1
	if len(members)-len(down) >= need {
		return ""
	}
	return fmt.Sprintf("%s leaves %d configured members, of which a majority (%d) must be reachable to commit anything, and only %d are (not reachable: %s): start or reconnect them first",
		what, len(members), need, len(members)-len(down), strings.Join(down, ", "))
}

// name normalizes addr, a gossip address (ip:port, or an IP address with
// this host's port), the way cluster.join entries name members.
func (m memberSet) name(addr string) (string, error) {
	if ap, err := netip.ParseAddrPort(addr); err == nil && ap.Port() != 0 {
		return netip.AddrPortFrom(ap.Addr().Unmap().WithZone(""), ap.Port()).String(), nil
	}
	if a, err := netip.ParseAddr(strings.Trim(addr, "[]")); err == nil {
		return netip.AddrPortFrom(a.Unmap().WithZone(""), m.port).String(), nil
	}
	return "", fmt.Errorf("%w: %q: give the new host's cluster.bindAddr and bindPort, like 10.0.0.14:7946", api.ErrInvalidMember, addr)
}

func (m memberSet) Add(ctx context.Context, addr string, force bool) (api.MemberChange, error) {
	name, err := m.name(addr)
	if err != nil {
		return api.MemberChange{}, err
	}
	members := m.raft.Members()
	if slices.Contains(members, name) {
		return api.MemberChange{}, fmt.Errorf("%w: %s is a configured member", api.ErrMemberExists, name)
	}
	if why := quorumProblem(m.quorum, len(members)+1, "adding "+name); why != "" && !force {
		return api.MemberChange{}, &api.RefusedError{Reason: why, Forceable: true}
	}
	if why := m.reachable(append(slices.Clone(members), name), "adding "+name); why != "" && !force {
		return api.MemberChange{}, &api.RefusedError{Reason: why, Forceable: true}
	}
	if err := m.raft.AddMember(ctx, name); err != nil {
		return api.MemberChange{}, memberErr(err)
	}
	return api.MemberChange{Member: name, Members: m.raft.Members()}, nil
}

func (m memberSet) Remove(ctx context.Context, name string, force bool) (api.MemberChange, error) {
	members := m.raft.Members()
	target := ""
	if n, err := m.name(name); err == nil && slices.Contains(members, n) {
		target = n
	} else if c := m.gossip(); c != nil {
		// A node name, while the member is live.
		for _, mem := range c.Members() {
			if mem.Name == name && slices.Contains(members, mem.Addr.String()) {
				target = mem.Addr.String()
			}
		}
	}
	if target == "" {
		return api.MemberChange{}, fmt.Errorf("%w: %q is not a configured member (they are %s)", api.ErrNotFound, name, strings.Join(members, ", "))
	}
	if len(members) == 1 {
		return api.MemberChange{}, &api.RefusedError{Reason: fmt.Sprintf("%s is the last configured member: a cluster keeps at least one", target)}
	}
	rest := slices.DeleteFunc(slices.Clone(members), func(s string) bool { return s == target })
	if why := quorumProblem(m.quorum, len(rest), "removing "+target); why != "" && !force {
		return api.MemberChange{}, &api.RefusedError{Reason: why, Forceable: true}
	}
	if why := m.reachable(rest, "removing "+target); why != "" && !force {
		return api.MemberChange{}, &api.RefusedError{Reason: why, Forceable: true}
	}
	if err := m.raft.RemoveMember(ctx, target); err != nil {
		return api.MemberChange{}, memberErr(err)
	}
	return api.MemberChange{Member: target, Members: m.raft.Members()}, nil
}

// memberErr maps the log's errors to the API's.
func memberErr(err error) error {
	switch {
	case errors.Is(err, consensus.ErrNoQuorum), errors.Is(err, consensus.ErrStopped):
		return fmt.Errorf("%w: %w", api.ErrNoQuorum, err)
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		return fmt.Errorf("%w: %w", api.ErrUnconfirmed, err)
	}
	return &api.RefusedError{Reason: err.Error()}
}
