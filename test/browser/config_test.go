package browser

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/edgelb/edgelb/api"
	"github.com/edgelb/edgelb/web/webtest"
)

// TestDashboardConfigE2E manages the cluster configuration of three real
// members from one member's dashboard: a bad VIP in the static service
// form is refused next to the field with nothing changed; a good service
// shows its dry-run effect, is applied, reaches every member (their APIs
// and another member's page, whose badges say "in sync"); the history
// shows the version's diff, and a rollback from the other member's page
// removes the service everywhere; a backend drained, disabled and enabled
// from the services table is so on every member. The audit log names the
// token.
// Screenshots go to test/artifacts.
func TestDashboardConfigE2E(t *testing.T) {
	webtest.Require(t, os.Geteuid() == 0, "needs root to create the members' interfaces")
	_, err := exec.LookPath("ip")
	webtest.Require(t, err == nil, "iproute2's ip is not installed (hack/test-deps.sh)")
	page := webtest.NewPage(t) // skips (or fails under CI) without Chromium
	members, _ := startMembers(t, buildEdgelb(t))
	a, b := members[0], members[1]

	var start api.ConfigDoc
	if err := getJSON(a.api, "/api/v1/config", &start); err != nil {
		t.Fatal(err)
	}
	version := func(v uint64) string { return fmt.Sprint(v) }

	page.Do("sign in as admin on "+a.name+": the configuration card shows version "+version(start.Version),
		chromedp.Navigate("http://"+a.api+"/?refresh=1"),
		webtest.SignIn(adminToken),
		webtest.Poll(fmt.Sprintf(`document.querySelector('#cfg-summary')?.dataset.version === %q`, version(start.Version)), converge),
		webtest.Poll(`!!document.querySelector('#cfg-services tr[data-name="web"]') && !!document.querySelector('#cfg-services tr[data-name="dns"]')`, converge))

	page.Do("a bad VIP is refused next to the field, and nothing changes",
		chromedp.Click(chromedp.ID("cfg-add-service")),
		webtest.SetField("name", "added"),
		webtest.SetField("vip", "203.0.113.999"),
		webtest.SetField("ports", "8080:80/TCP"),
		webtest.SetField("backends", "127.0.0.1"),
		chromedp.Click(chromedp.ID("cfg-check")),
		webtest.Poll(`document.querySelector('.field-error[data-for="vip"]').textContent.includes('"203.0.113.999" is not an IP address')`, converge),
		webtest.Poll(`document.querySelector('#cfg-apply').disabled`, time.Second))
	page.Screenshot("config-field-error")
	var now api.ConfigDoc
	if err := getJSON(a.api, "/api/v1/config", &now); err != nil || now.Version != start.Version {
		t.Fatalf("after a refused check the version is %d (%v), want %d", now.Version, err, start.Version)
	}

	const newVIP = "203.0.113.73"
	page.Do("a good VIP: the dry run shows the effect, then it is applied",
		webtest.SetField("vip", newVIP),
		chromedp.Click(chromedp.ID("cfg-check")),
		webtest.Poll(`document.querySelector('#cfg-effect [data-effect="servicesAdded"]')?.textContent.includes('added')`, converge),
		webtest.Poll(fmt.Sprintf(`document.querySelector('#cfg-effect [data-effect="vipsAdded"]')?.textContent.includes(%q)`, newVIP), converge),
		webtest.Poll(`document.querySelector('.field-error[data-for="vip"]').textContent === ''`, time.Second))
	page.Screenshot("config-dry-run")
	page.Do("apply",
		chromedp.Click(chromedp.ID("cfg-apply")),
		webtest.BannerContains(fmt.Sprintf("Version %d applied", start.Version+1), converge),
		webtest.Poll(`!!document.querySelector('#cfg-services tr[data-name="added"]')`, converge),
		webtest.Poll(fmt.Sprintf(`document.querySelector('#cfg-summary').dataset.version === %q`, version(start.Version+1)), converge))

	applied := time.Now()
	poll(t, converge, "every member runs version "+version(start.Version+1)+" and serves the static service added", func() error {
		for _, m := range members {
			var ms []api.Member
			if err := getJSON(m.api, "/api/v1/members", &ms); err != nil {
				return err
			}
			for _, x := range ms {
				if x.ConfigVersion != start.Version+1 {
					return fmt.Errorf("%s sees %s at version %d", m.name, x.Name, x.ConfigVersion)
				}
			}
			var svcs []api.Service
			if err := getJSON(m.api, "/api/v1/services", &svcs); err != nil {
				return err
			}
			if !slices.ContainsFunc(svcs, func(s api.Service) bool { return s.Name == "added" && slices.Contains(s.VIPs, newVIP) }) {
				return fmt.Errorf("%s does not serve added on %s", m.name, newVIP)
			}
		}
		return nil
	})
	t.Logf("FIGURE dashboard apply -> every member's API serves the service: %v", time.Since(applied).Round(10*time.Millisecond))

	page.Do("the audit log names the admin token",
		webtest.Poll(`[...document.querySelectorAll('#cfg-audit tr')].some(r => r.querySelector('.what')?.textContent === 'config.put' && r.querySelector('.who').textContent === 'admin#1')`, converge))
	// The page re-renders the history when the version its member
	// gossips catches up, which can swallow a click: click until the
	// diff shows.
	page.Do("the history shows the diff of the new version",
		webtest.Poll(fmt.Sprintf(`(() => {
			const shown = [...document.querySelectorAll('#cfg-diff .add')].some(l => l.textContent.includes('services[2].name = "added"'));
			if (!shown) document.querySelector('#cfg-history tr[data-version="%d"] button.diff')?.click();
			return shown;
		})()`, start.Version+1), converge))
	page.Screenshot("config-history")

	page.Do(b.name+"'s page shows the service and every member in sync",
		chromedp.Navigate("http://"+b.api+"/?refresh=1"),
		webtest.SignIn(adminToken),
		webtest.Poll(`!!document.querySelector('#cfg-services tr[data-name="added"]')`, converge),
		webtest.ServiceShown(api.StaticNamespace, "added", converge),
		webtest.Poll(`['lb1','lb2','lb3'].every(n => /in sync$/.test(document.querySelector('tr[data-member="'+n+'"] .config')?.textContent))`, converge))
	page.Screenshot("config-other-member")

	page.Do("roll back to version "+version(start.Version)+" from "+b.name+"'s history",
		chromedp.Click(chromedp.CSS(fmt.Sprintf(`#cfg-history tr[data-version="%d"] button.rollback`, start.Version))),
		webtest.ConfirmDialog(),
		webtest.BannerContains(fmt.Sprintf("a rollback to version %d", start.Version), converge),
		webtest.Poll(`!document.querySelector('#cfg-services tr[data-name="added"]')`, converge))
	poll(t, converge, "every member has dropped the service added", func() error {
		for _, m := range members {
			var svcs []api.Service
			if err := getJSON(m.api, "/api/v1/services", &svcs); err != nil {
				return err
			}
			if slices.ContainsFunc(svcs, func(s api.Service) bool { return s.Name == "added" }) {
				return fmt.Errorf("%s still serves added", m.name)
			}
		}
		return nil
	})

	// A backend of web, drained and then disabled from the services table
	// of b's page, is so on every member; enabled again, it is back.
	const be = "127.0.0.1:8080"
	beState := func(want string) error {
		for _, m := range members {
			var svc api.Service
			if err := getJSON(m.api, "/api/v1/services/"+api.StaticNamespace+"/web", &svc); err != nil {
				return err
			}
			got := ""
			if slices.Contains(svc.DisabledBackends, be) {
				got = "disable"
			}
			for _, p := range svc.Ports {
				for _, x := range p.Backends {
					if x.Address == be && x.AdminState == "drain" {
						got = "drain"
					}
				}
			}
			if got != want {
				return fmt.Errorf("%s: %s is %q, want %q", m.name, be, got, want)
			}
		}
		return nil
	}
	row := `#services tr[data-service="_static/web"]`
	page.Do("drain "+be+" of web from the services table",
		chromedp.Click(chromedp.CSS(row+` button.be-drain[data-backend="`+be+`"]`)),
		webtest.ConfirmDialog(),
		webtest.BannerContains(be+" of web drained", converge),
		webtest.Poll(`[...document.querySelectorAll('`+row+` .tag.drained')].length > 0`, converge))
	poll(t, converge, be+" drained on every member", func() error { return beState("drain") })
	page.Screenshot("config-backend-drained")
	page.Do("disable it",
		chromedp.Click(chromedp.CSS(row+` button.be-disable[data-backend="`+be+`"]`)),
		webtest.ConfirmDialog(),
		webtest.Poll(`!!document.querySelector('`+row+` li.disabled button.be-enable[data-backend="`+be+`"]')`, converge))
	poll(t, converge, be+" disabled on every member", func() error { return beState("disable") })
	page.Do("enable it",
		chromedp.Click(chromedp.CSS(row+` li.disabled button.be-enable[data-backend="`+be+`"]`)),
		webtest.ConfirmDialog(),
		webtest.Poll(`!document.querySelector('`+row+` li.disabled')`, converge))
	poll(t, converge, be+" enabled on every member", func() error { return beState("") })

	if errs := page.Errors(); len(errs) > 0 {
		t.Errorf("the page reported errors: %q", errs)
	}
}

// TestDashboardPoolAndPeerE2E edits, from one member's dashboard, a
// pool's namespaces and a BGP peer (its AS and a TCP MD5 password), then
// the pool's BGP policy (a bad community refused at its field), and
// sees every member take each version: each runs it, each API's spec has
// it, each BGP speaker talks to the peer with the new AS, and another
// member's page shows it. The password stays secret: "(secret)" in
// every member's spec, in no page, and stored on every member (an
// admin's ?secrets=true on another member reads it).
func TestDashboardPoolAndPeerE2E(t *testing.T) {
	webtest.Require(t, os.Geteuid() == 0, "needs root to create the members' interfaces")
	_, err := exec.LookPath("ip")
	webtest.Require(t, err == nil, "iproute2's ip is not installed (hack/test-deps.sh)")
	page := webtest.NewPage(t) // skips (or fails under CI) without Chromium
	members, _ := startMembers(t, buildEdgelb(t))
	a, b := members[0], members[1]

	var start api.ConfigDoc
	if err := getJSON(a.api, "/api/v1/config", &start); err != nil {
		t.Fatal(err)
	}
	v := start.Version
	// everyMember waits until every member runs version want and check
	// passes on each one's spec (as its API shows it to a viewer, or to
	// an admin asking for the secrets).
	everyMember := func(what string, want uint64, secrets bool, check func(m *member, spec clusterSpec) error) {
		t.Helper()
		poll(t, converge, what, func() error {
			for _, m := range members {
				var ms []api.Member
				if err := getJSON(m.api, "/api/v1/members", &ms); err != nil {
					return err
				}
				for _, x := range ms {
					if x.ConfigVersion != want {
						return fmt.Errorf("%s sees %s at version %d, want %d", m.name, x.Name, x.ConfigVersion, want)
					}
				}
				path, token := "/api/v1/config", viewerToken
				if secrets {
					path, token = path+"?secrets=true", adminToken
				}
				var doc api.ConfigDoc
				if err := getJSONAs(token, m.api, path, &doc); err != nil {
					return err
				}
				var spec clusterSpec
				if err := json.Unmarshal(doc.Spec, &spec); err != nil {
					return err
				}
				if err := check(m, spec); err != nil {
					return fmt.Errorf("%s: %w", m.name, err)
				}
			}
			return nil
		})
	}

	page.Do("sign in as admin on "+a.name+" and add the pool team for namespace team-a",
		chromedp.Navigate("http://"+a.api+"/?refresh=1"),
		webtest.SignIn(adminToken),
		webtest.Poll(fmt.Sprintf(`document.querySelector('#cfg-summary')?.dataset.version === '%d'`, v), converge),
		chromedp.Click(chromedp.ID("cfg-add-pool")),
		webtest.SetField("name", "team"),
		webtest.SetField("addresses", "203.0.113.128/28"),
		webtest.SetField("namespaces", "team-a"),
		webtest.CheckAndApply(v+1, converge))
	page.Do("edit its namespaces",
		webtest.Poll(`!!document.querySelector('#cfg-pools tr[data-name="team"] button.edit')`, converge),
		webtest.EditRow("#cfg-pools", "name", "team"),
		webtest.Poll(`document.querySelector('#cfg-fields [data-field="namespaces"]').value === 'team-a'`, time.Second),
		webtest.SetField("namespaces", "team-a, team-b"),
		chromedp.Click(chromedp.ID("cfg-check")),
		webtest.Poll(`document.querySelector('#cfg-effect [data-effect="poolsChanged"]')?.textContent.includes('team')`, converge),
		chromedp.Click(chromedp.ID("cfg-apply")),
		webtest.BannerContains(fmt.Sprintf("Version %d applied: pool team changed", v+2), converge))
	applied := time.Now()
	everyMember(fmt.Sprintf("every member runs version %d with the pool team for team-a and team-b", v+2), v+2, false,
		func(_ *member, spec clusterSpec) error {
			for _, p := range spec.Pools {
				if p.Name == "team" && slices.Equal(p.Namespaces, []string{"team-a", "team-b"}) {
					return nil
				}
			}
			return fmt.Errorf("pools %+v", spec.Pools)
		})
	t.Logf("FIGURE dashboard pool edit -> every member runs it: %v", time.Since(applied).Round(10*time.Millisecond))

	const peer, password = "127.0.0.2", "e2e-md5-password-0xC0FFEE"
	page.Do("edit the BGP peer "+peer+": AS 64501 and a password",
		webtest.EditRow("#cfg-peers", "peer", peer),
		webtest.SetField("asn", "64501"),
		webtest.SetField("password", password),
		chromedp.Click(chromedp.ID("cfg-check")),
		webtest.Poll(fmt.Sprintf(`document.querySelector('#cfg-effect [data-effect="secretsChanged"]')?.textContent.includes('bgp.peers[%s].password')`, peer), converge),
		chromedp.Click(chromedp.ID("cfg-apply")),
		webtest.BannerContains(fmt.Sprintf("Version %d applied: BGP peer %s changed", v+3, peer), converge),
		webtest.Poll(fmt.Sprintf(`document.querySelector('#cfg-peers tr[data-peer=%q] .asn')?.textContent === '64501'`, peer), converge),
		webtest.Poll(fmt.Sprintf(`document.querySelector('#cfg-peers tr[data-peer=%q] .password')?.textContent === 'set'`, peer), converge))
	applied = time.Now()
	peerIs := func(asn int, pw string) func(*member, clusterSpec) error {
		return func(_ *member, spec clusterSpec) error {
			if len(spec.BGP.Peers) != 1 || spec.BGP.Peers[0].ASN != asn || spec.BGP.Peers[0].Password != pw {
				return fmt.Errorf("bgp.peers %+v, want AS %d, password %q", spec.BGP.Peers, asn, pw)
			}
			return nil
		}
	}
	everyMember(fmt.Sprintf("every member runs version %d, its spec shows the password as (secret)", v+3), v+3, false, peerIs(64501, "(secret)"))
	everyMember("every member stores the password (an admin's ?secrets=true)", v+3, true, peerIs(64501, password))
	poll(t, converge, "every member's BGP speaker has the peer with AS 64501", func() error {
		for _, m := range members {
			var st api.BGPStatus
			if err := getJSON(m.api, "/api/v1/bgp", &st); err != nil {
				return err
			}
			if len(st.Peers) != 1 || st.Peers[0].Address != peer || st.Peers[0].ASN != 64501 {
				return fmt.Errorf("%s's speaker has peers %+v", m.name, st.Peers)
			}
		}
		return nil
	})
	t.Logf("FIGURE dashboard peer edit -> every member's speaker has it: %v", time.Since(applied).Round(10*time.Millisecond))

	// The pool's BGP policy: a bad community is refused next to its
	// field before anything changes; corrected, every member runs it.
	page.Do("give the pool team announce: bgp and a bad community",
		webtest.EditRow("#cfg-pools", "name", "team"),
		webtest.SetField("announce", "bgp"),
		webtest.SetField("bgp.communities", "65000:7, 70000:1"),
		webtest.SetField("bgp.localPref", "150"),
		chromedp.Click(chromedp.ID("cfg-check")),
		webtest.Poll(`document.querySelector('.field-error[data-for="bgp.communities"]').textContent.includes('"70000:1" is not a community')`, converge))
	page.Do("correct it and apply",
		webtest.SetField("bgp.communities", "65000:7, no-export"),
		webtest.CheckAndApply(v+4, converge))
	everyMember(fmt.Sprintf("every member runs version %d with the pool team's BGP policy", v+4), v+4, false,
		func(_ *member, spec clusterSpec) error {
			for _, p := range spec.Pools {
				if p.Name == "team" && p.Announce == "bgp" && slices.Equal(p.BGP.Communities, []string{"65000:7", "no-export"}) && p.BGP.LocalPref == 150 {
					return nil
				}
			}
			return fmt.Errorf("pools %+v", spec.Pools)
		})
	page.Screenshot("config-pool-peer")
	// The page where it was typed holds it no more once it is applied.
	noPassword := func(where string) {
		t.Helper()
		if html := page.Eval(`document.documentElement.outerHTML + [...document.querySelectorAll('input')].map(i => i.value).join(' ') + JSON.stringify(sessionStorage) + JSON.stringify(localStorage)`); strings.Contains(html, password) {
			t.Errorf("%s's page holds the password", where)
		}
	}
	noPassword(a.name)

	page.Do(b.name+"'s page shows the pool's namespaces and the peer, with its password set",
		chromedp.Navigate("http://"+b.api+"/?refresh=1"),
		webtest.SignIn(adminToken),
		webtest.Poll(`document.querySelector('#cfg-pools tr[data-name="team"] .namespaces')?.textContent === 'team-a, team-b'`, converge),
		webtest.Poll(fmt.Sprintf(`document.querySelector('#cfg-peers tr[data-peer=%q] .password')?.textContent === 'set'`, peer), converge),
		webtest.Poll(fmt.Sprintf(`document.querySelector('#bgp tr[data-peer=%q] td:nth-child(2)')?.textContent === '64501'`, peer), converge),
		webtest.EditRow("#cfg-peers", "peer", peer),
		webtest.Poll(`document.querySelector('#cfg-fields [data-field="password"]').value === ''`, time.Second))
	noPassword(b.name)
	if errs := page.Errors(); len(errs) > 0 {
		t.Errorf("the page reported errors: %q", errs)
	}
}

// clusterSpec is the part of a spec TestDashboardPoolAndPeerE2E reads.
type clusterSpec struct {
	Pools []struct {
		Name       string   `json:"name"`
		Namespaces []string `json:"namespaces"`
		Announce   string   `json:"announce"`
		BGP        struct {
			Communities []string `json:"communities"`
			LocalPref   int      `json:"localPref"`
		} `json:"bgp"`
	} `json:"pools"`
	BGP struct {
		Peers []struct {
			Address  string `json:"address"`
			ASN      int    `json:"asn"`
			Password string `json:"password"`
		} `json:"peers"`
	} `json:"bgp"`
}
