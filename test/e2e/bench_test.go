package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/edgelb/edgelb/test/nslab"
	"github.com/edgelb/edgelb/test/prereq"
)

// BenchmarkFailover measures the client-visible outage of a crash (the
// owner's link cut) and of a graceful stop (SIGTERM) over ELBT_TRIALS
// trials (default 10), each on a fresh three-host lab, with a client
// probing the VIP every 10 ms (300 ms timeout per probe). It reports
// figures, not a pass/fail timing: `make bench-failover`. With
// ELBT_VERBOSE set it prints the hosts' logs of every trial slower than
// 300 ms.
func BenchmarkFailover(b *testing.B) {
	nslab.Require(b)
	trials := 10
	if n, err := strconv.Atoi(os.Getenv("ELBT_TRIALS")); err == nil && n > 0 {
		trials = n
	}
	var crashes, boths []time.Duration
	var stopFailed []int
	for i := range trials {
		l := startCluster(b, 3)
		cut := time.Now()
		d, both, old, _ := crashMeasured(b, l, vip4)
		crashes = append(crashes, d)
		boths = append(boths, both)
		if os.Getenv("ELBT_VERBOSE") != "" && d > 300*time.Millisecond {
			// A slow trial: what each host logged from the cut on.
			fmt.Printf("--- trial %d: outage %d ms, cut at %s\n", i+1, d.Milliseconds(), cut.UTC().Format("15:04:05.000"))
			for _, h := range l.Hosts {
				fmt.Printf("--- edgelb log of %s:\n%s", h.Name, h.Log.String())
			}
		}
		// Heal, let the cluster settle, then stop the owner gracefully.
		old.SetLink(true)
		if !nslab.Poll(converge, func() bool { hs := l.Holders(vip4); return len(hs) == 1 && hs[0] == old }) {
			b.Fatalf("trial %d: %s did not take %s back after healing", i, old.Name, vip4)
		}
		l.StableOwner(vip4, 500*time.Millisecond)
		failed, _, _ := gracefulStop(b, l, vip4)
		stopFailed = append(stopFailed, failed)
		l.Cleanup()
		fmt.Printf("trial %2d: crash outage %4d ms (on two other hosts %d ms), graceful stop %d failed probes\n", i+1, crashes[i].Milliseconds(), both.Milliseconds(), failed)
	}
	med, mx := stats(crashes)
	total := 0
	for _, f := range stopFailed {
		total += f
	}
	_, maxBoth := stats(boths)
	fmt.Printf("crash (link cut), %d trials: median %d ms, max %d ms; the VIP on two other hosts at once: at most %d ms in one trial\n", trials, med.Milliseconds(), mx.Milliseconds(), maxBoth.Milliseconds())
	fmt.Printf("graceful stop (SIGTERM), %d trials: %d failed probes in all (max %d in one trial)\n", trials, total, slices.Max(stopFailed))
	b.ReportMetric(float64(med.Milliseconds()), "crash-median-ms")
	b.ReportMetric(float64(mx.Milliseconds()), "crash-max-ms")
	b.ReportMetric(float64(maxBoth.Milliseconds()), "crash-two-hosts-max-ms")
	b.ReportMetric(float64(total), "graceful-failed-probes")
}

func stats(ds []time.Duration) (median, max time.Duration) {
	s := slices.Clone(ds)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		median = s[n/2]
	} else {
		median = (s[n/2-1] + s[n/2]) / 2
	}
	return median, s[n-1]
}

// BenchmarkConfigPropagation measures how long a change of the cluster
// configuration takes to reach every host: ELBT_CHANGES changes (default
// 50), each a static service's port changed with `edgelb config apply`
// on h1, on a three-host lab. For each it takes, from the hosts' logs,
// when each built its desired state from the new version, and reports
// the time from just before the apply (the CLI's start included) to the
// last host, and from h1 to the last host (the gossip alone).
func BenchmarkConfigPropagation(b *testing.B) {
	nslab.Require(b)
	changes := 50
	if n, err := strconv.Atoi(os.Getenv("ELBT_CHANGES")); err == nil && n > 0 {
		changes = n
	}
	for range b.N {
		l := startCluster(b, 3)
		h1 := l.Hosts[0]
		spec := filepath.Join(l.Dir, "spec.yaml")
		var total, gossip, acked []time.Duration
		for i := range changes {
			nslab.WriteFile(b, spec, fmt.Sprintf(`services:
  - {name: web4, vip: %s, ports: [{port: 8080}]}
  - {name: web6, vip: "%s", ports: [{port: 8080}]}
  - {name: bench, vip: 10.99.0.151, ports: [{port: %d}]}
`, vip4, vip6, 9000+i))
			start := time.Now()
			out, err := h1.Edgelb("config", "apply", "-f", spec, "--api", "http://127.0.0.1:9080")
			var v int
			if _, serr := fmt.Sscanf(out, "applied: version %d", &v); err != nil || serr != nil {
				b.Fatalf("edgelb config apply: %v\n%s", err, out)
			}
			acked = append(acked, time.Since(start))
			var at []time.Time
			if !nslab.Poll(converge, func() bool {
				at = at[:0]
				for _, h := range l.Hosts {
					t, ok := builtAt(h.Log.String(), v)
					if !ok {
						return false
					}
					at = append(at, t)
				}
				return true
			}) {
				b.Fatalf("change %d: not every host built version %d", i, v)
			}
			last := slices.MaxFunc(at, func(x, y time.Time) int { return x.Compare(y) })
			total = append(total, last.Sub(start))
			gossip = append(gossip, last.Sub(at[0]))
		}
		// The leader lost: SIGKILL the host the consensus log last
		// named leader, then apply through another until a change is
		// acknowledged again.
		leader := lastLeader(h1.Log.String())
		var lost time.Duration
		for _, h := range l.Hosts {
			if !strings.HasPrefix(leader, h.IP4.String()+":") {
				continue
			}
			other := l.Hosts[0]
			if other == h {
				other = l.Hosts[1]
			}
			nslab.WriteFile(b, spec, "services: []\n")
			h.Kill()
			start := time.Now()
			if !nslab.Poll(converge, func() bool {
				out, err := other.Edgelb("config", "apply", "-f", spec, "--api", "http://127.0.0.1:9080")
				return err == nil && strings.HasPrefix(out, "applied: version")
			}) {
				b.Fatalf("no change acknowledged within %v of losing the leader %s", converge, h.Name)
			}
			lost = time.Since(start)
		}
		if lost == 0 {
			b.Fatalf("no host is the leader %q the log names", leader)
		}
		l.Cleanup()
		p := func(ds []time.Duration, q float64) time.Duration {
			s := slices.Clone(ds)
			slices.Sort(s)
			return s[min(len(s)-1, int(q*float64(len(s))))]
		}
		fmt.Printf("FIGURE cluster configuration, %d changes on h1 -> built on all three hosts: p50 %v, p99 %v, max %v (from h1's own build: p50 %v, p99 %v)\n",
			changes, p(total, .5).Round(time.Millisecond), p(total, .99).Round(time.Millisecond), slices.Max(total).Round(time.Millisecond),
			p(gossip, .5).Round(time.Millisecond), p(gossip, .99).Round(time.Millisecond))
		fmt.Printf("FIGURE cluster configuration, edgelb config apply on h1 -> acknowledged (committed by a majority; the CLI's start and its read included): p50 %v, p99 %v\n",
			p(acked, .5).Round(time.Millisecond), p(acked, .99).Round(time.Millisecond))
		fmt.Printf("FIGURE cluster configuration, the leader SIGKILLed -> a change acknowledged again through another host: %v\n", lost.Round(time.Millisecond))
		b.ReportMetric(float64(p(total, .5).Microseconds())/1000, "p50-ms")
		b.ReportMetric(float64(p(total, .99).Microseconds())/1000, "p99-ms")
	}
}

// lastLeader returns the member the last "consensus leader" line of a
// host's log names (ip:port), "" without one.
func lastLeader(log string) string {
	leader := ""
	for _, l := range strings.Split(log, "\n") {
		if !strings.Contains(l, `msg="consensus leader"`) {
			continue
		}
		if _, v, ok := strings.Cut(l, " leader="); ok {
			leader, _, _ = strings.Cut(v, " ")
		}
	}
	return leader
}

// builtAt returns the time of the log line in which a host built its
// desired state from version v.
func builtAt(log string, v int) (time.Time, bool) {
	want := fmt.Sprintf(" version=%d ", v)
	for _, l := range strings.Split(log, "\n") {
		if !strings.Contains(l, `msg="desired state built from static services"`) || !strings.Contains(l+" ", want) {
			continue
		}
		f, _, _ := strings.Cut(strings.TrimPrefix(l, "time="), " ")
		t, err := time.Parse(time.RFC3339Nano, f)
		return t, err == nil
	}
	return time.Time{}, false
}

// BenchmarkKeepalivedFailover is BenchmarkFailover's crash with
// keepalived (VRRP, advert_int 1 s, its default) managing the same VIP on
// the same three-host lab instead of edgelb: the comparison of
// docs/failover.md. ELBT_TRIALS trials (default 10); keepalived must be
// installed (`make bench-failover` installs it).
func BenchmarkKeepalivedFailover(b *testing.B) {
	nslab.Require(b)
	bin, err := exec.LookPath("keepalived")
	if err != nil {
		prereq.Missing(b, "keepalived is not installed (apt-get install keepalived)")
	}
	trials := 10
	if n, err := strconv.Atoi(os.Getenv("ELBT_TRIALS")); err == nil && n > 0 {
		trials = n
	}
	var outages []time.Duration
	for i := range trials {
		l := nslab.New(b, 3)
		for j, h := range l.Hosts {
			h.StartResponder()
			dir := filepath.Join(l.Dir, "keepalived-"+h.Name)
			os.MkdirAll(dir, 0o755)
			conf := filepath.Join(dir, "keepalived.conf")
			nslab.WriteFile(b, conf, fmt.Sprintf(`global_defs {
  router_id %s
}
vrrp_instance web {
  state BACKUP
  interface eth0
  virtual_router_id 51
  priority %d
  advert_int 1
  virtual_ipaddress {
    %s/24 dev eth0
  }
}
`, h.Name, 150-10*j, vip4))
			cmd := exec.Command("ip", "netns", "exec", h.NS, bin, "--dont-fork", "--vrrp", "--log-console", "--use-file", conf,
				"--pid", filepath.Join(dir, "keepalived.pid"), "--vrrp_pid", filepath.Join(dir, "vrrp.pid"))
			log := &nslab.LockedBuffer{}
			cmd.Stdout, cmd.Stderr = log, log
			if err := cmd.Start(); err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() {
				cmd.Process.Kill()
				cmd.Wait()
				if os.Getenv("ELBT_VERBOSE") != "" {
					fmt.Printf("--- keepalived on %s:\n%s", h.Name, log.String())
				}
			})
		}
		// The master is whoever answers (VRRP elects the highest
		// priority); cut off, it keeps the VIP, so the outage ends at
		// the first answer from another host.
		p := l.Probe(vip4, 300*time.Millisecond)
		if !nslab.Poll(converge, func() bool { return p.Last().OK }) {
			b.Fatalf("no answer from %s through keepalived: %+v", vip4, p.Last())
		}
		time.Sleep(time.Second)
		master := p.Last().Host
		for _, h := range l.Hosts {
			if h.Name == master {
				h.SetLink(false)
			}
		}
		if !nslab.Poll(converge, func() bool { last := p.Last(); return last.OK && last.Host != master }) {
			b.Fatalf("%s did not move away from %s: last probe %+v", vip4, master, p.Last())
		}
		time.Sleep(50 * time.Millisecond)
		_, d := nslab.Outage(p.Stop())
		outages = append(outages, d)
		fmt.Printf("trial %2d: keepalived, %s cut off: outage %4d ms\n", i+1, master, d.Milliseconds())
		l.Cleanup()
	}
	med, mx := stats(outages)
	fmt.Printf("FIGURE keepalived (VRRP, advert_int 1s), crash (link cut), %d trials: median %d ms, max %d ms\n", trials, med.Milliseconds(), mx.Milliseconds())
	b.ReportMetric(float64(med.Milliseconds()), "crash-median-ms")
}
