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
	"syscall"
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

// benchEdgelb (re)starts edgelb in lb1 with services and waits until
// 10.0.0.100:80 is programmed and, when want is not empty, the filter
// table holds it.
func benchEdgelb(b *testing.B, prev *exec.Cmd, services, want string) *exec.Cmd {
	if prev != nil {
		prev.Process.Signal(syscall.SIGTERM)
		prev.Wait()
	}
	os.WriteFile("/tmp/bench-lb1.yaml", []byte(config("lb1", "nat", services)), 0o644)
	cmd := exec.Command("ip", "netns", "exec", "lb1", edgelbBin, "run", "--config", "/tmp/bench-lb1.yaml")
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		out, _ := exec.Command("ip", "netns", "exec", "lb1", "ipvsadm", "-Ln").Output()
		addrs, _ := exec.Command("ip", "-n", "lb1", "-br", "addr", "show", "dev", "eth0").Output()
		nft, _ := exec.Command("ip", "netns", "exec", "lb1", "nft", "list", "ruleset").Output()
		if strings.Contains(string(out), "10.0.0.23:30080") && strings.Contains(string(addrs), "10.0.0.100/") &&
			(want == "" || strings.Contains(string(nft), want)) {
			return cmd
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			b.Fatal("edgelb did not program the VIPs")
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// hundredRanges is a sourceRanges list of 100 ranges that do not merge,
// the client's 10.0.0.2 in the last one.
func hundredRanges() string {
	var rs []string
	for j := range 99 {
		rs = append(rs, fmt.Sprintf("172.16.%d.0/24", 2*j))
	}
	return "[" + strings.Join(append(rs, "10.0.0.0/29"), ", ") + "]"
}

// BenchmarkVIPThroughput reports requests per second through the VIP (nat,
// source NAT, three nodes) and straight to one node, on the same run; then
// through the same VIP with the source-range filter in place but the VIP
// unrestricted, and through a second VIP restricted by 100 ranges.
func BenchmarkVIPThroughput(b *testing.B) {
	if _, err := os.Stat("/run/netns/client"); err != nil {
		topology(b)
	}
	const web = "  - {name: web, vip: 10.0.0.100, ports: [{port: 80, targetPort: 30080}], backends: [10.0.0.21, 10.0.0.22, 10.0.0.23]}\n"
	ranged := fmt.Sprintf("  - {name: ranged, vip: 10.0.0.103, sourceRanges: %s, ports: [{port: 80, targetPort: 30080}], backends: [10.0.0.21, 10.0.0.22, 10.0.0.23]}\n", hundredRanges())
	for range b.N {
		// Alternate the measurements so that a busy host weighs on all
		// of them alike: 3 rounds of 3 s each.
		var direct, vip, vipFilter, vipRanged float64
		cmd := benchEdgelb(b, nil, web, "")
		for range 3 {
			direct += rps(b, "http://10.0.0.21:30080/", 3, 8) / 3
			vip += rps(b, "http://10.0.0.100/", 3, 8) / 3
		}
		cmd = benchEdgelb(b, cmd, web+ranged, "10.0.0.0/29")
		for range 3 {
			vipFilter += rps(b, "http://10.0.0.100/", 3, 8) / 3
			vipRanged += rps(b, "http://10.0.0.103/", 3, 8) / 3
		}
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
		b.ReportMetric(vip, "req/s-vip")
		b.ReportMetric(direct, "req/s-direct")
		b.ReportMetric(vip/direct, "vip/direct")
		b.ReportMetric(vipFilter, "req/s-vip-filter-table")
		b.ReportMetric(vipRanged, "req/s-vip-100-ranges")
		fmt.Printf("FIGURE requests/s through the VIP: %.0f; straight to one backend: %.0f; ratio %.2f\n", vip, direct, vip/direct)
		fmt.Printf("FIGURE requests/s: VIP without ranges, no filter table: %.0f; with the filter table (this VIP unrestricted): %.0f; a VIP with 100 source ranges, same edgelb: %.0f (%.2f of the unrestricted VIP beside it)\n",
			vip, vipFilter, vipRanged, vipRanged/vipFilter)
	}
}
