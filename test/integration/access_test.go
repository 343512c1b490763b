package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/edgelb/edgelb/api"
	"github.com/edgelb/edgelb/lb/k8s"
)

// A running edgelb whose RBAC is taken away, then whose token is revoked,
// says so where an operator looks — GET /api/v1/status (kubernetes.problem),
// /readyz and the metric edgelb_kubernetes_access_ok — within one access
// check (k8s.AccessInterval), while /readyz stays 200: the dataplane keeps
// what it has. Before that, the Service's Events are read from the real
// API server through GET /api/v1/services/{namespace}/{name}/events.
func TestKubernetesAccessProblemsShow(t *testing.T) {
	const ns, class, sa = "access", "edgelb.io/access", "edgelb-access"
	const viewer = "viewer-token-0123456789"
	ctx := context.Background()
	createNamespace(t, ns)
	kubeconfig := serviceAccountKubeconfig(t, sa)

	cfg := config(t, "lb1", class, "lease-access", `  - {name: main, addresses: ["198.51.100.208/29"]}`)
	cfg = strings.Replace(cfg, "kubeconfig: "+env.EdgelbKubeconfig, "kubeconfig: "+kubeconfig, 1)
	cfg += "  tokens: {viewer: [\"" + viewer + "\"]}\n"
	base := "http://" + regexp.MustCompile(`listen: "([^"]+)"`).FindStringSubmatch(cfg)[1]
	start(t, "lb1", cfg)
	createService(t, lbService(ns, "web", class, 80))
	ip := waitIPs(t, ns, "web", 1)[0]

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
	// state reads what the three places say.
	state := func() (status api.Status, ready api.Readiness, readyCode int, metric string, err error) {
		code, body := get("/api/v1/status")
		if code != 200 {
			return status, ready, 0, "", fmt.Errorf("status: %d %s", code, body)
		}
		if err = json.Unmarshal([]byte(body), &status); err != nil {
			return
		}
		readyCode, body = get("/readyz")
		if err = json.Unmarshal([]byte(body), &ready); err != nil {
			return
		}
		_, body = get("/metrics")
		metric = regexp.MustCompile(`(?m)^edgelb_kubernetes_access_ok \S+$`).FindString(body)
		return
	}
	expect := func(what string, timeout time.Duration, problem *regexp.Regexp, metric string) {
		t.Helper()
		start := time.Now()
		eventually(t, timeout, what, func() error {
			st, rd, code, m, err := state()
			switch {
			case err != nil:
				return err
			case st.Kubernetes == nil || !problem.MatchString(st.Kubernetes.Problem):
				return fmt.Errorf("status kubernetes = %+v, want a problem matching %s", st.Kubernetes, problem)
			case rd.Kubernetes == nil || rd.Kubernetes.Problem != st.Kubernetes.Problem:
				return fmt.Errorf("/readyz kubernetes = %+v, want the status's", rd.Kubernetes)
			case code != 200 || rd.Status != "ready":
				return fmt.Errorf("/readyz %d %+v: a Kubernetes problem must not make the host not ready", code, rd)
			case m != "edgelb_kubernetes_access_ok "+metric:
				return fmt.Errorf("metric %q, want %s", m, metric)
			}
			return nil
		})
		t.Logf("%s after %v", what, time.Since(start).Round(time.Second))
	}

	expect("every permission granted", 20*time.Second, regexp.MustCompile(`^$`), "1")
	eventually(t, 20*time.Second, "the Service's Events through the API", func() error {
		code, body := get("/api/v1/services/" + ns + "/web/events")
		var evs []api.ServiceEvent
		if code != 200 || json.Unmarshal([]byte(body), &evs) != nil {
			return fmt.Errorf("%d %s", code, body)
		}
		for _, e := range evs {
			if e.Reason == "IPAllocated" && strings.Contains(e.Message, ip) && e.From == "edgelb/lb1" {
				return nil
			}
		}
		return fmt.Errorf("no IPAllocated Event for %s from edgelb/lb1 in %s", ip, body)
	})

	check := k8s.AccessInterval + 20*time.Second
	if err := env.Admin.RbacV1().ClusterRoleBindings().Delete(ctx, sa, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	expect("RBAC removed (403 on every cluster-wide permission)", check,
		regexp.MustCompile(`may not list services, watch services, update services/status, .*apply packaging/rbac.yaml`), "0")

	if err := env.Admin.CoreV1().ServiceAccounts("kube-system").Delete(ctx, sa, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	expect("the token revoked (its ServiceAccount deleted: 401)", check,
		regexp.MustCompile(`401 Unauthorized.*expired or was revoked`), "0")
	if svc := getService(t, ns, "web"); len(ingressIPs(svc)) != 1 || ingressIPs(svc)[0] != ip {
		t.Errorf("the Service's address changed: %v", ingressIPs(svc))
	}
}

// A cluster that applied packaging/rbac.yaml before it granted the patch
// of services/status keeps working after an upgrade: edgelb writes each
// status by reading the Service and updating it, keeps what its cache
// leaves out (labels, other tools' annotations), and says where the
// operator looks that the RBAC must be applied again.
func TestStatusWithRBACBeforePatch(t *testing.T) {
	const ns, class, sa = "oldrbac", "edgelb.io/oldrbac", "edgelb-oldrbac"
	ctx := context.Background()
	createNamespace(t, ns)
	role, err := env.Admin.RbacV1().ClusterRoles().Get(ctx, "edgelb", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	old := &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: sa}}
	for _, r := range role.Rules {
		if slices.Contains(r.Resources, "services/status") {
			r.Verbs = slices.DeleteFunc(slices.Clone(r.Verbs), func(v string) bool { return v == "patch" })
		}
		old.Rules = append(old.Rules, r)
	}
	if _, err := env.Admin.RbacV1().ClusterRoles().Create(ctx, old, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = env.Admin.RbacV1().ClusterRoles().Delete(ctx, sa, metav1.DeleteOptions{}) })
	kubeconfig := serviceAccountKubeconfigWithRole(t, sa, sa)

	cfg := config(t, "lb1", class, "lease-oldrbac", `  - {name: main, addresses: ["198.51.100.216/29"]}`)
	cfg = strings.Replace(cfg, "kubeconfig: "+env.EdgelbKubeconfig, "kubeconfig: "+kubeconfig, 1)
	base := "http://" + regexp.MustCompile(`listen: "([^"]+)"`).FindStringSubmatch(cfg)[1]
	start(t, "lb1", cfg)
	svc := lbService(ns, "web", class, 80)
	svc.Labels = map[string]string{"app.kubernetes.io/managed-by": "Helm"}
	svc.Annotations["meta.helm.sh/release-name"] = "web"
	createService(t, svc)
	waitIPs(t, ns, "web", 1)
	got := getService(t, ns, "web")
	if got.Labels["app.kubernetes.io/managed-by"] != "Helm" || got.Annotations["meta.helm.sh/release-name"] != "web" {
		t.Errorf("the metadata changed with edgelb's status write: labels %v, annotations %v", got.Labels, got.Annotations)
	}
	eventually(t, 20*time.Second, "the missing permission in the status", func() error {
		resp, err := http.Get(base + "/api/v1/status")
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		var st api.Status
		if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
			return err
		}
		if st.Kubernetes == nil || !strings.Contains(st.Kubernetes.Problem, "may not patch services/status") {
			return fmt.Errorf("kubernetes = %+v", st.Kubernetes)
		}
		return nil
	})
}

// serviceAccountKubeconfig makes a ServiceAccount of its own with the
// bindings of packaging/rbac.yaml (ClusterRole edgelb, Role
// edgelb-leader-election), a token for it, and a kubeconfig with that
// token; each is named sa, so the test can take them away.
func serviceAccountKubeconfig(t *testing.T, sa string) string {
	t.Helper()
	return serviceAccountKubeconfigWithRole(t, sa, "edgelb")
}

// serviceAccountKubeconfigWithRole is serviceAccountKubeconfig with the
// ClusterRole named role instead of edgelb.
func serviceAccountKubeconfigWithRole(t *testing.T, sa, role string) string {
	t.Helper()
	ctx := context.Background()
	const ns = "kube-system"
	subject := []rbacv1.Subject{{Kind: "ServiceAccount", Name: sa, Namespace: ns}}
	if _, err := env.Admin.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: sa}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := env.Admin.RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: sa},
		RoleRef: rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: role}, Subjects: subject}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := env.Admin.RbacV1().RoleBindings(ns).Create(ctx, &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: sa},
		RoleRef: rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: "edgelb-leader-election"}, Subjects: subject}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = env.Admin.RbacV1().ClusterRoleBindings().Delete(ctx, sa, metav1.DeleteOptions{})
		_ = env.Admin.RbacV1().RoleBindings(ns).Delete(ctx, sa, metav1.DeleteOptions{})
		_ = env.Admin.CoreV1().ServiceAccounts(ns).Delete(ctx, sa, metav1.DeleteOptions{})
	})
	// Valid for longer than the 30 days within which edgelb warns.
	days90 := int64(90 * 24 * 3600)
	tr, err := env.Admin.CoreV1().ServiceAccounts(ns).CreateToken(ctx, sa,
		&authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: &days90}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	kc, err := clientcmd.LoadFromFile(env.EdgelbKubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range kc.AuthInfos {
		a.Token = tr.Status.Token
	}
	path := filepath.Join(t.TempDir(), sa+".kubeconfig")
	if err := clientcmd.WriteToFile(*kc, path); err != nil {
		t.Fatal(err)
	}
	return path
}
