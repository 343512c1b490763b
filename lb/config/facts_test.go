package config

import (
	"encoding/json"
	"strings"
	"testing"
)

// A member's facts give the verdict its own Apply gives: a version that
// needs a key the member's file lacks fails on the member's facts, naming
// the member and the field, and one it can take passes.
func TestFactsCheckMatchesTheMembersOwnApply(t *testing.T) {
	files := map[string]string{
		"full":        "node: {name: lb1, interface: eth0}\ncluster: {insecure: true, bindAddr: 10.0.0.1}\nbgp: {routerID: 10.0.0.1}\n",
		"nointerface": "node: {name: lb2}\ncluster: {insecure: true, bindAddr: 10.0.0.2}\n",
		"v6bind":      "node: {name: lb3, interface: eth0}\ncluster: {insecure: true, bindAddr: \"2001:db8::3\"}\n",
		"bindpeer":    "node: {name: lb4, interface: eth0}\ncluster: {insecure: true, bindAddr: 192.0.2.254}\n",
	}
	specs := map[string]struct {
		spec  string
		field map[string]string // by file: the field named, "" when it applies
	}{
		"nat": {`{"dataplane":{"method":"nat"},"pools":[{"name":"p","addresses":["192.0.2.100/30"]}]}`,
			map[string]string{}},
		"dr": {`{"dataplane":{"method":"dr"}}`,
			map[string]string{"nointerface": "node.interface"}},
		"static tunnel": {`{"services":[{"name":"s","vip":"192.0.2.9","method":"tunnel","ports":[{"port":80}],"backends":["10.1.0.1:80"]}]}`,
			map[string]string{"nointerface": "spec.services[0].method"}},
		"bgp": {`{"bgp":{"asn":64512,"peers":[{"address":"192.0.2.254","asn":64500}]}}`,
			map[string]string{"v6bind": "bgp.routerID", "nointerface": "", "bindpeer": "spec.bgp.peers[0].address"}},
	}
	for sname, sc := range specs {
		for fname, file := range files {
			t.Run(sname+"/"+fname, func(t *testing.T) {
				h := NewHost(fname, []byte(file), ".")
				_, own := h.Apply(json.RawMessage(sc.spec))
				got := h.Facts().Check("lbX", json.RawMessage(sc.spec))
				want := sc.field[fname]
				if (own == nil) != (len(got) == 0) {
					t.Fatalf("own Apply: %v; Check on its facts: %v: they disagree", own, got)
				}
				if want == "" {
					if len(got) > 0 {
						t.Fatalf("Check: %v, want none", got)
					}
					return
				}
				if len(got) == 0 {
					t.Fatalf("Check passed, want an error on %s", want)
				}
				e := got[0]
				if e.Field != want || e.Member != "lbX" || !strings.Contains(e.Msg, "lbX") {
					t.Errorf("Check: field %q member %q msg %q; want field %q naming lbX", e.Field, e.Member, e.Msg, want)
				}
			})
		}
	}
}

func TestFactsRoundTrip(t *testing.T) {
	f := Facts{Interface: "eth0", RouterID: "10.0.0.1", BindAddr: "2001:db8::1"}
	got, err := DecodeFacts(f.Encode())
	if err != nil || got != f {
		t.Fatalf("DecodeFacts(Encode) = %+v, %v; want %+v", got, err, f)
	}
	if n := len(f.Encode()); n > 100 {
		t.Errorf("encoded facts take %d bytes; they share memberlist's 512-byte metadata", n)
	}
}
