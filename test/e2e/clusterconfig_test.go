package e2e

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/edgelb/edgelb/api"
	"github.com/edgelb/edgelb/test/nslab"
)

// A static service applied on h1 (edgelb config apply, PUT
// /api/v1/config) reaches h2 and h3 over the gossip: each runs the new
// version, lists the service, and exactly one host holds its VIP, which
// answers.
func TestClusterConfigurationChangeReachesEveryHost(t *testing.T) {
	l := startCluster(t, 3)
	h1 := l.Hosts[0]
	vip := netip.MustParseAddr("10.99.0.150")
	spec := filepath.Join(l.Dir, "spec.yaml")
	nslab.WriteFile(t, spec, fmt.Sprintf(`services:
  - {name: web4, vip: %s, ports: [{port: 8080}]}
  - {name: web6, vip: "%s", ports: [{port: 8080}]}
  - {name: added, vip: %s, ports: [{port: 8080}]}
`, vip4, vip6, vip))
	api1 := []string{"--api", "http://127.0.0.1:9080"}
	if out, err := h1.Edgelb(append([]string{"config", "diff", "-f", spec}, api1...)...); err != nil || !strings.Contains(out, "+ vip "+vip.String()) {
		t.Fatalf("edgelb config diff on h1: %v\n%s", err, out)
	}
	out, err := h1.Edgelb(append([]string{"config", "apply", "-f", spec}, api1...)...)
	if err != nil || !strings.HasPrefix(out, "applied: version 2") {
		t.Fatalf("edgelb config apply on h1: %v\n%s", err, out)
	}
	for _, h := range l.Hosts {
		if !nslab.Poll(converge, func() bool {
			out, err := h.Edgelb("status", "--output", "json", "--api", "http://127.0.0.1:9080")
			if err != nil {
				return false
			}
			var st struct {
				Members  []api.Member  `json:"members"`
				Services []api.Service `json:"services"`
			}
			if json.Unmarshal([]byte(out), &st) != nil {
				return false
			}
			for _, m := range st.Members {
				if m.ConfigVersion != 2 {
					return false
				}
			}
			return len(st.Members) == 3 && slices.ContainsFunc(st.Services, func(s api.Service) bool { return s.Name == "added" })
		}) {
			out, _ := h.Edgelb("status", "--api", "http://127.0.0.1:9080")
			t.Fatalf("%s does not run version 2 with the service added:\n%s\n%s", h.Name, out, h.Log.String())
		}
	}
	owner := l.Owner(vip, converge)
	p := l.Probe(vip, 300*time.Millisecond)
	if !nslab.Poll(converge, func() bool { return p.Last().OK }) {
		t.Fatalf("no answer from %s (owner %s): %+v", vip, owner.Name, p.Last())
	}
	p.Stop()
	t.Logf("%s added on h1, held by %s", vip, owner.Name)
}

// Both sides of a partition change the configuration; after it heals
// every host runs the same version and the other side's edit is in every
// host's history, marked lost. A host restarted alone keeps that version.
func TestClusterConfigurationConvergesAfterAPartition(t *testing.T) {
	l := startCluster(t, 3)
	h1, h2, h3 := l.Hosts[0], l.Hosts[1], l.Hosts[2]
	apply := func(h *nslab.Host, name string) {
		t.Helper()
		spec := filepath.Join(l.Dir, name+".yaml")
		nslab.WriteFile(t, spec, fmt.Sprintf(`services:
  - {name: web4, vip: %s, ports: [{port: 8080}]}
  - {name: web6, vip: "%s", ports: [{port: 8080}]}
  - {name: %s, vip: 10.99.0.151, ports: [{port: 8080}]}
`, vip4, vip6, name))
		if out, err := h.Edgelb("config", "apply", "-f", spec, "--api", "http://127.0.0.1:9080"); err != nil || !strings.HasPrefix(out, "applied: version 2") {
			t.Fatalf("edgelb config apply on %s: %v\n%s", h.Name, err, out)
		}
	}
	history := func(h *nslab.Host) []api.ConfigVersion {
		out, err := h.Edgelb("config", "history", "--output", "json", "--api", "http://127.0.0.1:9080")
		var hs []api.ConfigVersion
		if err != nil || json.Unmarshal([]byte(out), &hs) != nil {
			return nil
		}
		return hs
	}
	l.Partition(h1)
	apply(h1, "minority")
	apply(h2, "majority")
	l.Heal()
	var winner string
	for _, h := range l.Hosts {
		if !nslab.Poll(2*converge, func() bool {
			hs := history(h)
			lost, current := 0, ""
			for _, v := range hs {
				if v.Version == 2 && v.Lost {
					lost++
				}
				if v.Version == 2 && v.Current {
					current = v.UpdatedBy + "@" + v.Member
				}
			}
			if current == "" || lost != 1 || winner != "" && current != winner {
				return false
			}
			winner = current
			return true
		}) {
			t.Fatalf("%s did not converge on one version 2 with the other in its history, lost: %+v\n%s", h.Name, history(h), h.Log.String())
		}
	}
	t.Logf("after the partition every host runs version 2 made on %s", winner)

	// Restarted alone, h3 comes back with that version from its state
	// directory, not its file's.
	if err := h3.Stop(converge); err != nil {
		t.Fatal(err)
	}
	h1.Stop(converge)
	h2.Stop(converge)
	h3.Start()
	if !nslab.Poll(converge, func() bool {
		for _, v := range history(h3) {
			if v.Current {
				return v.Version == 2 && v.UpdatedBy+"@"+v.Member == winner
			}
		}
		return false
	}) {
		t.Fatalf("h3 restarted alone runs %+v", history(h3))
	}
}
