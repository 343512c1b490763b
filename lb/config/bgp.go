package config

import (
	"fmt"
	"net/netip"
	"time"

	"go4.org/netipx"
	"gopkg.in/yaml.v3"
)

// Announce says how a VIP is made reachable.
type Announce string

const (
	// AnnounceL2: one owner host holds the VIP and answers ARP/NDP for it
	// (the default).
	AnnounceL2 Announce = "l2"
	// AnnounceBGP: every healthy host advertises the VIP over BGP with
	// itself as next hop, and the routers spread flows with ECMP.
	AnnounceBGP Announce = "bgp"
)

var announces = []string{string(AnnounceL2), string(AnnounceBGP)}

// BGP configures the BGP speaker that advertises the `announce: bgp` VIPs.
type BGP struct {
	// ASN is this appliance cluster's autonomous system.
	ASN uint32
	// RouterID is this host's BGP identifier, an IPv4 address; it
	// defaults to cluster.bindAddr.
	RouterID netip.Addr
	Peers    []BGPPeer
	// WithdrawDelay is how long a stopping host keeps forwarding after
	// it withdrew its routes, so that the routers move new flows away
	// before it exits.
	WithdrawDelay time.Duration
}

// BGPPeer is one router this host opens a session with.
type BGPPeer struct {
	Address netip.Addr
	ASN     uint32
	// Password is the TCP MD5 signature key (RFC 2385); empty: none.
	Password string
	// HoldTime is proposed to the peer; keepalives are sent every third
	// of it.
	HoldTime time.Duration
	// BFD, when set, runs a BFD session beside the BGP session.
	BFD             *BFD
	GracefulRestart bool
}

// BFD configures a peer's BFD session (RFC 5880, single hop).
type BFD struct {
	MinRx, MinTx time.Duration
	Multiplier   int
}

// Defaults of the bgp section.
const (
	DefaultHoldTime      = 9 * time.Second
	DefaultWithdrawDelay = 2 * time.Second
	DefaultBFDInterval   = 300 * time.Millisecond
	DefaultBFDMultiplier = 3
)

// BGPSet is the set of addresses announced over BGP: those of the pools
// and static services that say `announce: bgp`.
func (c *Config) BGPSet() *netipx.IPSet {
	var b netipx.IPSetBuilder
	for _, p := range c.Pools {
		if p.Announce == AnnounceBGP {
			for _, r := range p.Ranges {
				b.AddRange(r)
			}
		}
	}
	for _, s := range c.Services {
		if s.Announce == AnnounceBGP && s.VIP.IsValid() {
			b.Add(s.VIP)
		}
	}
	s, _ := b.IPSet()
	return s
}

// announce decodes an `announce` key (of a pool or a static service).
func (p *parser) announce(n *yaml.Node, path string, dst *Announce) {
	s := string(AnnounceL2)
	p.d.enum(n, path, announces, &s)
	*dst = Announce(s)
	if *dst == AnnounceBGP {
		p.bgpAnnounce = append(p.bgpAnnounce, n)
		p.bgpAnnouncePath = append(p.bgpAnnouncePath, path)
	}
}

// bgp decodes the bgp section.
func (p *parser) bgp(n *yaml.Node, path string) {
	d := p.d
	if resolve(n) == nil || isNull(resolve(n)) {
		return // `bgp:` with nothing: no BGP, as without the key
	}
	b := &BGP{WithdrawDelay: DefaultWithdrawDelay}
	p.cfg.BGP = b
	p.bgpNode = n
	asnGiven := false
	d.mapping(n, path, map[string]func(*yaml.Node, string){
		"asn": func(n *yaml.Node, path string) { asnGiven = given(n); p.asn(n, path, &b.ASN) },
		"routerID": func(n *yaml.Node, path string) {
			var s string
			d.str(n, path, &s)
			a, err := netip.ParseAddr(s)
			if err != nil || !a.Is4() || a.IsUnspecified() {
				d.errorf(n, path, "%q is not an IPv4 address (a BGP identifier is an IPv4 address, even on IPv6 sessions)", s)
				return
			}
			b.RouterID = a
		},
		"withdrawDelay": func(n *yaml.Node, path string) {
			d.durationIn(n, path, time.Millisecond, MaxWithdrawDelay, "a stop waits this long after withdrawing, within the unit's 30 s TimeoutStopSec", &b.WithdrawDelay)
		},
		"peers": func(n *yaml.Node, path string) {
			seen := map[netip.Addr]int{}
			d.list(n, path, func(i int, item *yaml.Node, path string) {
				peer := p.bgpPeer(item, path)
				if prev, ok := seen[peer.Address]; ok && peer.Address.IsValid() {
					d.errorf(item, join(path, "address"), "%s is already bgp.peers[%d]", peer.Address, prev)
				}
				seen[peer.Address] = i
				b.Peers = append(b.Peers, peer)
			})
		},
	})
	if resolve(n) == nil || resolve(n).Kind != yaml.MappingNode {
		return
	}
	if !asnGiven {
		d.errorf(n, join(path, "asn"), "this cluster's AS number is required")
	}
	if len(b.Peers) == 0 {
		d.errorf(n, join(path, "peers"), "at least one peer is required")
	}
}

func (p *parser) bgpPeer(item *yaml.Node, path string) BGPPeer {
	d := p.d
	peer := BGPPeer{HoldTime: DefaultHoldTime}
	asnGiven := false
	d.mapping(item, path, map[string]func(*yaml.Node, string){
		"address": func(n *yaml.Node, path string) {
			var s string
			d.str(n, path, &s)
			a, err := netip.ParseAddr(s)
			if err != nil || a.Zone() != "" || a.Is4In6() || a.IsUnspecified() || a.IsMulticast() {
				d.errorf(n, path, "%q is not a unicast IP address", s)
				return
			}
			peer.Address = a
		},
		"asn": func(n *yaml.Node, path string) { asnGiven = given(n); p.asn(n, path, &peer.ASN) },
		"password": func(n *yaml.Node, path string) {
			d.str(n, path, &peer.Password)
			if peer.Password == SecretPlaceholder {
				// What the API shows for a stored password: a spec that
				// carries it back keeps the password stored for the
				// peer's address, so it reaches here only where none is.
				d.errorf(n, path, "%q stands for a stored password, and none is stored for a peer with this address: give the password itself", SecretPlaceholder)
			} else if len(peer.Password) > 80 {
				d.errorf(n, path, "a TCP MD5 key has at most 80 bytes, this one %d", len(peer.Password))
			}
		},
		"holdTime": func(n *yaml.Node, path string) {
			d.duration(n, path, &peer.HoldTime)
			if h := peer.HoldTime; h < 3*time.Second || h > 65535*time.Second || h%time.Second != 0 {
				d.errorf(n, path, "%s: a hold time is whole seconds from 3s to 65535s (RFC 4271)", h)
			}
		},
		"gracefulRestart": func(n *yaml.Node, path string) { d.boolean(n, path, &peer.GracefulRestart) },
		"bfd": func(n *yaml.Node, path string) {
			bfd := &BFD{MinRx: DefaultBFDInterval, MinTx: DefaultBFDInterval, Multiplier: DefaultBFDMultiplier}
			interval := func(dst *time.Duration) func(*yaml.Node, string) {
				return func(n *yaml.Node, path string) {
					d.duration(n, path, dst)
					if *dst < 10*time.Millisecond || *dst > time.Minute || *dst%time.Microsecond != 0 {
						d.errorf(n, path, "%s is out of range: use 10ms to 1m", *dst)
					}
				}
			}
			d.mapping(n, path, map[string]func(*yaml.Node, string){
				"minRx":      interval(&bfd.MinRx),
				"minTx":      interval(&bfd.MinTx),
				"multiplier": func(n *yaml.Node, path string) { d.intField(n, path, 1, 255, &bfd.Multiplier) },
			})
			peer.BFD = bfd
		},
	})
	if resolve(item) != nil && resolve(item).Kind == yaml.MappingNode {
		if !peer.Address.IsValid() {
			d.errorf(item, join(path, "address"), "every peer needs an address")
		}
		if !asnGiven {
			d.errorf(item, join(path, "asn"), "every peer needs an AS number")
		}
	}
	return peer
}

// asn decodes an AS number; 0, AS_TRANS (23456) and the last AS numbers
// of the 16- and 32-bit spaces are reserved (RFC 6793, RFC 7300).
func (p *parser) asn(n *yaml.Node, path string, dst *uint32) {
	var v int64
	if !p.d.integer(n, path, 1, 1<<32-1, &v) {
		return
	}
	switch v {
	case 23456, 65535, 1<<32 - 1:
		p.d.errorf(n, path, "%d is a reserved AS number", v)
		return
	}
	*dst = uint32(v)
}

// checkBGP checks what the bgp section and the `announce: bgp` pools and
// services need of each other.
func (p *parser) checkBGP() {
	cfg, d := p.cfg, p.d
	for i, at := range p.bgpAnnounce {
		if cfg.BGP == nil {
			d.errorf(at, p.bgpAnnouncePath[i], "announce: bgp needs a bgp section (asn, peers)")
		}
	}
	b := cfg.BGP
	if b == nil {
		return
	}
	if !b.RouterID.IsValid() {
		if a := cfg.Cluster.BindAddr; a.Is4() && !a.IsUnspecified() {
			b.RouterID = a
		} else {
			d.errorf(p.bgpNode, "bgp.routerID", "required when cluster.bindAddr is not an IPv4 address")
		}
	}
	for i, peer := range b.Peers {
		if peer.Address.IsValid() && peer.Address == cfg.Cluster.BindAddr {
			d.errorf(p.bgpNode, fmt.Sprintf("bgp.peers[%d].address", i), "%s is this host's own cluster.bindAddr", peer.Address)
		}
	}
}

// given reports whether a key has a value (`asn:` alone has none).
func given(n *yaml.Node) bool { return resolve(n) != nil && !isNull(resolve(n)) }
