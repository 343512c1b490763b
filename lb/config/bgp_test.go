package config

import (
	"net/netip"
	"strings"
	"testing"
	"time"
)

// The contract of DESIGN.md ("Scale-out: BGP and ECMP").
const bgpExample = `cluster: {insecure: true, bindAddr: 10.0.0.11}
bgp:
  asn: 64512
  routerID: 10.0.0.11
  peers:
    - address: 10.0.0.1
      asn: 64500
      password: ""
      holdTime: 9s
      bfd: {minRx: 300ms, minTx: 300ms, multiplier: 3}
      gracefulRestart: true
    - {address: "2001:db8::1", asn: 64512, password: s3cret}
pools:
  - {name: edge, addresses: ["198.51.100.0/28"], announce: bgp}
  - {name: lan, addresses: ["192.0.2.0/28"]}
services:
  - {name: dns, vip: 198.51.100.53, announce: bgp, ports: [{port: 53, protocol: UDP}], backends: ["10.0.1.5:53"]}
  - {name: web, vip: 192.0.2.80, announce: l2, ports: [{port: 80}], backends: ["10.0.1.5:80"]}
`

func TestBGPConfig(t *testing.T) {
	cfg, err := Load(writeConfig(t, bgpExample))
	if err != nil {
		t.Fatalf("refused:\n%v", err)
	}
	b := cfg.BGP
	if b == nil || b.ASN != 64512 || b.RouterID != netip.MustParseAddr("10.0.0.11") || len(b.Peers) != 2 || b.WithdrawDelay != DefaultWithdrawDelay {
		t.Fatalf("bgp = %+v", b)
	}
	p := b.Peers[0]
	if p.Address != netip.MustParseAddr("10.0.0.1") || p.ASN != 64500 || p.HoldTime != 9*time.Second || !p.GracefulRestart ||
		p.BFD == nil || *p.BFD != (BFD{MinRx: 300 * time.Millisecond, MinTx: 300 * time.Millisecond, Multiplier: 3}) {
		t.Errorf("peers[0] = %+v", p)
	}
	if p := b.Peers[1]; p.Password != "s3cret" || p.HoldTime != DefaultHoldTime || p.BFD != nil || p.GracefulRestart {
		t.Errorf("peers[1] = %+v (defaults)", p)
	}
	if cfg.Pools[0].Announce != AnnounceBGP || cfg.Pools[1].Announce == AnnounceBGP || cfg.Services[0].Announce != AnnounceBGP {
		t.Errorf("announce: pools %+v services %+v", cfg.Pools, cfg.Services)
	}
	set := cfg.BGPSet()
	for a, want := range map[string]bool{"198.51.100.0": true, "198.51.100.15": true, "198.51.100.53": true, "198.51.100.16": false, "192.0.2.1": false, "192.0.2.80": false} {
		if got := set.Contains(netip.MustParseAddr(a)); got != want {
			t.Errorf("BGPSet contains %s = %v, want %v", a, got, want)
		}
	}
}

func TestBGPRouterIDDefaultsToBindAddr(t *testing.T) {
	cfg, err := Load(writeConfig(t, "cluster: {insecure: true, bindAddr: 10.0.0.12}\nbgp: {asn: 64512, peers: [{address: 10.0.0.1, asn: 64500}]}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.BGP.RouterID != netip.MustParseAddr("10.0.0.12") {
		t.Errorf("routerID = %s", cfg.BGP.RouterID)
	}
}

func TestBadBGPConfigs(t *testing.T) {
	base := "cluster: {insecure: true, bindAddr: 10.0.0.11}\n"
	peer := "bgp: {asn: 64512, peers: [{address: 10.0.0.1, asn: 64500}]}\n"
	cases := []struct{ name, yaml, want string }{
		{"bgp pool without bgp", base + "pools:\n  - {name: e, addresses: [198.51.100.0/28], announce: bgp}\n", `config.yaml:3: pools[0].announce: announce: bgp needs a bgp section`},
		{"bgp service without bgp", base + "services:\n  - name: s\n    vip: 198.51.100.1\n    announce: bgp\n    ports: [{port: 80}]\n", `config.yaml:5: services[0].announce: announce: bgp needs a bgp section`},
		{"bad announce", base + peer + "pools:\n  - {name: e, addresses: [198.51.100.0/28], announce: ospf}\n", `config.yaml:4: pools[0].announce: "ospf" is not one of l2, bgp`},
		{"empty bgp section with a bgp pool", base + "bgp:\npools:\n  - {name: e, addresses: [198.51.100.0/28], announce: bgp}\n", `pools[0].announce: announce: bgp needs a bgp section`},
		{"bgp not a mapping", base + "bgp: [64512]\n", `config.yaml:2: bgp: must be a mapping`},
		{"no asn", base + "bgp: {peers: [{address: 10.0.0.1, asn: 64500}]}\n", `config.yaml:2: bgp.asn: this cluster's AS number is required`},
		{"empty asn", base + "bgp:\n  asn:\n  peers: [{address: 10.0.0.1, asn: 64500}]\n", `config.yaml:3: bgp.asn: this cluster's AS number is required`},
		{"reserved asn", base + "bgp: {asn: 23456, peers: [{address: 10.0.0.1, asn: 64500}]}\n", `bgp.asn: 23456 is a reserved AS number`},
		{"asn out of range", base + "bgp: {asn: 4294967296, peers: [{address: 10.0.0.1, asn: 64500}]}\n", `bgp.asn: 4294967296 is out of range`},
		{"asn not a number", base + "bgp: {asn: AS64512, peers: [{address: 10.0.0.1, asn: 64500}]}\n", `bgp.asn: "AS64512" is not a whole number`},
		{"no peers", base + "bgp: {asn: 64512}\n", `bgp.peers: at least one peer is required`},
		{"peer without asn", base + "bgp:\n  asn: 64512\n  peers:\n    - {address: 10.0.0.1}\n", `config.yaml:5: bgp.peers[0].asn: every peer needs an AS number`},
		{"peer without address", base + "bgp: {asn: 64512, peers: [{asn: 1}]}\n", `bgp.peers[0].address: every peer needs an address`},
		{"bad peer address", base + "bgp: {asn: 64512, peers: [{address: router1, asn: 1}]}\n", `bgp.peers[0].address: "router1" is not a unicast IP address`},
		{"duplicate peer", base + "bgp:\n  asn: 64512\n  peers:\n    - {address: 10.0.0.1, asn: 1}\n    - {address: 10.0.0.1, asn: 2}\n", `config.yaml:6: bgp.peers[1].address: 10.0.0.1 is already bgp.peers[0]`},
		{"peer is this host", base + "bgp: {asn: 64512, peers: [{address: 10.0.0.11, asn: 1}]}\n", `bgp.peers[0].address: 10.0.0.11 is this host's own cluster.bindAddr`},
		{"short hold time", base + "bgp: {asn: 64512, peers: [{address: 10.0.0.1, asn: 1, holdTime: 1s}]}\n", `bgp.peers[0].holdTime: 1s: a hold time is whole seconds from 3s to 65535s`},
		{"long password", base + "bgp: {asn: 64512, peers: [{address: 10.0.0.1, asn: 1, password: " + strings.Repeat("x", 81) + "}]}\n", `bgp.peers[0].password: a TCP MD5 key has at most 80 bytes`},
		{"the API's placeholder as a password", base + "bgp: {asn: 64512, peers: [{address: 10.0.0.1, asn: 1, password: \"(secret)\"}]}\n", `config.yaml:2: bgp.peers[0].password: "(secret)" stands for a stored password, and none is stored for a peer with this address: give the password itself`},
		{"bfd interval", base + "bgp: {asn: 64512, peers: [{address: 10.0.0.1, asn: 1, bfd: {minRx: 1ms}}]}\n", `bgp.peers[0].bfd.minRx: 1ms is out of range`},
		{"bfd multiplier", base + "bgp: {asn: 64512, peers: [{address: 10.0.0.1, asn: 1, bfd: {multiplier: 0}}]}\n", `bgp.peers[0].bfd.multiplier: 0 is out of range`},
		{"unknown bgp key", base + "bgp: {asn: 64512, as: 1, peers: [{address: 10.0.0.1, asn: 1}]}\n", `bgp.as: unknown key`},
		{"router ID not IPv4", base + "bgp: {asn: 64512, routerID: \"2001:db8::1\", peers: [{address: 10.0.0.1, asn: 1}]}\n", `bgp.routerID: "2001:db8::1" is not an IPv4 address`},
		{"no router ID", "cluster: {insecure: true, bindAddr: \"2001:db8::11\"}\n" + peer, `config.yaml:2: bgp.routerID: required when cluster.bindAddr is not an IPv4 address`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) { refused(t, c.yaml, c.want) })
	}
}
