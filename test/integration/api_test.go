package integration

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/edgelb/edgelb/api"
	"github.com/edgelb/edgelb/cmd/edgelb/cli"
)

// The running daemon's API shows the Service edgelb allocated, its
// readiness and metrics, and `edgelb status` reads it.
func TestDaemonAPIShowsServices(t *testing.T) {
	const ns, class = "apiview", "edgelb.io/apiview"
	createNamespace(t, ns)
	cfg := config(t, "lb1", class, "lease-apiview", `  - {name: main, addresses: ["198.51.100.224/28"]}`)
	cfg += "  tokens: {viewer: [\"viewer-token-0123456789\"], admin: [\"admin-token-0123456789\"]}\n"
	listen := regexp.MustCompile(`listen: "([^"]+)"`).FindStringSubmatch(cfg)[1]
	start(t, "lb1", cfg)
	createService(t, lbService(ns, "web", class, 80, 443))
	ip := waitIPs(t, ns, "web", 1)[0]

	base := "http://" + listen
	get := func(path, token string) (int, []byte) {
		req, _ := http.NewRequest("GET", base+path, nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return 0, []byte(err.Error())
		}
		defer resp.Body.Close()
		var b strings.Builder
		buf := make([]byte, 32<<10)
		for {
			n, err := resp.Body.Read(buf)
			b.Write(buf[:n])
			if err != nil {
				break
			}
		}
		return resp.StatusCode, []byte(b.String())
	}
	eventually(t, 20*time.Second, "the API lists the Service with its VIP", func() error {
		code, body := get("/api/v1/services/"+ns+"/web", "viewer-token-0123456789")
		if code != 200 {
			return fmt.Errorf("%d %s", code, body)
		}
		var svc api.Service
		if err := json.Unmarshal(body, &svc); err != nil {
			return err
		}
		if len(svc.VIPs) != 1 || svc.VIPs[0] != ip || len(svc.Ports) != 2 {
			return fmt.Errorf("service = %+v", svc)
		}
		return nil
	})
	if code, _ := get("/api/v1/services", ""); code != 401 {
		t.Errorf("no token: %d", code)
	}
	if code, body := get("/readyz", "viewer-token-0123456789"); code != 200 {
		t.Errorf("/readyz: %d %s", code, body)
	}
	code, body := get("/metrics", "viewer-token-0123456789")
	if code != 200 || !strings.Contains(string(body), `edgelb_leader 1`) {
		t.Errorf("/metrics: %d, edgelb_leader 1 missing", code)
	}
	// The collector's target: edgelb's default, or GOGC where it is set.
	gogc := os.Getenv("GOGC")
	if gogc == "" {
		gogc = strconv.Itoa(cli.DefaultGCPercent)
	}
	if want := "\ngo_gc_gogc_percent " + gogc + "\n"; !strings.Contains(string(body), want) {
		t.Errorf("/metrics has no %q", strings.TrimSpace(want))
	}
	out, err := exec.Command(edgelb, "status", "--api", base, "--token", "viewer-token-0123456789").CombinedOutput()
	if err != nil || !strings.Contains(string(out), ns+"/web") || !strings.Contains(string(out), ip+":443/tcp") {
		t.Errorf("edgelb status: %v\n%s", err, out)
	}
	t.Logf("edgelb status:\n%s", out)
}
