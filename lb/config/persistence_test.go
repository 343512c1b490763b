package config_test

import (
	"strings"
	"testing"
	"time"

	"github.com/edgelb/edgelb/lb/config"
)

func TestStaticServicePersistence(t *testing.T) {
	base := "node: {name: lb1, interface: eth0}\ncluster: {bindAddr: 10.0.0.11, insecure: true}\nservices:\n" +
		"  - name: web\n    vip: 192.0.2.1\n    ports: [{port: 80}]\n    backends: [\"10.0.0.1:80\"]\n"
	cfg, err := config.Parse("edgelb.yaml", []byte(base+"    persistence: 30m\n"))
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.Services[0].Persistence; got != 30*time.Minute {
		t.Fatalf("persistence = %s, want 30m", got)
	}
	_, err = config.Parse("edgelb.yaml", []byte(base+"    persistence: forever\n"))
	if err == nil || !strings.Contains(err.Error(), "edgelb.yaml:8") || !strings.Contains(err.Error(), "services[0].persistence") {
		t.Fatalf("bad persistence: err = %v, want file:line naming services[0].persistence", err)
	}
}
