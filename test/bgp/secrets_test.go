package bgp

import (
	"fmt"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/edgelb/edgelb/test/nslab"
)

const (
	labPassword = "md5-lab-0xC0FFEE"
	labAdmin    = "lab-admin-token-0123456789"
	labViewer   = "lab-viewer-token-0123456789"
	labAPI      = "http://127.0.0.1:9080"
)

// curlAs runs curl in h's namespace against its local API with token and
// returns the HTTP status and the body.
func curlAs(t testing.TB, h *nslab.Host, token, method, path string) (int, string) {
	t.Helper()
	out, err := exec.Command("ip", "netns", "exec", h.NS, "curl", "-sS", "-X", method, "-H", "Content-Type: application/json",
		"-H", "Authorization: Bearer "+token, "-w", "\n%{http_code}", labAPI+path).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s on %s: %v: %s", method, path, h.Name, err, out)
	}
	// -w puts the status on a line of its own after the body.
	i := strings.LastIndex(string(out), "\n")
	code, err := strconv.Atoi(strings.TrimSpace(string(out[i+1:])))
	if err != nil {
		t.Fatalf("%s %s on %s: no status in %q", method, path, h.Name, out)
	}
	return code, string(out[:max(i, 0)])
}

// The real binary with a TCP MD5 session to FRR: a viewer reads the
// configuration, a version and the audit log without the password, and is
// refused when it asks for it; `edgelb config get` shows "(secret)"; what
// it printed, edited (the peer's hold time) and applied, resets the session
// with the stored password, which the router accepts again; an admin who
// asks sees the password; the daemon's log never prints it.
func TestBGPPasswordStaysSecret(t *testing.T) {
	l := nslab.New(t, 1)
	l.Services += fmt.Sprintf("\n  - {name: web-bgp, vip: %s, announce: bgp, ports: [{port: 8080}]}", vip)
	l.Extra = hostBGP(routerASN, labPassword) + fmt.Sprintf("api: {tokens: {admin: [%s], viewer: [%s]}}\n", labAdmin, labViewer)
	h := l.Hosts[0]
	r := startRouter(t, l, routerASN, []neighbor{{addr: h.IP4, password: labPassword}})
	defer func() {
		if t.Failed() {
			t.Logf("%s log:\n%s", h.Name, h.Log)
		}
	}()
	h.Start()
	r.waitNextHops(vip, h)
	if !l.Configured(nslab.Converge, "--token", labViewer) {
		t.Fatal("the host runs no committed cluster configuration")
	}

	for _, path := range []string{"/api/v1/config", "/api/v1/config/history/1", "/api/v1/config/history", "/api/v1/audit"} {
		code, body := curlAs(t, h, labViewer, "GET", path)
		if code != 200 || strings.Contains(body, labPassword) {
			t.Errorf("viewer GET %s: %d %s", path, code, body)
		}
		if strings.HasPrefix(path, "/api/v1/config/history/") || path == "/api/v1/config" {
			if !strings.Contains(body, `"password":"(secret)"`) {
				t.Errorf("viewer GET %s: %s, want the password as (secret)", path, body)
			}
		}
	}
	if code, body := curlAs(t, h, labViewer, "GET", "/api/v1/config?secrets=true"); code != 403 || strings.Contains(body, labPassword) || !strings.Contains(body, "needs an admin token") {
		t.Errorf("viewer GET config?secrets=true: %d %s", code, body)
	}
	if out, err := h.Edgelb("config", "get", "--api", labAPI, "--token", labViewer, "--show-secrets"); err == nil || strings.Contains(out, labPassword) || !strings.Contains(out, "needs an admin token") {
		t.Errorf("edgelb config get --show-secrets as a viewer: %v\n%s", err, out)
	}

	// get, edit, apply as an admin: the session is reset with the new hold
	// time and the stored password, and comes back.
	cur, err := h.Edgelb("config", "get", "--api", labAPI, "--token", labAdmin)
	if err != nil || strings.Contains(cur, labPassword) || !strings.Contains(cur, "password: (secret)") {
		t.Fatalf("edgelb config get: %v\n%s", err, cur)
	}
	next := strings.Replace(cur, "holdTime: 3s", "holdTime: 4s", 1)
	if next == cur {
		t.Fatalf("no holdTime: 3s in\n%s", cur)
	}
	spec := filepath.Join(l.Dir, "spec-2.yaml")
	nslab.WriteFile(t, spec, next)
	added := strings.Count(h.Log.String(), "BGP peer added")
	start := time.Now()
	if out, err := h.Edgelb("config", "apply", "-f", spec, "--api", labAPI, "--token", labAdmin); err != nil || !strings.HasPrefix(out, "applied: version 2") {
		t.Fatalf("edgelb config apply: %v\n%s", err, out)
	}
	if !nslab.Poll(nslab.Converge, func() bool { return strings.Count(h.Log.String(), "BGP peer added") > added }) {
		t.Fatal("the peer was not taken up again with the new hold time")
	}
	if !nslab.Poll(nslab.Converge+10*time.Second, func() bool {
		code, body := curlAs(t, h, labViewer, "GET", "/api/v1/bgp")
		return code == 200 && strings.Contains(body, `"established":true`) && len(r.nextHops(vip)) == 1
	}) {
		_, body := curlAs(t, h, labViewer, "GET", "/api/v1/bgp")
		t.Fatalf("the MD5 session did not come back after the apply: %s", body)
	}
	t.Logf("FIGURE apply of get's output (hold time changed) -> MD5 session and route back: %v", time.Since(start).Round(time.Millisecond))

	if code, body := curlAs(t, h, labAdmin, "GET", "/api/v1/config?secrets=true"); code != 200 || !strings.Contains(body, `"password":"`+labPassword+`"`) || !strings.Contains(body, `"holdTime":"4s"`) {
		t.Errorf("admin GET config?secrets=true: %d %s", code, body)
	}
	if _, body := curlAs(t, h, labViewer, "GET", "/api/v1/audit"); strings.Contains(body, labPassword) || !strings.Contains(body, `"what":"config.secrets.read"`) {
		t.Errorf("audit: %s, want the admin's read of the secrets and no password", body)
	}
	if strings.Contains(h.Log.String(), labPassword) {
		t.Errorf("the daemon's log prints the password")
	}
}
