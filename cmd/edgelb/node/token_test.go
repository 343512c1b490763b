package node

import (
	"context"
	"encoding/base64"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/edgelb/edgelb/lb/config"
	"github.com/edgelb/edgelb/test/prereq"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// The expiry of a ServiceAccount token in the kubeconfig is read from its
// exp claim; a kubeconfig without a JWT says nothing.
func TestTokenExpiry(t *testing.T) {
	dir := t.TempDir()
	exp := time.Now().Add(10 * 24 * time.Hour).Truncate(time.Second).UTC()
	jwt := func(payload string) string {
		enc := base64.RawURLEncoding.EncodeToString
		return enc([]byte(`{"alg":"RS256"}`)) + "." + enc([]byte(payload)) + ".c2ln"
	}
	kubeconfig := func(name, token string) string {
		path := filepath.Join(dir, name)
		os.WriteFile(path, []byte(fmt.Sprintf(`apiVersion: v1
kind: Config
clusters: [{name: k, cluster: {server: "https://192.0.2.1:6443"}}]
users: [{name: edgelb, user: {token: %q}}]
contexts: [{name: k, context: {cluster: k, user: edgelb}}]
current-context: k
`, token)), 0o600)
		return path
	}
	got, ok := TokenExpiry(&config.Kubernetes{Kubeconfig: kubeconfig("jwt", jwt(fmt.Sprintf(`{"exp":%d,"sub":"system:serviceaccount:kube-system:edgelb"}`, exp.Unix())))})
	if !ok || !got.Equal(exp) {
		t.Fatalf("TokenExpiry = %s, %v; want %s", got, ok, exp)
	}
	if _, ok := TokenExpiry(&config.Kubernetes{Kubeconfig: kubeconfig("static", "not-a-jwt")}); ok {
		t.Fatal("an expiry for a token that is not a JWT")
	}
	if _, ok := TokenExpiry(&config.Kubernetes{Kubeconfig: filepath.Join(dir, "missing")}); ok {
		t.Fatal("an expiry without a kubeconfig")
	}
}

// check names a file the service's user cannot read, by its mode bits.
func TestReadableBy(t *testing.T) {
	if os.Geteuid() != 0 {
		prereq.Missing(t, "the check of another user's access runs as root")
	}
	path := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(path, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := readableBy(path, "nobody"); err == nil {
		t.Fatal("a root-only file is readable by nobody")
	}
	os.Chmod(path, 0o644)
	if err := readableBy(path, "nobody"); err != nil {
		t.Fatalf("a world-readable file: %v", err)
	}
	if err := readableBy(path, "no-such-user-here"); err != nil {
		t.Fatalf("an unknown user: %v", err)
	}
}

// The kubeconfig's inline token is sent as it is now: a reload that reads
// a new one makes the next request carry it, without a new client.
func TestKubeTokenReload(t *testing.T) {
	var got atomic.Value
	// client-go sends credentials only over TLS.
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got.Store(r.Header.Get("Authorization"))
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"kind":"NodeList","apiVersion":"v1","items":[]}`))
	}))
	defer srv.Close()
	dir := t.TempDir()
	path := filepath.Join(dir, "kubeconfig")
	write := func(token string) {
		os.WriteFile(path, []byte(fmt.Sprintf(`apiVersion: v1
kind: Config
clusters: [{name: k, cluster: {server: %q, insecure-skip-tls-verify: true}}]
users: [{name: edgelb, user: {token: %q}}]
contexts: [{name: k, context: {cluster: k, user: edgelb}}]
current-context: k
`, srv.URL, token)), 0o600)
	}
	write("first-token")
	client, _, tok, err := kubeClients(&config.Kubernetes{Kubeconfig: path, QPS: 50, Burst: 100, EventQPS: 50, EventBurst: 100}, "test", slog.New(slog.DiscardHandler))
	if err != nil || tok == nil {
		t.Fatalf("kubeClient: %v, token holder %v", err, tok)
	}
	list := func() string {
		t.Helper()
		if _, err := client.CoreV1().Nodes().List(context.Background(), metav1.ListOptions{}); err != nil {
			t.Fatal(err)
		}
		return got.Load().(string)
	}
	if h := list(); h != "Bearer first-token" {
		t.Fatalf("Authorization %q", h)
	}
	write("second-token")
	if err := tok.reload(path); err != nil {
		t.Fatal(err)
	}
	if h := list(); h != "Bearer second-token" {
		t.Fatalf("Authorization %q after the reload", h)
	}
}
