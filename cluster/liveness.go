package cluster

import (
	"slices"
	"time"
)

// liveness is what this member's heartbeats tell it about each peer: a
// small BFD-like detector (heartbeat.go sends and receives; this file
// only keeps time). It never adds a member to the view: it only names
// the members of memberlist's view that have gone silent, so that the
// ownership decision leaves them out (Input.Silent) before memberlist
// declares them dead.
//
// A peer is alive while there is evidence of it younger than the
// timeout (interval × multiplier): a heartbeat from it, or a heartbeat
// from a third member that heard it directly (each heartbeat reports how
// long ago its sender last heard every peer). The second kind is
// memberlist's indirect probe: a member cut off from one peer only, while
// the others still hear it, does not count it down, so the members that
// hear each other keep one view. A host that hears nobody has no
// evidence of anyone and counts only itself: it loses its quorum as fast
// as the others count it down.
//
// Only a peer that was heard and then went silent is counted down; one
// never heard since it joined (an older release, heartbeats off, or its
// first heartbeat not yet in) falls back to memberlist alone. A peer
// counted down comes back only after a full timeout of unbroken evidence
// (hysteresis), so a flapping link does not move VIPs back and forth.
//
// liveness is not safe for concurrent use: the heartbeat runner holds
// its own lock around it.
type liveness struct {
	// timeout is interval × multiplier; rise is how long a silent peer
	// must be heard again, unbroken, before it counts again.
	timeout, rise time.Duration
	peers         map[string]*peerLiveness
}

type peerLiveness struct {
	// seq is the last sequence number accepted from the peer.
	seq uint64
	// direct is when this member last heard the peer itself.
	direct time.Time
	// evidence is the latest time the peer was known alive (directly or
	// by a third member's report); since starts the current run of
	// evidence without a gap of timeout or more.
	evidence, since time.Time
	// wasDown: the peer went silent since it was first heard; it counts
	// again only after rise.
	wasDown bool
}

func newLiveness(timeout time.Duration) *liveness {
	return &liveness{timeout: timeout, rise: timeout, peers: map[string]*peerLiveness{}}
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
		if r.Name == self || r.Name == name || r.Age < 0 || r.Age >= l.timeout {
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
			p.wasDown = true
		}
		p.since = t
	}
	p.evidence = t
}

// silent returns, sorted, the names among peers that this member counts
// down at now: heard once, and without evidence for the timeout, or back
// for less than rise.
func (l *liveness) silent(peers []string, now time.Time) []string {
	var out []string
	for _, n := range peers {
		p := l.peers[n]
		if p == nil || p.evidence.IsZero() {
			continue // never heard: memberlist alone
		}
		if now.Sub(p.evidence) >= l.timeout {
			p.wasDown = true
			out = append(out, n)
			continue
		}
		if p.wasDown {
			if now.Sub(p.since) < l.rise {
				out = append(out, n)
				continue
			}
			p.wasDown = false
		}
	}
	slices.Sort(out)
	return out
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
		if p.evidence.IsZero() {
			continue
		}
		at(p.evidence.Add(l.timeout))
		if p.wasDown {
			at(p.since.Add(l.rise))
		}
	}
	return out
}
