package cluster

import (
	"context"
	"encoding/json"
	"slices"
	"time"

	"github.com/hashicorp/memberlist"
)

// A fresh view. A member that starts, whose link comes back or that
// regains a quorum may see a view the others no longer share: the
// others marked it failed while it still counts them, or it has heard of
// only some of them yet. Claiming VIPs from such a view makes two owners
// (the fault suite saw both). So until its view is fresh the member takes
// no VIP it does not hold already (Input.Stale).
//
// The view is fresh once, in an exchange round this member began after
// its view went stale, every live peer in it has answered a push/pull
// (memberlist's full state exchange, which this member starts with Join
// every 200 ms) and listed this member among the members it sees alive,
// in the state the delegate exchanges: the peers know it is back, and it
// has their whole membership. A peer that never answers is
// either removed by failure detection or waited out for freshTimeout.

// freshTimeout bounds the wait for a fresh view.
const freshTimeout = 10 * time.Second

// freshState is a Cluster's fresh-view state, guarded by c.mu.
type freshState struct {
	// staleSince is when the view went stale; zero when it is fresh.
	staleSince time.Time
	// round is when this member's last exchange with all its peers
	// began (refreshLoop). Only answers from a round that began after the
	// view went stale count: a peer answering the first join of a new
	// process may be one of several, the others not merged yet.
	round time.Time
	// heard is, for each peer, when it last answered a push/pull and
	// whether it listed this member as alive.
	heard map[string]heardFrom
}

type heardFrom struct {
	at     time.Time
	seesUs bool
}

// wireState is what members exchange in a push/pull.
type wireState struct {
	Name  string   `json:"n"`
	Alive []string `json:"a"`
}

// staleLocked marks the view stale (again) from now. c.mu must be held.
func (c *Cluster) staleLocked(now time.Time, why string) {
	if c.fresh.staleSince.IsZero() {
		c.log.Debug("membership view stale: taking no new VIPs until the peers confirm it", "node", c.opts.Name, "why", why)
	}
	c.fresh.staleSince = now
}

// freshLocked reports whether the view is fresh, and makes it so when
// every live peer in members confirmed this member since it went stale.
// c.mu must be held.
func (c *Cluster) freshLocked(members []Member, now time.Time) bool {
	since := c.fresh.staleSince
	if since.IsZero() {
		return true
	}
	round := c.fresh.round
	if round.Before(since) {
		if now.Sub(since) < freshTimeout {
			return false
		}
		round = since
	}
	for _, m := range members {
		if m.Name == c.opts.Name || m.Absent {
			continue
		}
		h, ok := c.fresh.heard[m.Name]
		if !ok || h.at.Before(round) || !h.seesUs {
			if now.Sub(since) < freshTimeout {
				return false
			}
			c.log.Warn("a peer did not confirm this member's return: taking VIPs anyway", "node", c.opts.Name, "peer", m.Name)
		}
	}
	c.fresh.staleSince = time.Time{}
	c.log.Debug("membership view fresh", "node", c.opts.Name, "after", now.Sub(since))
	return true
}

// localState is this member's push/pull state: the members it sees alive
// (as of its last update).
func (c *Cluster) localState() []byte {
	st := wireState{Name: c.opts.Name}
	c.mu.Lock()
	for _, m := range c.members {
		if !m.Absent {
			st.Alive = append(st.Alive, m.Name)
		}
	}
	c.mu.Unlock()
	b, _ := json.Marshal(st)
	return b
}

// mergeState records a peer's push/pull state.
func (c *Cluster) mergeState(buf []byte) {
	var st wireState
	if err := json.Unmarshal(buf, &st); err != nil || st.Name == "" || st.Name == c.opts.Name {
		return
	}
	c.mu.Lock()
	c.fresh.heard[st.Name] = heardFrom{at: c.opts.Now(), seesUs: slices.Contains(st.Alive, c.opts.Name)}
	c.mu.Unlock()
	c.kick()
}

// refreshLoop exchanges state with the live peers while the view is
// stale, every 200 ms.
func (c *Cluster) refreshLoop(ctx context.Context, ml *memberlist.Memberlist) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(200 * time.Millisecond):
		}
		c.mu.Lock()
		stale := !c.fresh.staleSince.IsZero()
		c.mu.Unlock()
		if !stale {
			continue
		}
		c.mu.Lock()
		c.fresh.round = c.opts.Now()
		c.mu.Unlock()
		var addrs []string
		for _, n := range c.view.list() {
			if n.Name != c.opts.Name {
				addrs = append(addrs, n.address())
			}
		}
		if len(addrs) > 0 {
			if _, err := ml.Join(addrs); err != nil {
				c.log.Debug("exchanging state with peers", "err", err)
			}
		}
		c.kick()
	}
}
