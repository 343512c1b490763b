package integration

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/edgelb/edgelb/api"
)

// Every Service edgelb is responsible for shows, with its state and
// why, where an operator looks: GET /api/v1/services, `edgelb status`
// (a PENDING line each) and the metric edgelb_service_state. The reasons
// are the real API server's Services': a pool that does not exist, a
// pool exhausted, a requested address already taken, an IPv6-only
// Service with only IPv4 pools, and no class while defaultClass is
// false. Then the host restarts over a file whose cluster-wide keys
// differ (an extra pool): status, `edgelb status` and the metric
// edgelb_config_file_differs say so and how to apply it, and the running
// configuration stays what it was — the Service naming the file's new
// pool stays pending.
func TestServiceStatesAndFileDriftShow(t *testing.T) {
	const ns, class, viewer = "visible", "edgelb.io/visible", "viewer-token-0123456789"
	createNamespace(t, ns)
	pools := `  - {name: main, addresses: ["198.51.100.192/30"]}
  - {name: one, addresses: ["198.51.100.250"], autoAssign: false}`
	cfg := config(t, "lb1", class, "lease-visible", pools)
	cfg += "  tokens: {viewer: [\"" + viewer + "\"]}\n"
	base := "http://" + regexp.MustCompile(`listen: "([^"]+)"`).FindStringSubmatch(cfg)[1]
	dir := t.TempDir()
	p := startIn(t, dir, "lb1", cfg)

	get := func(path string) (int, string) {
		req, _ := http.NewRequest("GET", base+path, nil)
		req.Header.Set("Authorization", "Bearer "+viewer)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	status := func() (string, error) {
		out, err := exec.Command(edgelb, "status", "--api", base, "--token", viewer).CombinedOutput()
		if err != nil {
			return "", fmt.Errorf("edgelb status: %v\n%s", err, out)
		}
		return string(out), nil
	}

	createService(t, lbService(ns, "web", class, 80))
	webIP := waitIPs(t, ns, "web", 1)[0]
	first := lbService(ns, "first", class, 80)
	first.Annotations["edgelb.io/pool"] = "one"
	createService(t, first)
	waitIPs(t, ns, "first", 1)

	// name → the problem the pending Service must show.
	pending := map[string]string{
		"nopool":    `^NoSuchPool: .*pool "extra" does not exist`,
		"exhausted": `^PoolExhausted: .*no free IPv4 address left in pool one`,
		"taken":     `^AddressInUse: .*` + regexp.QuoteMeta(webIP+" is already used by "+ns+"/web"),
		"v6only":    `^NoPool: .*no pool available to this Service has IPv6 addresses`,
		"classless": `^not handled: it names no loadBalancerClass and kubernetes.defaultClass is false`,
	}
	mk := map[string]func(*corev1.Service){
		"nopool":    func(s *corev1.Service) { s.Annotations["edgelb.io/pool"] = "extra" },
		"exhausted": func(s *corev1.Service) { s.Annotations["edgelb.io/pool"] = "one" },
		"taken":     func(s *corev1.Service) { s.Annotations["edgelb.io/load-balancer-ips"] = webIP },
		"v6only": func(s *corev1.Service) {
			single := corev1.IPFamilyPolicySingleStack
			s.Spec.IPFamilyPolicy, s.Spec.IPFamilies = &single, []corev1.IPFamily{corev1.IPv6Protocol}
		},
		"classless": func(s *corev1.Service) { s.Spec.LoadBalancerClass = nil },
	}
	for name, f := range mk {
		svc := lbService(ns, name, class, 80)
		f(svc)
		createService(t, svc)
	}

	// shows checks the three places for every Service of the namespace.
	shows := func(want map[string]string) error {
		code, body := get("/api/v1/services")
		var svcs []api.Service
		if code != 200 || json.Unmarshal([]byte(body), &svcs) != nil {
			return fmt.Errorf("GET /api/v1/services: %d %s", code, body)
		}
		got := map[string]api.Service{}
		for _, s := range svcs {
			if s.Namespace == ns {
				got[s.Name] = s
			}
		}
		for _, name := range []string{"web", "first"} {
			if s := got[name]; s.State != "served" || s.Problem != "" {
				return fmt.Errorf("API: %s is %q (%q), want served", name, s.State, s.Problem)
			}
		}
		out, err := status()
		if err != nil {
			return err
		}
		_, metrics := get("/metrics")
		for _, name := range []string{"web", "first"} {
			if m := fmt.Sprintf(`edgelb_service_state{namespace=%q,service=%q,state="served"} 1`, ns, name); !strings.Contains(metrics, m) {
				return fmt.Errorf("metrics lack %s", m)
			}
		}
		for name, problem := range want {
			re := regexp.MustCompile(problem)
			if s := got[name]; s.State != "pending" || !re.MatchString(s.Problem) || len(s.VIPs) != 0 {
				return fmt.Errorf("API: %s is %q with problem %q and VIPs %v, want pending with %s", name, s.State, s.Problem, s.VIPs, problem)
			}
			// Asked alone, the same.
			var one api.Service
			if code, body := get("/api/v1/services/" + ns + "/" + name); code != 200 || json.Unmarshal([]byte(body), &one) != nil ||
				one.State != "pending" || one.Problem != got[name].Problem {
				return fmt.Errorf("GET /api/v1/services/%s/%s: %d %s; the list has %+v", ns, name, code, body, got[name])
			}
			line := regexp.MustCompile(`(?m)^PENDING ` + ns + "/" + name + `: (.*)$`).FindStringSubmatch(out)
			if line == nil || !re.MatchString(line[1]) {
				return fmt.Errorf("edgelb status has no PENDING line for %s matching %s:\n%s", name, problem, out)
			}
			if m := fmt.Sprintf(`edgelb_service_state{namespace=%q,service=%q,state="pending"} 1`, ns, name); !strings.Contains(metrics, m) {
				return fmt.Errorf("metrics lack %s", m)
			}
		}
		return nil
	}
	eventually(t, 20*time.Second, "every Service's state and reason shows", func() error { return shows(pending) })
	for name := range pending {
		if got := ingressIPs(getService(t, ns, name)); len(got) != 0 {
			t.Errorf("pending %s has addresses %v in its status", name, got)
		}
	}
	out, _ := status()
	t.Logf("edgelb status:\n%s", out)

	// fileDrift reads what the three places say about the file.
	fileDrift := func() (st api.Status, out, metric string, err error) {
		code, body := get("/api/v1/status")
		if code != 200 || json.Unmarshal([]byte(body), &st) != nil {
			return st, "", "", fmt.Errorf("GET /api/v1/status: %d %s", code, body)
		}
		if out, err = status(); err != nil {
			return
		}
		_, body = get("/metrics")
		metric = regexp.MustCompile(`(?m)^edgelb_config_file_differs \S+$`).FindString(body)
		return
	}
	st, out, metric, err := fileDrift()
	if err != nil {
		t.Fatal(err)
	}
	if st.ConfigFileDiffers || strings.Contains(out, "config file:") || metric != "edgelb_config_file_differs 0" {
		t.Errorf("the file is the running configuration, yet: configFileDiffers %v, metric %q, edgelb status:\n%s", st.ConfigFileDiffers, metric, out)
	}

	// The operator adds a pool to the file and restarts the host.
	p.stop(t)
	edited := strings.Replace(cfg, pools, pools+"\n  - {name: extra, addresses: [\"198.51.100.240/29\"]}", 1)
	startIn(t, dir, "lb1", edited)
	eventually(t, 30*time.Second, "the differing file shows", func() error {
		st, out, metric, err := fileDrift()
		switch {
		case err != nil:
			return err
		case !st.ConfigFileDiffers:
			return fmt.Errorf("status configFileDiffers is false")
		case !strings.Contains(out, "config file: its cluster-wide keys (pools, services, ...) differ from the running cluster configuration and are not used") ||
			!strings.Contains(out, "`edgelb config apply -f FILE` makes them the next version"):
			return fmt.Errorf("edgelb status does not say the file differs and how to apply it:\n%s", out)
		case metric != "edgelb_config_file_differs 1":
			return fmt.Errorf("metric %q", metric)
		}
		return nil
	})
	_, out, _, _ = fileDrift()
	t.Logf("edgelb status after the restart over the edited file:\n%s", out)
	code, body := get("/api/v1/config")
	var doc api.ConfigDoc
	if code != 200 || json.Unmarshal([]byte(body), &doc) != nil {
		t.Fatalf("GET /api/v1/config: %d %s", code, body)
	}
	if doc.Version != 1 || strings.Contains(string(doc.Spec), "extra") {
		t.Errorf("the file changed the running configuration: version %d, spec %s", doc.Version, doc.Spec)
	}
	// The new pool is not used: the Service naming it stays pending, the
	// others as they were.
	eventually(t, 20*time.Second, "the states after the restart", func() error { return shows(pending) })
	if st, _, _, _ := fileDrift(); len(st.Pools) != 2 {
		t.Errorf("status pools %+v, want main and one only", st.Pools)
	}
}
