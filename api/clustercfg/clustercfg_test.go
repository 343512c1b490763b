package clustercfg

import (
	"encoding/json"
	"fmt"
	"testing"

	"github.com/edgelb/edgelb/lb/config"
)

const host = "node: {name: lb1}\ncluster: {insecure: true}\n"

func apply(t *testing.T, spec string) *config.Config {
	t.Helper()
	cfg, err := config.NewHost("c.yaml", []byte(host), ".").Apply(json.RawMessage(spec))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func TestEffect(t *testing.T) {
	cur := apply(t, `{"pools":[{"name":"a","addresses":["192.0.2.0/28"]},{"name":"b","addresses":["192.0.2.16/28"]}],
		"services":[{"name":"dns","vip":"198.51.100.53","ports":[{"port":53,"protocol":"UDP"}],"backends":["10.0.0.1:53"]},
		            {"name":"web","vip":"198.51.100.80","ports":[{"port":80}],"backends":["10.0.0.1:80"]}]}`)
	next := apply(t, `{"pools":[{"name":"a","addresses":["192.0.2.0/27"]},{"name":"c","addresses":["203.0.113.0/28"]}],
		"services":[{"name":"dns","vip":"198.51.100.53","ports":[{"port":53,"protocol":"UDP"}],"backends":["10.0.0.2:53"]},
		            {"name":"ntp","vip":"198.51.100.123","ports":[{"port":123,"protocol":"UDP"}],"backends":["10.0.0.1:123"]}],
		"healthCheck":{"interval":"5s"}}`)
	e := Effect(cur, next)
	got := fmt.Sprint(e.VIPsAdded, e.VIPsRemoved, e.ServicesAdded, e.ServicesRemoved, e.ServicesChanged,
		e.PoolsAdded, e.PoolsRemoved, e.PoolsChanged, e.Other)
	want := "[198.51.100.123] [198.51.100.80] [ntp] [web] [dns] [c] [b] [a] [healthCheck]"
	if got != want {
		t.Errorf("effect %s, want %s", got, want)
	}
	if e := Effect(cur, cur); fmt.Sprint(e.VIPsAdded, e.ServicesChanged, e.PoolsChanged, e.Other) != "[] [] [] []" {
		t.Errorf("no change gives %+v", e)
	}
}
