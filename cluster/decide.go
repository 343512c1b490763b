package cluster

import (
	"net/netip"
	"slices"
	"time"
)

// Input is everything a member decides its VIPs from. The Cluster fills
// it from memberlist, its health sources and the VIP manager; tests fill
// it by hand and step Now.
type Input struct {
	// Self is this member's name.
	Self string
	// Members is the view: the live members, this one included with the
	// metadata it gossips (as the others decode it), and the members held
	// for a graceful restart (Absent).
	Members []Member
	// Size is the configured cluster size (join ∪ {self}); Quorum the
	// operator's quorum, 0 for a majority of Size.
	Size, Quorum int
	// Voters, when set, are the gossip addresses of the configured
	// members (the consensus log's): only live members at these addresses
	// count towards the quorum, and Size is their number, so that a host
	// being added, live but not yet configured, cannot give both sides of
	// a partition a majority.
	Voters map[netip.AddrPort]bool
	// VIPs are the desired VIPs.
	VIPs []netip.Addr
	// Held are the VIPs this host holds (configured on its interface).
	Held []netip.Addr
	// Adopted are the VIPs a previous process kept for this one, while
	// this member is in its start-up grace (restart.go); nil otherwise.
	Adopted []netip.Addr
	// Losing is the previous Decision's: since when each held VIP that is
	// assigned elsewhere has been kept for its next owner.
	Losing map[netip.Addr]time.Time
	// Stale: this member's view may not be the others' (it is starting,
	// its link came back, it regained a quorum) and they have not
	// confirmed it yet (fresh.go), or a peer's heartbeats say that its
	// copy of this member's metadata, or this member's copy of its, is
	// behind (viewcheck.go): it keeps what it holds and takes nothing new.
	Stale bool
	// Now is the current time; HandoverTimeout bounds how long a held VIP
	// is kept for a next owner that does not confirm it.
	Now             time.Time
	HandoverTimeout time.Duration
}

// Decision is a member's answer: whether it has a quorum, every VIP's
// owner, and what this member holds.
type Decision struct {
	// Live counts the live members in the view (absent ones are not
	// counted); Need is the quorum; HasQuorum is Live >= Need.
	Live, Need int
	HasQuorum  bool
	// Assigned is the owner of every VIP as this member sees it, empty
	// without a quorum.
	Assigned map[netip.Addr]string
	// Own are the VIPs to hold and announce; Handover are VIPs assigned to
	// another member that this one keeps, without announcing them, until
	// that member confirms it holds them (make before break).
	Own, Handover []netip.Addr
	// HeldOwned is the digest of the held VIPs assigned to this member,
	// which it gossips so that a member handing one over knows it has it.
	HeldOwned Digest
	// Losing is the next Input's Losing.
	Losing map[netip.Addr]time.Time
}

// NeedFor is the quorum of a configured cluster of size members: the
// operator's quorum when set, otherwise a strict majority. It never
// shrinks because members left, on purpose or not: two sides of a
// partition can never both count a strict majority of the same
// configured cluster.
func NeedFor(size, quorum int) int {
	if quorum > 0 {
		return quorum
	}
	return max(1, size)/2 + 1
}

// counts reports whether m counts towards the quorum: live, heard and
// hearing this member (neither Silent nor Unheard), and configured when
// voters are given.
func counts(m *Member, voters map[netip.AddrPort]bool) bool {
	return !m.Absent && !m.Silent && !m.Unheard && (len(voters) == 0 || voters[m.Addr])
}

// Decide is the ownership rule, a pure function of what this member
// sees. Members that see the same view compute the same owners (Assign).
//
//   - Quorum: only live members count (configured ones, when Voters is
//     set), never the absent ones held for a restart, so that two sides of a partition cannot both count a
//     majority of the configured cluster (a member restarting on one side
//     may still be held on the other).
//   - A member whose heartbeats stopped (Silent) counts as gone: it is
//     neither counted nor assigned anything, as if memberlist had
//     declared it dead. One Unheard is not counted but may still own
//     VIPs; a member that hears nobody counts only itself.
//   - Only configured members (Voters, when set) may own VIPs: one
//     outside the set has no quorum and is assigned nothing.
//   - Without a quorum, or unhealthy, a member holds nothing, at once.
//   - Otherwise it holds the VIPs assigned to it and keeps each held VIP
//     that is now assigned to another member until that member's gossiped
//     Held digest equals the digest of everything assigned to it, or for
//     HandoverTimeout.
//   - With a stale view it keeps what it holds and takes nothing new.
//   - During the start-up grace (Adopted), it keeps only adopted VIPs:
//     owned when it has a quorum and no other member is assigned the VIP,
//     otherwise held silently; it confirms none and gains nothing.
func Decide(in Input) Decision {
	size := in.Size
	if len(in.Voters) > 0 {
		size = len(in.Voters)
	}
	d := Decision{Need: NeedFor(size, in.Quorum), Assigned: map[netip.Addr]string{}, Losing: map[netip.Addr]time.Time{}}
	var self *Member
	byName := make(map[string]*Member, len(in.Members))
	for i := range in.Members {
		m := &in.Members[i]
		byName[m.Name] = m
		if m.Name == in.Self {
			self = m
		}
		if counts(m, in.Voters) {
			d.Live++
		}
	}
	// A member outside the configured set (being added, or removed and
	// still running) neither has a quorum nor is assigned a VIP.
	d.HasQuorum = self != nil && counts(self, in.Voters) && d.Live >= d.Need
	if d.HasQuorum {
		owners := in.Members
		if len(in.Voters) > 0 {
			owners = slices.DeleteFunc(slices.Clone(in.Members), func(m Member) bool { return !in.Voters[m.Addr] })
		}
		d.Assigned = Assign(in.VIPs, owners)
	}
	var mine []netip.Addr
	for _, v := range in.VIPs {
		if d.Assigned[v] == in.Self {
			mine = append(mine, v)
		}
	}
	if in.Adopted != nil {
		for _, v := range in.Held {
			if !slices.Contains(in.Adopted, v) {
				continue
			}
			if o, ok := d.Assigned[v]; d.HasQuorum && (!ok || o == in.Self) {
				d.Own = append(d.Own, v)
			} else {
				d.Handover = append(d.Handover, v)
			}
		}
		return d
	}
	var heldMine []netip.Addr
	for _, v := range in.Held {
		if slices.Contains(mine, v) {
			heldMine = append(heldMine, v)
		}
	}
	d.HeldOwned = DigestOf(heldMine)
	if !d.HasQuorum || !self.Healthy {
		return d // never risk two owners; an unhealthy host cannot serve
	}
	d.Own = mine
	if in.Stale {
		d.Own = nil
		for _, v := range mine {
			if slices.Contains(in.Held, v) {
				d.Own = append(d.Own, v)
			}
		}
	}
	expected := map[string][]netip.Addr{}
	for _, v := range in.VIPs {
		if o, ok := d.Assigned[v]; ok {
			expected[o] = append(expected[o], v)
		}
	}
	for _, v := range in.Held {
		if slices.Contains(mine, v) || !slices.Contains(in.VIPs, v) {
			continue
		}
		since, ok := in.Losing[v]
		if !ok {
			since = in.Now
		}
		if next, ok := d.Assigned[v]; ok && byName[next].Held == DigestOf(expected[next]) {
			continue // the next owner has it
		}
		if in.Now.Sub(since) >= in.HandoverTimeout {
			continue
		}
		d.Losing[v] = since
		d.Handover = append(d.Handover, v)
	}
	slices.SortFunc(d.Handover, netip.Addr.Compare)
	return d
}
