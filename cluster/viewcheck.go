package cluster

import (
	"context"
	"encoding/binary"
	"fmt"
	"hash/fnv"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/hashicorp/memberlist"
)

// Agreeing on the metadata ownership is computed from. Every member
// computes the owners from its copies of the others' Meta, which
// memberlist gossips: best effort, a few UDP retransmissions, with a
// full state exchange (push/pull) only every 10 s. Two members whose
// copies differ compute different owners, and both may take the same VIP:
// the crash benchmark saw it, a host that had become healthy 0.6 s earlier
// still unhealthy in a survivor's copy, and both survivors answered for
// 280 ms after the owner died.
//
// So each member numbers what Assign reads of its Meta (Eligible,
// Networks, Refused: ownerDigest tells when it changed) with an
// OwnerVersion it gossips in the Meta, and every heartbeat carries two
// versions: the sender's own, and that of the sender's copy of the
// receiver's Meta. A member whose copy of a peer is older than the
// peer's own version knows its copy is behind; one whose own version
// differs from a peer's copy of it knows the peer is behind. Either way
// they may compute different owners, and the member takes no VIP it does
// not hold (Input.Stale): it keeps what it holds (make before break),
// gives up what it must, and waits until both sides have each other's
// current Meta. Versions, not digests of the content, go on the wire: a
// member that became unhealthy and healthy again before a peer heard of
// either has the same content as that peer's copy, and a heartbeat sent
// before the peer's copy changed would still match it.
//
// Why both: a member whose copy is behind takes nothing new, but keeps
// what it holds and believes is its own; the peer whose news it has not
// got must not take that VIP meanwhile. For two members R and S that each
// have the other's current Meta, Assign gives a VIP to R in R's view and
// to S in S's only if they disagree about R's or S's eligibility, networks
// or refusals — which the versions rule out — so they never both own it.
// What may differ is when each counts a third member down (Silent,
// memberlist's dead): leaving out a member only moves the VIPs it won, and
// the one that has not left it out yet gives them to it, not to itself.
// So a takeover after a death does not wait for the survivors to agree on
// the death, only on each other.
//
// The version covers neither Held nor the other fields that change at
// every takeover, only what decides an owner, so a takeover does not make
// the others wait. A member announces that it has a peer's version only
// once it has acted on the decision made from it (update sets the
// heartbeats' versions after the decision), since the peer may take a VIP
// from it at once. A peer that sends no versions (an older release,
// heartbeats off) or has not been heard yet is not compared: "unknown" is
// not "behind", and memberlist alone judges it as before. A witness never
// takes a VIP, so its copy of this member is not waited for.
//
// Gossip usually brings the news within an interval or two; when a
// disagreement outlasts two heartbeat intervals, the member exchanges its
// full state with the peers it disagrees with (memberlist's push/pull,
// catchUpLoop), which brings both sides up to date in one round trip.

// ownerDigest is the digest of what Assign reads of a member's Meta:
// whether it is eligible, its networks and the VIPs it refuses.
func ownerDigest(m Meta) uint64 {
	h := fnv.New64a()
	b := []byte{0}
	if m.Eligible() {
		b[0] = 1
	}
	nets := slices.Clone(m.Networks)
	slices.SortFunc(nets, func(a, b netip.Prefix) int {
		if c := a.Addr().Compare(b.Addr()); c != 0 {
			return c
		}
		return a.Bits() - b.Bits()
	})
	b = binary.BigEndian.AppendUint16(b, uint16(len(nets)))
	for _, p := range nets {
		a := p.Masked().Addr().As16()
		b = append(append(b, a[:]...), byte(p.Bits()))
	}
	refused := slices.Clone(m.Refused)
	slices.SortFunc(refused, netip.Addr.Compare)
	b = binary.BigEndian.AppendUint16(b, uint16(len(refused)))
	for _, v := range refused {
		a := v.As16()
		b = append(b, a[:]...)
	}
	_, _ = h.Write(b)
	return h.Sum64()
}

// disagreeing returns, sorted, the live peers among members whose last
// heartbeat's versions (heard) say this member's copy of their Meta is
// older than their own, or their copy of this member's is not self, the
// version of the Meta it gossips, and those in unheard: peers that speak
// versions but whose heartbeats have not carried any yet. Peers absent,
// Silent (counted down: out of the assignment) or that sent no versions
// and are not in unheard are not compared.
func disagreeing(selfName string, self uint64, members []Member, heard map[string]ownerVersions, unheard map[string]bool) []string {
	var out []string
	for _, m := range members {
		if m.Name == selfName || m.Absent || m.Silent {
			continue
		}
		v, ok := heard[m.Name]
		if !ok {
			if unheard[m.Name] {
				out = append(out, m.Name)
			}
			continue
		}
		if m.OwnerVersion < v.Sender || (!m.Witness && v.Receiver != self) {
			out = append(out, m.Name)
		}
	}
	slices.Sort(out)
	return out
}

// versionsSaid describes, for a log, the versions behind each
// disagreement: this member's copy of the peer's and the peer's own, the
// peer's copy of this member's and this member's own.
func versionsSaid(selfName string, self uint64, members []Member, heard map[string]ownerVersions, peers []string) string {
	var b strings.Builder
	for _, m := range members {
		if !slices.Contains(peers, m.Name) {
			continue
		}
		v := heard[m.Name]
		fmt.Fprintf(&b, "%s: copy %d, its own %d; its copy of %s %d, own %d. ", m.Name, m.OwnerVersion, v.Sender, selfName, v.Receiver, self)
	}
	return strings.TrimSpace(b.String())
}

// viewCheck is a Cluster's comparison of versions, guarded by c.mu.
type viewCheck struct {
	// since is when each peer in disagreement began to be.
	since map[string]time.Time
	// warned: the current disagreement was logged as long.
	warned bool
	// unheard is since when each live peer that speaks versions (its Meta
	// has an OwnerVersion and a HeartbeatPort) has not sent any: a
	// process that just (re)started has heard no heartbeat of its peers
	// yet, and a peer whose copy of its Meta is the previous process's
	// (unhealthy, or none) may still hold a VIP this one would take. It
	// counts as behind until its heartbeats bring versions, or until
	// unheardFor has passed (then the heartbeat path is broken, and
	// memberlist alone judges it as before, with a warning).
	unheard map[string]time.Time
	// warnedUnheard are the peers the warning was logged for.
	warnedUnheard map[string]bool
}

// unheardFor is how long a live peer that speaks versions but has sent
// none counts as behind: ten heartbeat timeouts (interval × multiplier),
// at least 2 s.
func unheardFor(timeout time.Duration) time.Duration {
	return max(2*time.Second, 10*timeout)
}

// disagreeWarnAfter is how long a disagreement lasts before it is logged
// as a warning: the push/pull ends one within a few heartbeat intervals.
const disagreeWarnAfter = time.Second

// disagreeLocked returns the versions of members (this member's own as
// seen, the Meta it gossips) for the heartbeats to carry, and the peers
// whose heartbeats' versions differ from them. The caller hands the
// versions to the heartbeats once it has acted on the decision made from
// the same members. c.mu must be held.
func (c *Cluster) disagreeLocked(members []Member, seen Meta, now time.Time) (*hbVersions, []string) {
	hb := c.hb.Load()
	if hb == nil {
		return nil, nil
	}
	vs := &hbVersions{Self: seen.OwnerVersion, Peers: make(map[string]uint64, len(members))}
	for _, m := range members {
		if m.Name != c.opts.Name && !m.Absent {
			vs.Peers[m.Name] = m.OwnerVersion
		}
	}
	heard := hb.heardVersions()
	vc := &c.agree
	unheard := map[string]bool{}
	bound := unheardFor(hb.live.timeout)
	for _, m := range members {
		if m.Name == c.opts.Name || m.Absent || m.Silent || m.Witness || m.OwnerVersion == 0 || m.HeartbeatPort == 0 {
			delete(vc.unheard, m.Name)
			continue
		}
		if _, ok := heard[m.Name]; ok {
			delete(vc.unheard, m.Name)
			delete(vc.warnedUnheard, m.Name)
			continue
		}
		since, ok := vc.unheard[m.Name]
		if !ok {
			since = now
			vc.unheard[m.Name] = now
		}
		if now.Sub(since) < bound {
			unheard[m.Name] = true
		} else if !vc.warnedUnheard[m.Name] {
			c.log.Warn("no heartbeat versions from a live peer: judging it by memberlist alone (is UDP to its heartbeat port blocked?)",
				"node", c.opts.Name, "peer", m.Name, "for", now.Sub(since), "heartbeatPort", m.HeartbeatPort)
			vc.warnedUnheard[m.Name] = true
		}
	}
	for name := range vc.unheard {
		if !slices.ContainsFunc(members, func(m Member) bool { return m.Name == name }) {
			delete(vc.unheard, name)
		}
	}
	peers := disagreeing(c.opts.Name, vs.Self, members, heard, unheard)
	var first time.Time
	for _, t := range vc.since {
		if first.IsZero() || t.Before(first) {
			first = t
		}
	}
	for name := range vc.since {
		if !slices.Contains(peers, name) {
			delete(vc.since, name)
		}
	}
	for _, p := range peers {
		if _, ok := vc.since[p]; !ok {
			vc.since[p] = now
		}
	}
	switch {
	case first.IsZero() && len(peers) > 0:
		c.log.Debug("a peer's copy of the metadata differs: taking no new VIPs until they agree", "node", c.opts.Name, "peers", peers)
		select {
		case c.catchUp <- struct{}{}:
		default:
		}
	case !first.IsZero() && len(peers) == 0:
		c.log.Debug("metadata agreed with the peers", "node", c.opts.Name, "after", now.Sub(first))
		vc.warned = false
	case len(peers) > 0 && !vc.warned && now.Sub(first) >= disagreeWarnAfter:
		c.log.Warn("a peer's copy of the metadata still differs: taking no new VIPs", "node", c.opts.Name, "peers", peers, "for", now.Sub(first),
			"versions", versionsSaid(c.opts.Name, vs.Self, members, hb.heardVersions(), peers))
		vc.warned = true
	}
	return vs, peers
}

// bumpOwnerVersionLocked returns m with its OwnerVersion: the current
// one, or the next when what Assign reads of m changed since it was last
// numbered. c.mu must be held.
func (c *Cluster) bumpOwnerVersionLocked(m Meta) Meta {
	if d := ownerDigest(m); d != c.ownerDigest || c.ownerVersion == 0 {
		c.ownerDigest = d
		c.ownerVersion = max(c.ownerVersion+1, uint64(c.opts.Now().UnixNano()))
	}
	m.OwnerVersion = c.ownerVersion
	return m
}

// lagging returns the addresses of the peers this member has disagreed
// with for at least d, and how long until the next other one will have
// (0: none disagrees).
func (c *Cluster) lagging(d time.Duration) (addrs []string, next time.Duration) {
	now := c.opts.Now()
	c.mu.Lock()
	var names []string
	for name, t := range c.agree.since {
		if wait := d - now.Sub(t); wait <= 0 {
			names = append(names, name)
		} else if next == 0 || wait < next {
			next = wait
		}
	}
	c.mu.Unlock()
	for _, n := range names {
		if p, ok := c.view.get(n); ok {
			addrs = append(addrs, p.address())
		}
	}
	slices.Sort(addrs)
	return addrs, next
}

// catchUpLoop exchanges full state (push/pull) with the peers this member
// has disagreed with for two heartbeat intervals, and again every two
// intervals while it lasts: gossip did not bring the news in time.
func (c *Cluster) catchUpLoop(ctx context.Context, ml *memberlist.Memberlist) {
	after := 2 * c.opts.Heartbeat.Interval
	if c.opts.catchUpAfter != 0 {
		after = c.opts.catchUpAfter
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-c.catchUp:
		}
		wait := after
		for {
			select {
			case <-ctx.Done():
				return
			case <-time.After(wait):
			}
			addrs, next := c.lagging(after)
			if len(addrs) == 0 && next == 0 {
				break // agreed
			}
			wait = after
			if len(addrs) == 0 {
				wait = next
				continue
			}
			n, err := ml.Join(addrs)
			c.log.Debug("exchanged state with peers whose copy of the metadata differs", "node", c.opts.Name, "peers", addrs, "contacted", n, "err", err)
			c.kick()
		}
	}
}
