package cluster

import (
	"slices"
	"time"
)

// liveness is what this member's heartbeats tell it about each peer: a
// small BFD-like detector (heartbeat.go sends and receives; this file
// only keeps time). It never adds a member to the view: it only marks
// members of memberlist's view, so that the ownership decision leaves
// them out (Member.Silent, Member.Unheard) before memberlist declares
// them dead.
//
// A peer is alive while there is evidence of it: a heartbeat from it, or
// a heartbeat from a third member that heard it directly (each heartbeat
// reports how long ago its sender last heard every peer). The second
// kind is memberlist's indirect probe: a member cut off from one peer
// only, while the others still hear it, does not count it down, so the
// members that hear each other keep one view.
//
// With T the timeout (interval × multiplier), three thresholds, ordered
// so that a member that is cut off gives its VIPs up before the others
// take them, never two owners:
//
//   - Unheard after T without evidence: the peer no longer counts towards
//     this member's quorum. A host that hears nobody counts only itself
//     and gives its VIPs up T after it last heard anyone.
//   - Silent after T + 1¼ intervals: the peer is counted down, as if
//     memberlist had declared it dead, and its VIPs go to others. The
//     extra interval covers the phase between two members' heartbeats:
//     in a partition, each side last heard the other at most an interval
//     apart, so the side that loses its quorum has let go when the other
//     takes over.
//   - Unheard also when the peer no longer hears this member: every
//     heartbeat tells its receiver how long ago its sender last heard it,
//     and a peer whose last such report is T + 1 interval old (for how
//     late a report comes) is about to count this member down; it stays a
//     candidate owner but no longer counts towards this member's quorum.
//     A member whose heartbeats stop reaching the others while theirs
//     still reach it (a one-way failure) thus gives its VIPs up before
//     they take them, instead of keeping them until memberlist sorts it
//     out.
//
// A sudden delay d of a member's packets leaves a gap of interval + d in
// its heartbeats: it moves nothing while interval + d stays under
// T + 1¼ intervals on the peers' side and d plus the network's delay
// under T on the member's (a peer answers a heartbeat after a gap at
// once): 100 ms with the defaults (50 ms × 3) leaves 50 ms to spare.
//
// Only a peer that was heard and then went silent is counted down; one
// never heard since it joined (an older release, heartbeats off, or its
// first heartbeat not yet in) falls back to memberlist alone. A peer
// that was Unheard or Silent counts again only after a full timeout of
// unbroken evidence (hysteresis), so a flapping link does not move VIPs
// back and forth.
//
// liveness is not safe for concurrent use: the heartbeat runner holds
// its own lock around it.
type liveness struct {
	// timeout is interval × multiplier; rise is how long a peer that
	// went unheard must be heard again, unbroken, before it counts again.
	timeout, rise time.Duration
	// lag is one interval.
	lag   time.Duration
	peers map[string]*peerLiveness
}

// Levels of a peer that went missing, for the hysteresis.
const (
	levelUp      = iota
	levelUnheard // a gap of timeout or more
	levelSilent  // a gap of timeout + lag or more
)

type peerLiveness struct {
	// seq is the last sequence number accepted from the peer.
	seq uint64
	// direct is when this member last heard the peer itself.
	direct time.Time
	// evidence is the latest time the peer was known alive (directly or
	// by a third member's report); since starts the current run of
	// evidence without a gap of timeout or more.
	evidence, since time.Time
	// down is the worst level the peer reached since it was last
	// counted: it counts again at rise after since.
	down int
	// heardMe is the latest time the peer reported hearing this member
	// (zero: it never did).
	heardMe time.Time
}

func newLiveness(interval time.Duration, multiplier int) *liveness {
	timeout := interval * time.Duration(multiplier)
	return &liveness{timeout: timeout, rise: timeout, lag: interval, peers: map[string]*peerLiveness{}}
}

// report is one entry of a heartbeat: a member its sender heard directly,
// age ago.
type report struct {
	Name string
	Age  time.Duration
}

// forget drops what is known of name (it left or joined memberlist again:
// a new process starts a new history).
func (l *liveness) forget(name string) { delete(l.peers, name) }

// accept records a heartbeat from name with sequence seq received at
// now, carrying reports; self is this member's name, whose reports are
// ignored. It returns false, recording nothing, for a replayed or
// reordered heartbeat (seq not above the last accepted).
func (l *liveness) accept(name, self string, seq uint64, now time.Time, reports []report) bool {
	p := l.peer(name)
	if seq <= p.seq {
		return false
	}
	p.seq = seq
	l.evidence(p, now, now)
	p.direct = now
	for _, r := range reports {
		if r.Name == self && r.Age >= 0 {
			if t := now.Add(-r.Age); t.After(p.heardMe) {
				p.heardMe = t
			}
			continue
		}
		if r.Name == name || r.Age < 0 || r.Age >= l.timeout {
			continue
		}
		l.evidence(l.peer(r.Name), now.Add(-r.Age), now)
	}
	return true
}

func (l *liveness) peer(name string) *peerLiveness {
	p := l.peers[name]
	if p == nil {
		p = &peerLiveness{}
		l.peers[name] = p
	}
	return p
}

// evidence records that p was alive at t (learnt at now).
func (l *liveness) evidence(p *peerLiveness, t, now time.Time) {
	if t.After(now) {
		t = now
	}
	if !t.After(p.evidence) {
		return
	}
	if p.evidence.IsZero() || t.Sub(p.evidence) >= l.timeout {
		if !p.evidence.IsZero() {
			p.down = max(p.down, l.level(t.Sub(p.evidence)))
		}
		p.since = t
	}
	p.evidence = t
}

// silentAfter is how long a peer is missing before it is Silent: the
// timeout, an interval for the phase between two members' heartbeats,
// and a quarter more, so that a member cut off has let go first.
func (l *liveness) silentAfter() time.Duration { return l.timeout + l.lag + l.lag/4 }

// deafAfter is how old the last report of a peer hearing this member
// may be before that peer is Unheard: the timeout and an interval for
// how late a report arrives (its sender echoes at once a heartbeat that
// comes after a gap, heartbeat.go), less than silentAfter so that this
// member lets go before the peer takes over.
func (l *liveness) deafAfter() time.Duration { return l.timeout + l.lag }

// level is the level of a peer without evidence for gap.
func (l *liveness) level(gap time.Duration) int {
	switch {
	case gap >= l.silentAfter():
		return levelSilent
	case gap >= l.timeout:
		return levelUnheard
	}
	return levelUp
}

// verdict returns, sorted, the names among peers that this member
// counts down at now (Silent), and those that do not count towards its
// quorum (Unheard: the Silent ones, those missing for the timeout or
// back for less than rise, and those that no longer hear this member).
func (l *liveness) verdict(peers []string, now time.Time) (silent, unheard []string) {
	for _, n := range peers {
		p := l.peers[n]
		if p == nil || p.evidence.IsZero() {
			continue // never heard: memberlist alone
		}
		lvl := l.level(now.Sub(p.evidence))
		if lvl > levelUp {
			p.down = max(p.down, lvl)
			lvl = p.down // missing again before it was counted again
		} else if p.down > levelUp {
			if now.Sub(p.since) < l.rise {
				lvl = p.down // coming back
			} else {
				p.down = levelUp
			}
		}
		if lvl == levelUp && !p.heardMe.IsZero() && now.Sub(p.heardMe) >= l.deafAfter() {
			lvl = levelUnheard
		}
		if lvl == levelSilent {
			silent = append(silent, n)
		}
		if lvl > levelUp {
			unheard = append(unheard, n)
		}
	}
	slices.Sort(silent)
	slices.Sort(unheard)
	return silent, unheard
}

// heard returns the reports this member sends: the peers it heard
// directly within the timeout, and how long ago.
func (l *liveness) heard(now time.Time) []report {
	var out []report
	for n, p := range l.peers {
		if p.direct.IsZero() {
			continue
		}
		if age := now.Sub(p.direct); age < l.timeout {
			out = append(out, report{Name: n, Age: max(age, 0)})
		}
	}
	slices.SortFunc(out, func(a, b report) int {
		switch {
		case a.Name < b.Name:
			return -1
		case a.Name > b.Name:
			return 1
		}
		return 0
	})
	return out
}

// next is the earliest time after now at which silent's answer may
// change by time alone (a timeout or a rise ending), or zero.
func (l *liveness) next(now time.Time) time.Time {
	var out time.Time
	at := func(t time.Time) {
		if t.After(now) && (out.IsZero() || t.Before(out)) {
			out = t
		}
	}
	for _, p := range l.peers {
		if !p.evidence.IsZero() {
			at(p.evidence.Add(l.timeout))
		}
		if !p.evidence.IsZero() {
			at(p.evidence.Add(l.silentAfter()))
		}
		if p.down > levelUp {
			at(p.since.Add(l.rise))
		}
		if !p.heardMe.IsZero() {
			at(p.heardMe.Add(l.deafAfter()))
		}
	}
	return out
}
