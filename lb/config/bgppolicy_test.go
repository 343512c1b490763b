package config

import (
	"net/netip"
	"slices"
	"strings"
	"testing"
)

func TestBGPPolicyConfig(t *testing.T) {
	cfg, err := Load(writeConfig(t, `cluster: {insecure: true, bindAddr: 10.0.0.11}
bgp: {asn: 64512, peers: [{address: 10.0.0.1, asn: 64500}]}
pools:
  - name: edge
    addresses: ["198.51.100.0/28"]
    announce: bgp
    bgp: {communities: ["65000:100", no-export, "65000:100"], largeCommunities: ["65000:1:2"], localPref: 150}
  - {name: plain, addresses: ["198.51.100.16/28"], announce: bgp}
services:
  - name: dns
    vip: 198.51.100.53
    announce: bgp
    bgp: {communities: ["65000:200"], localPref: 0}
    ports: [{port: 53, protocol: UDP}]
    backends: ["10.0.1.5:53"]
`))
	if err != nil {
		t.Fatalf("refused:\n%v", err)
	}
	pool := cfg.Pools[0].BGP
	if pool == nil || !slices.Equal(pool.Communities, []Community{65000<<16 | 100, 0xFFFFFF01}) ||
		!slices.Equal(pool.LargeCommunities, []LargeCommunity{{65000, 1, 2}}) || pool.LocalPref == nil || *pool.LocalPref != 150 {
		t.Fatalf("pools[0].bgp = %+v", pool)
	}
	if cfg.Pools[1].BGP != nil {
		t.Errorf("pools[1].bgp = %+v, want nil", cfg.Pools[1].BGP)
	}
	if got := BGPPolicyOf(cfg.Pools, netip.MustParseAddr("198.51.100.3")); !got.Equal(*pool) {
		t.Errorf("BGPPolicyOf(edge address) = %+v", got)
	}
	if got := BGPPolicyOf(cfg.Pools, netip.MustParseAddr("198.51.100.20")); !got.IsZero() {
		t.Errorf("BGPPolicyOf(plain address) = %+v", got)
	}
	s := cfg.Services[0].BGP
	if s == nil || s.LocalPref == nil || *s.LocalPref != 0 {
		t.Fatalf("services[0].bgp = %+v", s)
	}
	// The service's communities add to the pool's; its local-pref
	// replaces the pool's.
	m := pool.Merge(*s)
	if got := communityStrings(m.Communities); !slices.Equal(got, []string{"65000:100", "65000:200", "no-export"}) || *m.LocalPref != 0 ||
		len(m.LargeCommunities) != 1 {
		t.Errorf("merged = %v %+v", got, m)
	}
	if m := (BGPPolicy{}).Merge(BGPPolicy{}); !m.IsZero() {
		t.Errorf("empty merge = %+v", m)
	}
}

func communityStrings(cs []Community) []string {
	var out []string
	for _, c := range cs {
		out = append(out, c.String())
	}
	return out
}

func TestParseCommunities(t *testing.T) {
	good := map[string][]string{
		"65000:100":               {"65000:100"},
		" 65000:100 , no-export,": {"65000:100", "no-export"},
		"NO-ADVERTISE,blackhole":  {"blackhole", "no-advertise"},
		"local-as":                {"no-export-subconfed"},
		"65535:65281":             {"no-export"},
		"1:0,65534:65535,1:0":     {"1:0", "65534:65535"},
		"":                        nil,
	}
	for in, want := range good {
		got, err := ParseCommunities(in)
		if err != nil || !slices.Equal(communityStrings(got), want) {
			t.Errorf("ParseCommunities(%q) = %v, %v; want %v", in, communityStrings(got), err, want)
		}
	}
	for in, want := range map[string]string{
		"65000":             `"65000" is not a community: use ASN:VALUE`,
		"65536:1":           `"65536:1" is not a community`,
		"65000:-1":          `"65000:-1" is not a community`,
		"0:100":             `"0:100" is in a reserved range`,
		"65535:7":           `"65535:7" is in a reserved range`,
		"graceful-shutdown": `edgelb adds graceful-shutdown (65535:0) itself`,
		"65535:0":           `"65535:0" is graceful-shutdown`,
		"65000:1,gold":      `"gold" is not a community`,
	} {
		if _, err := ParseCommunities(in); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ParseCommunities(%q) = %v, want %q", in, err, want)
		}
	}
	if got, err := ParseLargeCommunities("65000:1:2, 4294967295:0:7,65000:1:2"); err != nil || len(got) != 2 || got[1].String() != "4294967295:0:7" {
		t.Errorf("ParseLargeCommunities = %v, %v", got, err)
	}
	for _, in := range []string{"65000:1", "65000:1:2:3", "4294967296:1:2", "a:b:c"} {
		if _, err := ParseLargeCommunities(in); err == nil || !strings.Contains(err.Error(), "is not a large community") {
			t.Errorf("ParseLargeCommunities(%q) = %v", in, err)
		}
	}
	if v, err := ParseLocalPref(" 200 "); err != nil || v != 200 {
		t.Errorf("ParseLocalPref = %d, %v", v, err)
	}
	for _, in := range []string{"-1", "high", "4294967296"} {
		if _, err := ParseLocalPref(in); err == nil {
			t.Errorf("ParseLocalPref(%q) accepted", in)
		}
	}
}

func TestBadBGPPolicies(t *testing.T) {
	base := "cluster: {insecure: true, bindAddr: 10.0.0.11}\nbgp: {asn: 64512, peers: [{address: 10.0.0.1, asn: 64500}]}\n"
	cases := []struct{ name, yaml, want string }{
		{"policy on an l2 pool", base + "pools:\n  - {name: e, addresses: [198.51.100.0/28], bgp: {localPref: 200}}\n", `config.yaml:4: pools[0].bgp: communities and localPref apply to routes: only with announce: bgp`},
		{"policy on an l2 service", base + "services:\n  - {name: s, vip: 198.51.100.1, announce: l2, bgp: {communities: [\"65000:1\"]}, ports: [{port: 80}]}\n", `services[0].bgp: communities and localPref apply to routes: only with announce: bgp`},
		{"bad community", base + "pools:\n  - name: e\n    addresses: [198.51.100.0/28]\n    announce: bgp\n    bgp:\n      communities: [\"65000:1\", \"70000:1\"]\n", `config.yaml:8: pools[0].bgp.communities[1]: "70000:1" is not a community`},
		{"graceful-shutdown configured", base + "pools:\n  - {name: e, addresses: [198.51.100.0/28], announce: bgp, bgp: {communities: [graceful-shutdown]}}\n", `pools[0].bgp.communities[0]: "graceful-shutdown": edgelb adds graceful-shutdown (65535:0) itself`},
		{"bad large community", base + "pools:\n  - {name: e, addresses: [198.51.100.0/28], announce: bgp, bgp: {largeCommunities: [\"65000:1\"]}}\n", `pools[0].bgp.largeCommunities[0]: "65000:1" is not a large community`},
		{"bad local-pref", base + "pools:\n  - {name: e, addresses: [198.51.100.0/28], announce: bgp, bgp: {localPref: -5}}\n", `pools[0].bgp.localPref: -5 is out of range`},
		{"unknown policy key", base + "pools:\n  - {name: e, addresses: [198.51.100.0/28], announce: bgp, bgp: {med: 5}}\n", `pools[0].bgp.med: unknown key`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) { refused(t, c.yaml, c.want) })
	}
}
