package cluster

import (
	"context"
	"errors"
	"log/slog"
	"maps"
	"net"
	"net/netip"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Heartbeats: fast failure detection between the configured members,
// next to memberlist's (docs/failover.md). Every member sends each peer a
// small sealed UDP datagram every Interval (heartbeat_wire.go); a peer
// that stays silent for Interval × Multiplier is counted down for VIP
// ownership at once (liveness.go, Member.Silent), long before memberlist
// suspects it, with the same guards as a member memberlist declared dead:
// the quorum counts only the members this one hears, so a host that hears
// nobody gives its VIPs up as fast as the others take them over.
//
// The sender and the receiver run on goroutines of their own (the sender
// locked to an OS thread) and share no lock with the ownership loop or
// memberlist: the loop hands them the peers to send to (setTargets) and
// reads their verdict (silentNames), both through atomic pointers, and
// they wake it (kick) when the verdict changes.

// HeartbeatOptions configures the heartbeats (cluster.heartbeat).
type HeartbeatOptions struct {
	// Off disables them: this member neither sends nor listens, and its
	// peers fall back to memberlist alone for it (as for an older
	// release). They are also off without a gossip key (insecure) and,
	// unless Conn is given, with Options.Transport (tests).
	Off bool
	// Interval between two heartbeats to each peer; Multiplier is how
	// many may be missed: a peer silent for Interval × Multiplier is
	// counted down.
	Interval   time.Duration
	Multiplier int
	// Port is the UDP port heartbeats are received on, on BindAddr; 0
	// means BindPort + 1. Every member gossips its own (Meta).
	Port uint16
	// Conn replaces the UDP socket (tests).
	Conn net.PacketConn
}

// Heartbeat defaults (those of the config file).
const (
	DefaultHeartbeatInterval   = 50 * time.Millisecond
	DefaultHeartbeatMultiplier = 3
)

// Timeout is how long a peer may stay silent before it is counted down.
func (o HeartbeatOptions) Timeout() time.Duration { return o.Interval * time.Duration(o.Multiplier) }

// hbVerdict is what the heartbeats say of the targets: who is counted
// down (Member.Silent) and who does not count towards the quorum
// (Member.Unheard), both sorted.
type hbVerdict struct {
	Silent, Unheard []string
}

func (v *hbVerdict) equal(o *hbVerdict) bool {
	return slices.Equal(v.Silent, o.Silent) && slices.Equal(v.Unheard, o.Unheard)
}

// hbVersions are this member's owner versions (viewcheck.go), set by
// the ownership loop for the heartbeats to carry: of its own Meta, and
// of its copy of each peer's.
type hbVersions struct {
	Self  uint64
	Peers map[string]uint64
}

// hbTarget is a peer heartbeats are sent to.
type hbTarget struct {
	Name string
	Addr netip.AddrPort
}

type heartbeater struct {
	self     string
	interval time.Duration
	conn     net.PacketConn
	sealer   sealer
	now      func() time.Time
	kick     func()
	log      *slog.Logger

	// targets are the peers to send to, set by the ownership loop;
	// verdict is the last verdict, read by it.
	targets atomic.Pointer[[]hbTarget]
	verdict atomic.Pointer[hbVerdict]
	// versions are what the heartbeats carry, set by the loop (nil: none
	// yet).
	versions atomic.Pointer[hbVersions]
	// pathFailing: this member's data path fails (the heartbeats say so).
	pathFailing atomic.Bool

	// mu guards live, seq, heard and peerPathFailing, between the
	// heartbeater's own goroutines.
	mu   sync.Mutex
	live *liveness
	seq  uint64
	// heard are the versions each peer's last heartbeat carried (none
	// from a peer that sends none).
	heard map[string]ownerVersions
	// peerPathFailing are the peers whose last heartbeat said their data
	// path fails.
	peerPathFailing map[string]bool
	// rejected counts heartbeats dropped (not sealed with the key,
	// replayed, addressed elsewhere), logged once per kind.
	warned map[string]bool
}

func newHeartbeater(self string, o HeartbeatOptions, conn net.PacketConn, keys func() [][]byte, now func() time.Time, kick func(), log *slog.Logger) *heartbeater {
	h := &heartbeater{
		self: self, interval: o.Interval, conn: conn, sealer: sealer{keys: keys}, now: now, kick: kick, log: log,
		live: newLiveness(o.Interval, o.Multiplier), seq: uint64(now().UnixNano()), warned: map[string]bool{},
		heard: map[string]ownerVersions{}, peerPathFailing: map[string]bool{},
	}
	h.targets.Store(&[]hbTarget{})
	h.verdict.Store(&hbVerdict{})
	return h
}

// setTargets sets the peers to send to and judge: the live members that
// gossip a heartbeat port. The history of a peer that is no longer one
// is forgotten: if it comes back, it is a new process or was declared
// dead by memberlist, and it counts from its first heartbeat.
func (h *heartbeater) setTargets(t []hbTarget) {
	if old := *h.targets.Load(); slices.Equal(old, t) {
		return
	}
	h.targets.Store(&t)
	h.mu.Lock()
	for name := range h.live.peers {
		if !slices.ContainsFunc(t, func(x hbTarget) bool { return x.Name == name }) {
			h.live.forget(name)
			delete(h.heard, name)
		}
	}
	h.mu.Unlock()
	h.check(h.now(), true)
}

// forgetPeer drops the history of name: it joined memberlist again, a new
// process or one memberlist had declared dead, and counts from its first
// heartbeat. Without it, the silence of a process that restarted would
// count its successor down the moment it joins.
func (h *heartbeater) forgetPeer(name string) {
	h.mu.Lock()
	h.live.forget(name)
	delete(h.heard, name)
	h.mu.Unlock()
	h.check(h.now(), true)
}

// setPathFailing sets whether the heartbeats say this member's data path
// fails; a change is sent to every peer at once.
func (h *heartbeater) setPathFailing(b bool) {
	if h.pathFailing.Swap(b) != b {
		h.sendOnce(h.now())
	}
}

// peerPathFails reports whether name's last heartbeat said its data path
// fails.
func (h *heartbeater) peerPathFails(name string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.peerPathFailing[name]
}

// setVersions sets the versions the heartbeats carry from now on.
func (h *heartbeater) setVersions(v *hbVersions) { h.versions.Store(v) }

// heardVersions returns the versions each peer's last heartbeat
// carried, for the peers that send them.
func (h *heartbeater) heardVersions() map[string]ownerVersions {
	h.mu.Lock()
	defer h.mu.Unlock()
	return maps.Clone(h.heard)
}

// last is the last verdict.
func (h *heartbeater) last() *hbVerdict { return h.verdict.Load() }

// sendOnce sends one heartbeat to every target.
func (h *heartbeater) sendOnce(now time.Time) { h.send(*h.targets.Load(), now) }

func (h *heartbeater) send(targets []hbTarget, now time.Time) {
	if len(targets) == 0 {
		return
	}
	h.mu.Lock()
	reports := h.live.heard(now)
	first := h.seq + 1
	h.seq += uint64(len(targets))
	h.mu.Unlock()
	vs := h.versions.Load()
	for i, t := range targets {
		hb := heartbeat{Seq: first + uint64(i), From: h.self, To: t.Name, Reports: reports, PathFailing: h.pathFailing.Load()}
		if vs != nil {
			if copyOf, ok := vs.Peers[t.Name]; ok && vs.Self != 0 && copyOf != 0 {
				hb.Versions = &ownerVersions{Sender: vs.Self, Receiver: copyOf}
			}
		}
		b, err := h.sealer.seal(hb)
		if err != nil {
			h.warn("seal", "cannot seal heartbeats", "err", err)
			return
		}
		if _, err := h.conn.WriteTo(b, net.UDPAddrFromAddrPort(t.Addr)); err != nil {
			h.log.Debug("sending a heartbeat", "node", t.Name, "err", err)
		}
	}
}

// sendTo sends one heartbeat to the target named name now.
func (h *heartbeater) sendTo(name string, now time.Time) {
	i := slices.IndexFunc(*h.targets.Load(), func(t hbTarget) bool { return t.Name == name })
	if i < 0 {
		return
	}
	h.send([]hbTarget{(*h.targets.Load())[i]}, now)
}

// receive takes one datagram received at now.
func (h *heartbeater) receive(b []byte, now time.Time) {
	hb, err := h.sealer.open(b)
	if err != nil {
		h.warn("auth", "dropping heartbeats not sealed with the gossip key", "err", err)
		return
	}
	if hb.To != h.self || hb.From == h.self {
		h.warn("to", "dropping heartbeats addressed to another member", "to", hb.To, "from", hb.From)
		return
	}
	if !slices.ContainsFunc(*h.targets.Load(), func(t hbTarget) bool { return t.Name == hb.From }) {
		return // not a live member (yet): memberlist first
	}
	h.mu.Lock()
	var prev time.Time
	if p := h.live.peers[hb.From]; p != nil {
		prev = p.direct
	}
	ok := h.live.accept(hb.From, h.self, hb.Seq, now, hb.Reports)
	newVersions := false
	if ok {
		h.peerPathFailing[hb.From] = hb.PathFailing
	}
	if ok && hb.Versions != nil {
		old, had := h.heard[hb.From]
		newVersions = !had || old != *hb.Versions
		h.heard[hb.From] = *hb.Versions
	}
	h.mu.Unlock()
	if !ok {
		h.warn("replay", "dropping replayed or reordered heartbeats", "from", hb.From)
		return
	}
	if newVersions {
		h.kick() // the loop compares them with its copies (viewcheck.go)
	}
	if !prev.IsZero() && now.Sub(prev) > h.interval*3/2 {
		// After a gap, tell the sender at once that it is heard again,
		// without waiting for the next interval: it judges whether it is
		// heard from these reports (liveness.deafAfter).
		h.sendTo(hb.From, now)
	}
	h.check(now, true)
}

func (h *heartbeater) warn(kind, msg string, args ...any) {
	h.mu.Lock()
	seen := h.warned[kind]
	h.warned[kind] = true
	h.mu.Unlock()
	if !seen {
		h.log.Warn(msg, args...)
	}
}

// check recomputes the verdict at now and wakes the ownership loop when
// it changed. It returns when it may change next by time alone. With
// hold, it only takes members out of the verdict, never adds one: the
// receiver may be reading a backlog, later heartbeats of a peer still
// queued, and the sender's loop holds after it was not scheduled for a
// while (its receiver was not either).
func (h *heartbeater) check(now time.Time, hold bool) time.Time {
	targets := *h.targets.Load()
	names := make([]string, len(targets))
	for i, t := range targets {
		names[i] = t.Name
	}
	// Under mu from reading the old verdict to storing the new one: the
	// receiver, the loop and setTargets check concurrently.
	h.mu.Lock()
	v := &hbVerdict{}
	v.Silent, v.Unheard = h.live.verdict(names, now)
	next := h.live.next(now)
	old := h.verdict.Load()
	if hold {
		v.Silent = slices.DeleteFunc(v.Silent, func(n string) bool { return !slices.Contains(old.Silent, n) })
		v.Unheard = slices.DeleteFunc(v.Unheard, func(n string) bool { return !slices.Contains(old.Unheard, n) })
	}
	changed := !old.equal(v)
	if changed {
		h.verdict.Store(v)
	}
	h.mu.Unlock()
	if changed {
		for _, n := range v.Silent {
			if !slices.Contains(old.Silent, n) {
				h.log.Warn("member silent: no heartbeat, counted down", "node", n)
			}
		}
		for _, n := range old.Silent {
			if !slices.Contains(v.Silent, n) && slices.Contains(names, n) {
				h.log.Info("member heard again", "node", n)
			}
		}
		for _, n := range v.Unheard {
			if !slices.Contains(old.Unheard, n) && !slices.Contains(v.Silent, n) {
				h.log.Info("member unheard: not counted for the quorum", "node", n)
			}
		}
		h.kick()
	}
	return next
}

// backlog reports whether datagrams wait in the socket, unread: the
// receiver is behind (its goroutine was not scheduled), so no peer may
// be counted down for silence yet. A socket that cannot tell (a test's)
// has none.
func (h *heartbeater) backlog() bool {
	sc, ok := h.conn.(syscall.Conn)
	if !ok {
		return false
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	n := 0
	if err := raw.Control(func(fd uintptr) { n, _ = unix.IoctlGetInt(int(fd), unix.SIOCINQ) }); err != nil {
		return false
	}
	return n > 0
}

// Run sends and receives heartbeats until ctx ends, then closes the
// socket.
func (h *heartbeater) Run(ctx context.Context) {
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		buf := make([]byte, 2048)
		for {
			n, _, err := h.conn.ReadFrom(buf)
			if err != nil {
				if ctx.Err() == nil && !errors.Is(err, net.ErrClosed) {
					h.log.Warn("receiving heartbeats", "err", err)
				}
				if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
					return
				}
				continue
			}
			h.receive(buf[:n], h.now())
		}
	}()
	// The sender keeps a thread of its own, so a busy Go scheduler
	// does not delay it behind other goroutines.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	send := time.NewTicker(h.interval)
	defer send.Stop()
	// The verdict is checked at least four times per interval, and when
	// a timeout is due.
	poll := h.interval / 4
	wake := time.NewTimer(poll)
	defer wake.Stop()
	h.sendOnce(h.now())
	for {
		select {
		case <-ctx.Done():
			_ = h.conn.Close()
			wg.Wait()
			return
		case <-send.C:
			h.sendOnce(h.now())
		case <-wake.C:
		}
		now := h.now()
		// After this process was not scheduled for a while (a saturated
		// CPU, a paused VM), the heartbeats that came meanwhile may still
		// wait in the socket: hold the verdict a moment for the receiver
		// to read them.
		held := h.backlog()
		next := h.check(now, held)
		d := poll
		switch {
		case held:
			d = 2 * time.Millisecond
		case !next.IsZero() && next.Sub(now) < d:
			d = max(next.Sub(now)+time.Millisecond, time.Millisecond)
		}
		wake.Reset(d)
	}
}

// newHeartbeater opens the heartbeat socket and returns the heartbeater,
// or nil when heartbeats are off (Options, no gossip key, a test
// transport without Conn) or the socket cannot be opened: this member
// then gossips no heartbeat port and the others judge it by memberlist
// alone.
func (c *Cluster) newHeartbeater() *heartbeater {
	o := c.opts.Heartbeat
	if o.Off || c.keyring == nil || (c.opts.Transport != nil && o.Conn == nil) {
		return nil
	}
	conn, port := o.Conn, o.Port
	if conn == nil {
		addr := c.opts.BindAddr
		if !addr.IsValid() {
			addr = netip.IPv4Unspecified()
		}
		uc, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(addr, o.Port)))
		if err != nil {
			c.log.Warn("heartbeats off: cannot listen for them; failure detection is memberlist's alone",
				"addr", netip.AddrPortFrom(addr, o.Port), "err", err)
			return nil
		}
		conn = uc
		port = uint16(uc.LocalAddr().(*net.UDPAddr).Port)
	}
	c.hbPort.Store(uint32(port))
	c.log.Info("heartbeats on", "node", c.opts.Name, "port", port, "interval", o.Interval, "multiplier", o.Multiplier)
	kr := c.keyring
	keys := func() [][]byte {
		return append([][]byte{kr.GetPrimaryKey()}, kr.GetKeys()...)
	}
	return newHeartbeater(c.opts.Name, o, conn, keys, c.opts.Now, c.kick, c.log)
}
