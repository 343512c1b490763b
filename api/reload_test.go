package api_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/edgelb/edgelb/api"
	"github.com/edgelb/edgelb/api/apitest"
)

// writeCert writes a self-signed certificate for name and its key to dir.
func writeCert(t *testing.T, dir, name string) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name}, DNSNames: []string{name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, _ := x509.MarshalECPrivateKey(key)
	certFile, keyFile = filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key")
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600)
	return certFile, keyFile
}

// systemctl reload: new connections get the new certificate, requests
// are checked against the new tokens (the old one is refused), the names
// of the new certificate are served; a certificate that cannot be loaded
// is refused and the old one stays.
func TestReloadTokensAndCertificate(t *testing.T) {
	dir := t.TempDir()
	certA, keyA := writeCert(t, dir, "lb-a.example")
	certB, keyB := writeCert(t, dir, "lb-b.example")
	f := apitest.Sample()
	opts := api.Options{State: f, Bus: f.Bus, Log: slog.New(slog.DiscardHandler), CertFile: certA, KeyFile: keyA,
		Tokens: map[string][]string{"admin": {adminTok}}}
	s := api.New(opts)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, ln) }()
	defer func() { cancel(); <-done }()

	get := func(host, token string) (int, string) {
		t.Helper()
		tr := &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, DisableKeepAlives: true}
		req, _ := http.NewRequest("GET", "https://"+ln.Addr().String()+"/api/v1/status", nil)
		req.Host = host
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := (&http.Client{Transport: tr, Timeout: 5 * time.Second}).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		return resp.StatusCode, resp.TLS.PeerCertificates[0].Subject.CommonName
	}
	if code, cn := get("lb-a.example", adminTok); code != 200 || cn != "lb-a.example" {
		t.Fatalf("before the reload: %d from %s", code, cn)
	}
	const newTok = "admin-token-rotated-0123"
	reload := opts
	reload.Tokens = map[string][]string{"admin": {newTok}}
	reload.CertFile, reload.KeyFile = certB, keyB
	if err := s.Reload(reload); err != nil {
		t.Fatal(err)
	}
	if code, cn := get("lb-b.example", newTok); code != 200 || cn != "lb-b.example" {
		t.Fatalf("after the reload: %d from %s, want 200 from lb-b.example", code, cn)
	}
	if code, _ := get("lb-b.example", adminTok); code != http.StatusUnauthorized {
		t.Fatalf("the old token after the reload: %d, want 401", code)
	}
	broken := reload
	broken.CertFile = filepath.Join(dir, "missing.crt")
	if err := s.Reload(broken); err == nil {
		t.Fatal("a missing certificate was taken")
	}
	if code, cn := get("lb-b.example", newTok); code != 200 || cn != "lb-b.example" {
		t.Fatalf("after a refused reload: %d from %s", code, cn)
	}
}
