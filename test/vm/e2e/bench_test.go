//go:build vm

package e2e

import (
	"bufio"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/edgelb/edgelb/lb"
	"github.com/edgelb/edgelb/lb/ipvs"
)

// benchDesired returns n virtual services with m backends each; backend
// addresses are shifted by shift so that a new state replaces backends.
func benchDesired(n, m int) *lb.Desired {
	d := &lb.Desired{Services: make([]lb.VirtualService, 0, n)}
	for i := range n {
		vs := lb.VirtualService{
			Key:       lb.Key{VIP: netip.AddrFrom4([4]byte{10, 100, byte(i / 250), byte(i%250 + 1)}), Port: 80, Protocol: lb.TCP},
			Source:    lb.Source{Name: "bench"},
			Scheduler: "rr",
			Method:    lb.NAT,
		}
		for j := range m {
			vs.Backends = append(vs.Backends, lb.Backend{Addr: netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 200, byte(j), byte(i%250 + 1)}), uint16(30000+i/250)), Weight: 1})
		}
		d.Services = append(d.Services, vs)
	}
	return d
}

// BenchmarkIPVSProgramming reports, on the VM's real kernel, the time to
// program 10,000 virtual services x 10 real servers from empty, the time
// for one endpoint change to reach the kernel at that size, and the time of
// a full resync pass that changes nothing.
func BenchmarkIPVSProgramming(b *testing.B) {
	if err := ipvs.Prepare(ipvs.PrepareOptions{Schedulers: []string{"rr"}}); err != nil {
		b.Fatal(err)
	}
	k := ipvs.NewKernel()
	defer k.Close()
	const nVS, nRS = 10000, 10
	for range b.N {
		store := lb.NewStore()
		dp := ipvs.New(ipvs.Options{IPVS: k, Store: store, Log: slog.New(slog.DiscardHandler),
			Owns: func(a netip.Addr) bool { return a.As4()[0] == 10 && a.As4()[1] == 100 }})
		d := benchDesired(nVS, nRS)
		store.Set(d)
		start := time.Now()
		if err := dp.SyncOnce(true); err != nil {
			b.Fatal(err)
		}
		full := time.Since(start)

		// One endpoint change: one backend of one service replaced.
		d2 := &lb.Desired{Services: append([]lb.VirtualService(nil), d.Services...)}
		vs := &d2.Services[nVS/2]
		vs.Backends = append(append([]lb.Backend(nil), vs.Backends[1:]...), lb.Backend{Addr: netip.MustParseAddrPort("10.201.0.1:31000"), Weight: 1})
		store.Set(d2)
		start = time.Now()
		if err := dp.SyncOnce(false); err != nil {
			b.Fatal(err)
		}
		one := time.Since(start)

		start = time.Now()
		if err := dp.SyncOnce(true); err != nil {
			b.Fatal(err)
		}
		resync := time.Since(start)

		kvs, _ := k.GetVirtualServers()
		if len(kvs) != nVS {
			b.Fatalf("kernel holds %d virtual services, want %d", len(kvs), nVS)
		}
		store.Set(&lb.Desired{})
		start = time.Now()
		if err := dp.SyncOnce(true); err != nil {
			b.Fatal(err)
		}
		del := time.Since(start)
		b.ReportMetric(full.Seconds(), "s/full-sync")
		b.ReportMetric(float64(one.Microseconds())/1000, "ms/one-change")
		b.ReportMetric(resync.Seconds(), "s/noop-resync")
		b.ReportMetric(del.Seconds(), "s/delete-all")
		fmt.Printf("FIGURE full sync of %d x %d: %s; one endpoint change: %s; full no-op resync: %s; delete all: %s\n",
			nVS, nRS, full.Round(time.Millisecond), one.Round(10*time.Microsecond), resync.Round(time.Millisecond), del.Round(time.Millisecond))
	}
}

func rps(b *testing.B, url string, secs, conns int) float64 {
	self, _ := os.Executable()
	cmd := exec.Command("ip", "netns", "exec", "client", self)
	cmd.Env = append(os.Environ(), "EDGELB_HELPER=load", fmt.Sprintf("EDGELB_ARGS=%s %d %d", url, secs, conns))
	out, err := cmd.Output()
	if err != nil {
		b.Fatalf("load %s: %v", url, err)
	}
	var r struct{ RPS float64 }
	if err := json.NewDecoder(bufio.NewReader(strings.NewReader(string(out)))).Decode(&r); err != nil {
		b.Fatalf("load output %q: %v", out, err)
	}
	return r.RPS
}

// BenchmarkVIPThroughput reports requests per second through the VIP (nat,
// source NAT, three nodes) and straight to one node, on the same run.
func BenchmarkVIPThroughput(b *testing.B) {
	if _, err := os.Stat("/run/netns/client"); err != nil {
		topology(b)
		sh(b, `ip -n lb1 addr add 10.0.0.100/32 dev eth0`)
		cfg := config("lb1", "nat", "  - {name: web, vip: 10.0.0.100, ports: [{port: 80, targetPort: 30080}], backends: [10.0.0.21, 10.0.0.22, 10.0.0.23]}\n")
		os.WriteFile("/tmp/bench-lb1.yaml", []byte(cfg), 0o644)
		cmd := exec.Command("ip", "netns", "exec", "lb1", edgelbBin, "run", "--config", "/tmp/bench-lb1.yaml")
		if err := cmd.Start(); err != nil {
			b.Fatal(err)
		}
		defer cmd.Process.Kill()
		deadline := time.Now().Add(30 * time.Second)
		for {
			out, _ := exec.Command("ip", "netns", "exec", "lb1", "ipvsadm", "-Ln").Output()
			if strings.Contains(string(out), "10.0.0.23:30080") {
				break
			}
			if time.Now().After(deadline) {
				b.Fatal("edgelb did not program the VIP")
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	for range b.N {
		direct := rps(b, "http://10.0.0.21:30080/", 5, 8)
		vip := rps(b, "http://10.0.0.100/", 5, 8)
		b.ReportMetric(vip, "req/s-vip")
		b.ReportMetric(direct, "req/s-direct")
		b.ReportMetric(vip/direct, "vip/direct")
		fmt.Printf("FIGURE requests/s through the VIP: %.0f; straight to one backend: %.0f; ratio %.2f\n", vip, direct, vip/direct)
	}
}
