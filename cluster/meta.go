package cluster

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"time"

	"github.com/hashicorp/memberlist"
)

// Meta is what a member gossips about itself.
type Meta struct {
	// Healthy: the member's interface is up and its dataplane programmed.
	Healthy bool
	// Draining: the member is handing its VIPs over and takes no new ones.
	Draining bool
	// Networks are the prefixes on the member's interface; it prefers the
	// VIPs inside them.
	Networks []netip.Prefix
	// Held is the digest of the VIPs the member holds that are assigned
	// to it, used to confirm a handover.
	Held Digest
	// Leaving: the member is about to leave the cluster. After a stop it
	// has handed everything over and the others leave it out of the
	// quorum; together with Restarting it leaves for a graceful restart
	// and keeps its VIPs for its next process.
	Leaving bool
	// Restarting: the member's process is restarting (graceful restart):
	// its VIPs stay on its interface, and the others keep it as a
	// candidate owner, present for the quorum, until it is back or
	// RestartHold has passed since it left. A new process gossips it
	// during its start-up grace, while it keeps the VIPs it adopted.
	Restarting bool
	// RestartHold is the member's cluster.restartHold, the lifetime of
	// its addresses: how long its VIPs can outlive its process.
	RestartHold time.Duration
	// Gave changes each time the member lets go of VIPs it held (it
	// starts at a random value in each process). The owners of VIPs it
	// may have announced announce them again when it changes.
	Gave uint32
	// ConfigVersion is the version of the cluster configuration the
	// member runs (0: none yet, or no Options.Config).
	ConfigVersion uint64
	// ConfigID names that version exactly: its number and the start of
	// its hash (Doc.ID, shortened), so that two versions of one number
	// are told apart ("" when unknown).
	ConfigID string
	// Unapplied is the committed version this member cannot apply over
	// its own keys (0: none): it owns no VIPs until one it can take is
	// committed.
	Unapplied uint64
	// Facts are the member's host-local keys a configuration version can
	// fail on (lb/config.Facts, encoded by the app; nil: unknown).
	Facts []byte
	// Refused are the VIPs the member's kernel would not add: every
	// member leaves it out when assigning them (Assign), and it stays
	// eligible for every other VIP.
	Refused []netip.Addr
	// DataPathFailing: the member's data path (vip/datapath) does not
	// answer. It still owns VIPs until it reports itself unhealthy, which
	// it does only while another member's path works.
	DataPathFailing bool
	// Witness: the member is an `edgelb witness`, a voter of the quorum
	// and of the consensus log that never owns a VIP (Assign leaves it
	// out) and is never healthy: it has no interface or dataplane.
	Witness bool
	// HeartbeatPort is the UDP port the member receives heartbeats on
	// (heartbeat.go); 0: it runs none (heartbeats off, insecure, or an
	// older release), and the others judge it by memberlist alone.
	HeartbeatPort uint16
	// OwnerVersion numbers what Assign reads of this Meta (Eligible,
	// Networks, Refused): it goes up each time that changes, from the
	// wall clock at the process's start, so that a copy can be told
	// behind without ambiguity (viewcheck.go). 0: an older release.
	OwnerVersion uint64
}

// Member is one member as this member sees it: a live one, or one that
// left for a restart and is held for it (Absent).
type Member struct {
	Name string
	Addr netip.AddrPort
	// Absent: the member left for a graceful restart and is not back yet;
	// Meta is what it gossiped last (Restarting).
	Absent bool
	// Silent: the member gossips a heartbeat port, was heard, and
	// nothing was heard of it for the timeout and an interval (or it is
	// back for less than the timeout): it counts as gone for VIP
	// ownership while memberlist still lists it (liveness.go).
	Silent bool
	// Unheard: the member does not count towards this one's quorum —
	// Silent, nothing heard of it for the timeout, or its heartbeats say
	// it no longer hears this one — but unless Silent it stays a
	// candidate owner (liveness.go).
	Unheard bool
	Meta
}

// wireMeta is Meta's gossiped form; short keys keep it well under
// memberlist's 512-byte limit.
type wireMeta struct {
	V        int      `json:"v"`
	Healthy  bool     `json:"h,omitempty"`
	Draining bool     `json:"d,omitempty"`
	Leaving  bool     `json:"l,omitempty"`
	Networks []string `json:"n,omitempty"`
	HeldN    int      `json:"hn,omitempty"`
	HeldSum  uint64   `json:"hs,omitempty"`
	// Restarting and RestartHold (milliseconds).
	Restarting  bool   `json:"r,omitempty"`
	RestartHold int64  `json:"rh,omitempty"`
	Gave        uint32 `json:"g,omitempty"`
	CV          uint64 `json:"cv,omitempty"`
	CI          string `json:"ci,omitempty"`
	U           uint64 `json:"u,omitempty"`
	// Facts, kept whole like Refused.
	F json.RawMessage `json:"f,omitempty"`
	// Refused VIPs.
	Refused []string `json:"x,omitempty"`
	// DataPathFailing.
	DF bool `json:"df,omitempty"`
	// Witness.
	W bool `json:"w,omitempty"`
	// HeartbeatPort.
	HB uint16 `json:"hb,omitempty"`
	// OwnerVersion.
	OV uint64 `json:"ov,omitempty"`
}

const metaVersion = 1

// encodeMeta encodes m in at most limit bytes. Only global unicast
// networks are gossiped (a VIP is never link-local), and those that do not
// fit are dropped from the end.
func encodeMeta(m Meta, limit int) []byte {
	b, _ := encodeMetaDropped(m, limit)
	return b
}

// encodeMetaDropped is encodeMeta, also returning how many gossipable
// networks did not fit. The refused VIPs are never cut short, since the
// others would give this member a VIP it cannot hold: when they do not fit
// even without networks, the member is gossiped unhealthy, which refuses
// everything (and the Cluster says why).
func encodeMetaDropped(m Meta, limit int) ([]byte, int) {
	w := wireMeta{V: metaVersion, Healthy: m.Healthy, Draining: m.Draining, Leaving: m.Leaving, HeldN: m.Held.Count, HeldSum: m.Held.Sum,
		Restarting: m.Restarting, RestartHold: m.RestartHold.Milliseconds(), Gave: m.Gave, CV: m.ConfigVersion,
		CI: m.ConfigID, U: m.Unapplied, DF: m.DataPathFailing, W: m.Witness, HB: m.HeartbeatPort, OV: m.OwnerVersion}
	if json.Valid(m.Facts) {
		w.F = m.Facts
	}
	for _, p := range m.Networks {
		if p.Addr().IsGlobalUnicast() {
			w.Networks = append(w.Networks, p.Masked().String())
		}
	}
	for _, v := range m.Refused {
		w.Refused = append(w.Refused, v.String())
	}
	all := len(w.Networks)
	for {
		b, err := json.Marshal(w)
		if err == nil && len(b) <= limit {
			return b, all - len(w.Networks)
		}
		switch {
		case len(w.Networks) > 0:
			w.Networks = w.Networks[:len(w.Networks)-1]
		case len(w.Refused) > 0:
			w.Refused, w.Healthy = nil, false
		default:
			return nil, all
		}
	}
}

// gossipedMeta is m as the other members decode it from this member's
// gossip, and how many networks were left out to fit. A member decides
// its own ownership from it, never from what it has locally, so that it
// and its peers compute the same owners.
func gossipedMeta(m Meta) (Meta, int) {
	b, dropped := encodeMetaDropped(m, memberlist.MetaMaxSize)
	seen, err := decodeMeta(b)
	if err != nil {
		return Meta{}, dropped // the others see it unhealthy as well
	}
	return seen, dropped
}

// decodeMeta decodes a member's metadata. A member whose metadata cannot
// be read is treated as unhealthy.
func decodeMeta(b []byte) (Meta, error) {
	var w wireMeta
	if err := json.Unmarshal(b, &w); err != nil {
		return Meta{}, fmt.Errorf("decoding member metadata: %w", err)
	}
	m := Meta{Healthy: w.Healthy, Draining: w.Draining, Leaving: w.Leaving, Held: Digest{Count: w.HeldN, Sum: w.HeldSum},
		Restarting: w.Restarting, RestartHold: time.Duration(w.RestartHold) * time.Millisecond, Gave: w.Gave, ConfigVersion: w.CV,
		ConfigID: w.CI, Unapplied: w.U, Facts: []byte(w.F), DataPathFailing: w.DF, Witness: w.W, HeartbeatPort: w.HB,
		OwnerVersion: w.OV}
	for _, s := range w.Networks {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return Meta{}, fmt.Errorf("decoding member metadata: network %q: %w", s, err)
		}
		m.Networks = append(m.Networks, p)
	}
	for _, s := range w.Refused {
		v, err := netip.ParseAddr(s)
		if err != nil {
			return Meta{}, fmt.Errorf("decoding member metadata: refused VIP %q: %w", s, err)
		}
		m.Refused = append(m.Refused, v)
	}
	return m, nil
}
