package cluster

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"

	sockaddr "github.com/hashicorp/go-sockaddr"
)

// Member identity for the consensus log. The log's members must be named
// the same on every host, from what every host's file already has: the
// gossip addresses. cluster.join lists addresses, not node names, so a
// member's identity is its gossip address, ip:port — this host's
// cluster.bindAddr and bindPort, each join entry with bindPort when it has
// no port — normalized as clusterSize counts them (IPv4-mapped IPv6
// unmapped). A join entry that is a host name is resolved once, at start.
// No key is added to the file: a cluster whose hosts list each other by
// address, as every example does, keeps working unchanged.

// MemberAddrs returns the configured cluster's identities, sorted, this
// member's included, and this member's own. lookup resolves a host name
// (nil: the system's resolver).
func (o Options) MemberAddrs(ctx context.Context, lookup func(ctx context.Context, host string) ([]netip.Addr, error)) (all []string, self string, err error) {
	if lookup == nil {
		lookup = func(ctx context.Context, host string) ([]netip.Addr, error) {
			return net.DefaultResolver.LookupNetIP(ctx, "ip", host)
		}
	}
	port := strconv.Itoa(int(o.BindPort))
	selfAddr := o.BindAddr.Unmap()
	if !selfAddr.IsValid() || selfAddr.IsUnspecified() {
		// memberlist advertises the host's first private address then;
		// the same rule names this member.
		ip, err := sockaddr.GetPrivateIP()
		if err != nil || ip == "" {
			return nil, "", fmt.Errorf("cluster.bindAddr is not set and this host has no private address to advertise: set cluster.bindAddr to the address the others list in cluster.join")
		}
		if selfAddr, err = netip.ParseAddr(ip); err != nil {
			return nil, "", fmt.Errorf("cluster.bindAddr is not set and the advertised address %q is not an IP address: set cluster.bindAddr", ip)
		}
		selfAddr = selfAddr.Unmap()
	}
	self = net.JoinHostPort(selfAddr.String(), port)
	seen := map[string]bool{self: true}
	for i, j := range o.Join {
		host, p := j, port
		if h, pp, err := net.SplitHostPort(j); err == nil {
			host, p = h, pp
		}
		if host == o.Name && p == port {
			continue // this member, named as clusterSize allows
		}
		a, err := netip.ParseAddr(host)
		if err != nil {
			addrs, lerr := lookup(ctx, host)
			if lerr != nil || len(addrs) == 0 {
				return nil, "", fmt.Errorf("cluster.join[%d]: %q does not resolve (%v): list the hosts by IP address", i, host, lerr)
			}
			slices.SortFunc(addrs, func(a, b netip.Addr) int { return a.Compare(b) })
			a = addrs[0]
		}
		seen[net.JoinHostPort(a.Unmap().String(), p)] = true
	}
	for k := range seen {
		all = append(all, k)
	}
	slices.Sort(all)
	return all, self, nil
}

// SendTo sends b to the live member whose gossip address is addr
// (ip:port, as MemberAddrs names it) on memberlist's user channel,
// encrypted with the gossip key: over TCP when reliable, else as one UDP
// packet. It is how the consensus log's messages travel.
func (c *Cluster) SendTo(addr string, b []byte, reliable bool) error {
	ml := c.ml.Load()
	if ml == nil {
		return errors.New("gossip is not running")
	}
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		return fmt.Errorf("member %q is not an address: %w", addr, err)
	}
	ap = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	for _, p := range c.view.list() {
		if p.Addr == ap && p.Name != c.opts.Name {
			if reliable {
				return ml.SendReliable(p.node(), b)
			}
			return ml.SendBestEffort(p.node(), b)
		}
	}
	return fmt.Errorf("no live member at %s", addr)
}
