package cluster

import (
	"errors"
	"net/netip"
	"slices"
	"time"
)

// Graceful restart. A restart of edgelb (systemctl restart, a package
// upgrade) is a local process event: the kernel's dataplane — IPVS,
// conntrack, the VIP addresses — outlives the process, so the VIPs stay
// where they are while it restarts, and connections already established
// through them keep working.
//
//   - The old process, its Run context cancelled with ErrRestart, hands
//     nothing over: it gossips Restarting and Leaving, waits at most a
//     second for that to go out, and leaves. Its VIP manager leaves the
//     addresses on the interface, with the lifetime they have left (at
//     most RestartHold), marked as kept for the next process.
//   - The others hold a member that left that way (absent): until
//     RestartHold after its leave, or until it is back, it stays a
//     candidate owner in Assign and counts for the quorum, so nobody takes
//     its VIPs and a two-host cluster keeps its quorum. Then it is
//     forgotten and its VIPs move as for a failure.
//   - The new process adopts the kept addresses (Adopt) and is in its
//     start-up grace: it gossips Restarting (the others treat it as a
//     candidate owner while its dataplane is not programmed yet) and keeps
//     the adopted VIPs — silently, and without renewing their lifetime
//     until it sees a quorum, so that if it never gets back into the
//     cluster they expire before the others stop holding for it. It never
//     gains a VIP it did not hold. The grace ends once it has a quorum, is
//     healthy and has the desired VIPs, or after RestartHold, or when it
//     drains or no longer holds any adopted VIP; the ordinary rules apply
//     from then on.

// ErrRestart is the cause to cancel Run's context with
// (context.WithCancelCause) for a graceful restart: the member keeps its
// VIPs and leaves without handing them over, for its next process.
var ErrRestart = errors.New("graceful restart: the VIPs stay for the next process")

// restartState is a Cluster's graceful-restart state, guarded by c.mu.
type restartState struct {
	// leaving: Run ended for a restart.
	leaving bool
	// adopted are the VIPs a previous process left for this one (Adopt);
	// grace is set during the start-up grace, which ends by graceUntil.
	adopted    []netip.Addr
	grace      bool
	graceUntil time.Time
	// absent are the members that left for a restart and are not back.
	absent map[string]absentMember
}

// absentMember is a member that left for a restart, held until its
// deadline.
type absentMember struct {
	m     Member
	until time.Time
}

// Adopt tells the cluster, before Run, the VIPs a previous edgelb process
// on this host kept on the interface for it when it restarted (the VIP
// manager's Adopt). With any, this member starts in its start-up grace:
// Owned lists them for handover (hold silently) at once, so that the VIP
// manager keeps them, and they move to own once it sees a quorum.
func (c *Cluster) Adopt(vips []netip.Addr) {
	if len(vips) == 0 {
		return
	}
	vips = slices.Clone(vips)
	slices.SortFunc(vips, netip.Addr.Compare)
	vips = slices.Compact(vips)
	now := c.opts.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	c.restart.adopted = vips
	c.restart.grace = true
	c.restart.graceUntil = now.Add(c.opts.RestartHold)
	c.held = slices.Clone(vips)
	c.handing = slices.Clone(vips)
	c.log.Info("adopted the VIPs kept by the previous process: keeping them during the start-up grace",
		"node", c.opts.Name, "vips", vips, "until", c.restart.graceUntil.Format(time.RFC3339Nano))
}

// Restarting reports whether this member is restarting: in its start-up
// grace, or leaving for a restart.
func (c *Cluster) Restarting() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.restart.grace || c.restart.leaving
}

// holdRestarting records a member that left for a restart.
func (c *Cluster) holdRestarting(p peer) {
	hold := p.Meta.RestartHold
	if hold <= 0 {
		hold = c.opts.RestartHold
	}
	m := Member{Name: p.Name, Addr: p.Addr, Absent: true, Meta: p.Meta}
	until := c.opts.Now().Add(hold)
	c.mu.Lock()
	c.restart.absent[p.Name] = absentMember{m: m, until: until}
	c.mu.Unlock()
	c.log.Info("member restarting, holding its VIPs until it is back", "node", p.Name, "addr", p.address(),
		"until", until.Format(time.RFC3339Nano), "restartHold", hold)
}

// absentLocked adds the members held for their restart to the live ones
// and forgets those whose hold has passed. c.mu must be held.
func (c *Cluster) absentLocked(live []Member, now time.Time) []Member {
	for name, a := range c.restart.absent {
		switch {
		case slices.ContainsFunc(live, func(m Member) bool { return m.Name == name }):
			delete(c.restart.absent, name) // back; NotifyJoin may not have run yet
		case !now.Before(a.until):
			delete(c.restart.absent, name)
			c.log.Warn("member did not come back from its restart: its VIPs move", "node", name, "restartHold", a.m.RestartHold)
		default:
			live = append(live, a.m)
		}
	}
	return live
}

// endGraceLocked ends the start-up grace once it is no longer needed:
// this member has a quorum, is healthy and has the desired VIPs, so the
// ordinary decision applies; or it drains; or it holds no adopted VIP any
// more; or RestartHold has passed since it started. c.mu must be held.
func (c *Cluster) endGraceLocked(quorum, loaded bool, now time.Time) {
	r := &c.restart
	if !r.grace {
		return
	}
	var why string
	switch {
	case c.draining:
		why = "draining"
	case !slices.ContainsFunc(c.held, func(v netip.Addr) bool { return slices.Contains(r.adopted, v) }):
		why = "no adopted VIP is held any more"
	case quorum && c.healthyLocked() && loaded:
		why = "back in the cluster with a quorum, healthy"
	case !now.Before(r.graceUntil):
		c.log.Warn("start-up grace over before this member was back: the ordinary rules apply", "node", c.opts.Name,
			"quorum", quorum, "healthy", c.healthyLocked(), "servicesLoaded", loaded)
		why = "restartHold passed"
	default:
		return
	}
	r.grace = false
	c.log.Info("start-up grace over", "node", c.opts.Name, "reason", why)
}
