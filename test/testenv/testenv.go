// Package testenv runs a real etcd and kube-apiserver on loopback for
// edgelb's integration tests and benchmarks, and builds the edgelb binary
// under test.
//
// The binaries come from hack/kube/build.sh (make test-bins), cached in
// $EDGELB_TEST_BIN. The API server uses RBAC; tests act as an admin (token
// in group system:masters) and run edgelb as the ServiceAccount of
// packaging/rbac.yaml, with a token from the TokenRequest API, so that the
// shipped role is exactly what the tests exercise.
package testenv

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
)

// Env is a running etcd + kube-apiserver.
type Env struct {
	Dir   string // scratch directory holding kubeconfigs and logs
	URL   string // https://127.0.0.1:port
	Admin kubernetes.Interface
	// AdminKubeconfig and EdgelbKubeconfig are kubeconfig files for the
	// admin and for edgelb's ServiceAccount.
	AdminKubeconfig  string
	EdgelbKubeconfig string

	procs        []*exec.Cmd
	apiserver    *exec.Cmd // also in procs
	apiArgs      []string
	adminToken   string
	readyTimeout time.Duration
}

// Options configures StartWith.
type Options struct {
	// Address is the address the API server listens on and advertises;
	// empty means 127.0.0.1. It must be an address of this host.
	Address string
	// ReadyTimeout is how long the API server may take to become ready;
	// 0 means 90 s. Under CPU emulation (the Debian test bed) it takes
	// minutes.
	ReadyTimeout time.Duration
	// APIServerOnly starts etcd and the API server and writes the admin
	// kubeconfig only: no RBAC applied, no kubeconfig for edgelb. The
	// Debian test bed does those steps itself, as operations.md tells an
	// operator.
	APIServerOnly bool
}

// BinDir returns where the test binaries are, and an error saying how to
// get them when they are missing.
func BinDir() (string, error) {
	dir := os.Getenv("EDGELB_TEST_BIN")
	if dir == "" {
		home, _ := os.UserHomeDir()
		dir = filepath.Join(home, ".cache", "edgelb-test", "bin")
	}
	for _, b := range []string{"etcd", "kube-apiserver", "kubectl"} {
		if _, err := os.Stat(filepath.Join(dir, b)); err != nil {
			return "", fmt.Errorf("%s not found in %s: run `make test-bins`", b, dir)
		}
	}
	return dir, nil
}

// KubectlPath returns the kubectl that hack/kube/build.sh builds beside
// the API server (same minor version), so that no kubectl on PATH is
// needed, nor trusted: Google Cloud SDK's, for one, is a dispatcher.
func KubectlPath() (string, error) {
	dir, err := BinDir()
	if err != nil {
		return "", err
	}
	return filepath.Join(dir, "kubectl"), nil
}

// RepoRoot returns the repository's top directory.
func RepoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

// BuildTags are the build tags of the edgelb binary the tests build: the
// Makefile's TAGS, which `make build` and `make deb` use.
const BuildTags = "nomsgpack"

// BuildEdgelb builds cmd/edgelb into dir and returns the binary's path.
func BuildEdgelb(dir string) (string, error) {
	return build(dir, "edgelb")
}

// BuildCrashCleanup builds the unit's ExecStopPost= binary
// (cmd/edgelb-crash-cleanup) into dir and returns its path.
func BuildCrashCleanup(dir string) (string, error) {
	return build(dir, "edgelb-crash-cleanup")
}

func build(dir, name string) (string, error) {
	out := filepath.Join(dir, name)
	cmd := exec.Command("go", "build", "-tags", BuildTags, "-o", out, "./cmd/"+name)
	cmd.Dir = RepoRoot()
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("building %s: %v\n%s", name, err, b)
	}
	return out, nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// Start launches etcd and kube-apiserver in dir and waits until the API
// server is ready, RBAC from packaging/rbac.yaml is applied and edgelb's
// kubeconfig is written.
func Start(ctx context.Context, dir string) (*Env, error) {
	return StartWith(ctx, dir, Options{})
}

// StartWith is Start with options.
func StartWith(ctx context.Context, dir string, opts Options) (*Env, error) {
	if opts.Address == "" {
		opts.Address = "127.0.0.1"
	}
	bin, err := BinDir()
	if err != nil {
		return nil, err
	}
	e := &Env{Dir: dir, readyTimeout: opts.ReadyTimeout}
	if e.readyTimeout == 0 {
		e.readyTimeout = 90 * time.Second
	}
	ok := false
	defer func() {
		if !ok {
			e.Stop()
		}
	}()
	etcdPort, err := freePort()
	if err != nil {
		return nil, err
	}
	peerPort, err := freePort()
	if err != nil {
		return nil, err
	}
	etcdURL := fmt.Sprintf("http://127.0.0.1:%d", etcdPort)
	peerURL := fmt.Sprintf("http://127.0.0.1:%d", peerPort)
	if err := e.spawn("etcd", filepath.Join(bin, "etcd"),
		"--data-dir", filepath.Join(dir, "etcd"),
		"--listen-client-urls", etcdURL, "--advertise-client-urls", etcdURL,
		"--listen-peer-urls", peerURL, "--initial-advertise-peer-urls", peerURL,
		"--initial-cluster", "default="+peerURL,
		"--unsafe-no-fsync", "--log-level", "warn"); err != nil {
		return nil, err
	}

	adminToken, err := randomHex(16)
	if err != nil {
		return nil, err
	}
	e.adminToken = adminToken
	tokens := filepath.Join(dir, "tokens.csv")
	if err := os.WriteFile(tokens, []byte(adminToken+`,admin,admin,"system:masters"`+"\n"), 0o600); err != nil {
		return nil, err
	}
	saKey := filepath.Join(dir, "sa.key")
	if err := writeRSAKey(saKey); err != nil {
		return nil, err
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	certDir := filepath.Join(dir, "certs")
	e.apiArgs = []string{
		"--etcd-servers", etcdURL,
		"--bind-address", opts.Address, "--advertise-address", opts.Address,
		"--secure-port", fmt.Sprint(port), "--cert-dir", certDir,
		"--token-auth-file", tokens,
		"--authorization-mode", "RBAC",
		"--service-account-issuer", "https://kubernetes.default.svc",
		"--service-account-key-file", saKey,
		"--service-account-signing-key-file", saKey,
		"--api-audiences", "https://kubernetes.default.svc",
		"--service-cluster-ip-range", "10.96.0.0/16,fd00:10:96::/112",
		"--enable-priority-and-fairness=false",
		"--profiling=false", "--v=0"}
	e.URL = fmt.Sprintf("https://%s", net.JoinHostPort(opts.Address, fmt.Sprint(port)))
	if err := e.StartAPIServer(ctx); err != nil {
		return nil, err
	}
	e.AdminKubeconfig = filepath.Join(dir, "admin.kubeconfig")
	if err := writeKubeconfig(e.AdminKubeconfig, e.URL, "admin", adminToken); err != nil {
		return nil, err
	}
	rc, err := clientcmd.BuildConfigFromFlags("", e.AdminKubeconfig)
	if err != nil {
		return nil, err
	}
	rc.QPS, rc.Burst = 200, 400
	if e.Admin, err = kubernetes.NewForConfig(rc); err != nil {
		return nil, err
	}
	if opts.APIServerOnly {
		ok = true
		return e, nil
	}
	if out, err := e.Kubectl(ctx, "apply", "-f", filepath.Join(RepoRoot(), "packaging", "rbac.yaml")); err != nil {
		return nil, fmt.Errorf("applying packaging/rbac.yaml: %v\n%s", err, out)
	}
	tr, err := e.Admin.CoreV1().ServiceAccounts("kube-system").CreateToken(ctx, "edgelb",
		&authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: ptr(int64(24 * 3600))}},
		metav1.CreateOptions{})
	if err != nil {
		return nil, fmt.Errorf("requesting a token for edgelb's ServiceAccount: %w", err)
	}
	e.EdgelbKubeconfig = filepath.Join(dir, "edgelb.kubeconfig")
	if err := writeKubeconfig(e.EdgelbKubeconfig, e.URL, "edgelb", tr.Status.Token); err != nil {
		return nil, err
	}
	ok = true
	return e, nil
}

func ptr[T any](v T) *T { return &v }

// StartAPIServer starts the kube-apiserver again after StopAPIServer, on
// the same address and etcd, and waits until it is ready.
func (e *Env) StartAPIServer(ctx context.Context) error {
	if e.apiserver != nil {
		return errors.New("the API server is running")
	}
	bin, err := BinDir()
	if err != nil {
		return err
	}
	if err := e.spawn("kube-apiserver", filepath.Join(bin, "kube-apiserver"), e.apiArgs...); err != nil {
		return err
	}
	e.apiserver = e.procs[len(e.procs)-1]
	if err := waitReady(ctx, e.URL, e.adminToken, e.readyTimeout); err != nil {
		return fmt.Errorf("%w; the end of kube-apiserver.log:\n%s", err, tail(filepath.Join(e.Dir, "kube-apiserver.log"), 20))
	}
	return nil
}

// StopAPIServer stops the kube-apiserver (SIGTERM, then SIGKILL after
// 30 s) and leaves etcd running: an API server outage.
func (e *Env) StopAPIServer() {
	p := e.apiserver
	if p == nil {
		return
	}
	e.apiserver = nil
	e.procs = slices.DeleteFunc(e.procs, func(c *exec.Cmd) bool { return c == p })
	_ = p.Process.Signal(syscall.SIGTERM)
	t := time.AfterFunc(30*time.Second, func() { _ = p.Process.Kill() })
	_ = p.Wait()
	t.Stop()
}

// spawn starts a process, appending its output to name.log in e.Dir.
func (e *Env) spawn(name, path string, args ...string) error {
	logf, err := os.OpenFile(filepath.Join(e.Dir, name+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	cmd := exec.Command(path, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("starting %s: %w", name, err)
	}
	e.procs = append(e.procs, cmd)
	return nil
}

// CACert returns the certificate, PEM-encoded, of the authority that
// signed the API server's serving certificate: the ca.crt an operator
// gives kubectl config set-cluster --certificate-authority. The API
// server made both itself (--cert-dir), for this run only.
func (e *Env) CACert() ([]byte, error) {
	b, err := os.ReadFile(filepath.Join(e.Dir, "certs", "apiserver.crt"))
	if err != nil {
		return nil, err
	}
	for rest := b; ; {
		var blk *pem.Block
		if blk, rest = pem.Decode(rest); blk == nil {
			return nil, errors.New("the API server's certificate file has no CA certificate")
		}
		if c, err := x509.ParseCertificate(blk.Bytes); err == nil && c.IsCA {
			return pem.EncodeToMemory(blk), nil
		}
	}
}

// Stop kills the API server and etcd, newest first.
func (e *Env) Stop() {
	for i := len(e.procs) - 1; i >= 0; i-- {
		p := e.procs[i]
		_ = p.Process.Kill()
		_ = p.Wait()
	}
	e.procs, e.apiserver = nil, nil
}

// Kubectl runs the real kubectl (KubectlPath) as the admin and returns its
// combined output.
func (e *Env) Kubectl(ctx context.Context, args ...string) (string, error) {
	return e.KubectlStdin(ctx, "", args...)
}

// KubectlStdin runs kubectl with the given standard input.
func (e *Env) KubectlStdin(ctx context.Context, stdin string, args ...string) (string, error) {
	kubectl, err := KubectlPath()
	if err != nil {
		return "", err
	}
	cmd := exec.CommandContext(ctx, kubectl, append([]string{"--kubeconfig", e.AdminKubeconfig}, args...)...)
	cmd.Stdin = strings.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// tail returns the last n lines of a file.
func tail(path string, n int) string {
	b, _ := os.ReadFile(path)
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

func waitReady(ctx context.Context, url, token string, timeout time.Duration) error {
	client := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{TLSClientConfig: insecureTLS()}}
	deadline := time.Now().Add(timeout)
	var last string
	for time.Now().Before(deadline) {
		req, _ := http.NewRequestWithContext(ctx, "GET", url+"/readyz", nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := client.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return nil
			}
			last = resp.Status
		} else {
			last = err.Error()
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
	return fmt.Errorf("kube-apiserver not ready after %v: %s", timeout, last)
}

func writeKubeconfig(path, url, user, token string) error {
	// The test API server's certificate is self-signed for this run only.
	s := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: test
  cluster: {server: %q, insecure-skip-tls-verify: true}
users:
- name: %s
  user: {token: %q}
contexts:
- name: test
  context: {cluster: test, user: %s}
current-context: test
`, url, user, token, user)
	return os.WriteFile(path, []byte(s), 0o600)
}

func writeRSAKey(path string) error {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return err
	}
	b := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(k)})
	return os.WriteFile(path, b, 0o600)
}

func randomHex(n int) (string, error) {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return hex.EncodeToString(b), nil
}

func insecureTLS() *tls.Config {
	return &tls.Config{InsecureSkipVerify: true} //nolint:gosec // self-signed test server
}
