//go:build vm

package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// clientAliases gives the client namespace a second address of each
// family, 10.0.0.3 and fd00::3, to be a client the source ranges exclude.
func clientAliases(t *testing.T) {
	t.Helper()
	sh(t, `ip -n client addr replace 10.0.0.3/24 dev eth0
ip -n client addr replace fd00::3/64 dev eth0 nodad`)
}

// reachable makes n requests to url from the client's address src.
func reachable(t *testing.T, url, src string, n int) result {
	t.Helper()
	return helper(t, "client", "http", strconv.Itoa(n), url, src)
}

func wantReached(t *testing.T, url, src string) {
	t.Helper()
	if r := reachable(t, url, src, 6); r.Errors != 0 {
		t.Errorf("%s from %s: %d of 6 requests failed (%s), want all answered", url, src, r.Errors, r.LastErr)
	}
}

func wantBlocked(t *testing.T, url, src string) {
	t.Helper()
	if r := reachable(t, url, src, 2); r.Errors != 2 {
		t.Errorf("%s from %s: %d of 2 requests answered (%v), want none", url, src, 2-r.Errors, r.Counts)
	}
}

// nftListRuleset runs `nft list ruleset` in ns; it must exit 0 (the CLI
// parses everything edgelb wrote).
func nftListRuleset(t *testing.T, ns string) string {
	t.Helper()
	out, err := exec.Command("ip", "netns", "exec", ns, "nft", "list", "ruleset").CombinedOutput()
	if err != nil {
		t.Fatalf("nft list ruleset in %s: %v\n%s", ns, err, out)
	}
	return string(out)
}

var droppedRe = regexp.MustCompile(`(?m)^edgelb_source_range_dropped_packets_total\{namespace="([^"]*)",service="([^"]*)"\} (\S+)$`)

// dropped reads edgelb_source_range_dropped_packets_total of a service
// from the API of the edgelb in ns.
func dropped(t *testing.T, ns, namespace, service string) float64 {
	t.Helper()
	self, _ := os.Executable()
	cmd := exec.Command("ip", "netns", "exec", ns, self)
	cmd.Env = append(os.Environ(), "EDGELB_HELPER=get", "EDGELB_ARGS=http://127.0.0.1:9080/metrics")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("GET /metrics in %s: %v", ns, err)
	}
	for _, m := range droppedRe.FindAllStringSubmatch(string(out), -1) {
		if m[1] == namespace && m[2] == service {
			v, _ := strconv.ParseFloat(m[3], 64)
			return v
		}
	}
	return -1
}

// elem matches a set element as nft lists it: "VIP . tcp . PORT" and then
// " . RANGE" if given (exactly: 10.0.0.2 does not match 10.0.0.2/31). Without /etc/protocols (the VM) nft prints the
// protocol's number.
func elem(vip string, port int, rng string) *regexp.Regexp {
	re := regexp.QuoteMeta(vip) + ` \. (?:tcp|6) \. ` + strconv.Itoa(port)
	if rng != "" {
		re += ` \. ` + regexp.QuoteMeta(rng) + `(?:[,\s}]|$)`
	}
	return regexp.MustCompile(re)
}

// hasElem reports whether the ruleset of ns holds the element.
func hasElem(t *testing.T, ns string, e *regexp.Regexp) bool {
	t.Helper()
	return e.MatchString(nftListRuleset(t, ns))
}

// restrictedCounter reads the packets counter of one element of the
// filter's restricted4 set, or -1 when it is absent.
func restrictedCounter(t *testing.T, ns string, e *regexp.Regexp) int {
	t.Helper()
	out := sh(t, "ip netns exec "+ns+" nft list set inet edgelb_filter restricted4")
	m := regexp.MustCompile(e.String() + ` counter packets (\d+)`).FindStringSubmatch(out)
	if m == nil {
		return -1
	}
	n, _ := strconv.Atoi(m[1])
	return n
}

const foreignTable = `add table inet foreign; add chain inet foreign c { type filter hook prerouting priority 10; }; add rule inet foreign c counter`

func rangedServices(web, web6, echo string) string {
	return fmt.Sprintf(`
  - {name: web, vip: 10.0.0.140, sourceRanges: %s, ports: [{port: 80, targetPort: 30080}], backends: [10.0.0.21, 10.0.0.22, 10.0.0.23]}
  - {name: echo, vip: 10.0.0.140, sourceRanges: %s, ports: [{port: 9000, targetPort: 30090}], backends: [10.0.0.21, 10.0.0.22, 10.0.0.23]}
  - {name: web6, vip: "fd00::140", sourceRanges: %s, ports: [{port: 80, targetPort: 30080}], backends: ["fd00::21", "fd00::22", "fd00::23"]}
  - {name: open, vip: 10.0.0.141, ports: [{port: 80, targetPort: 30080}], backends: [10.0.0.21, 10.0.0.22, 10.0.0.23]}
`, web, echo, web6)
}

// TestSourceRanges checks static services' sourceRanges on the real
// kernel, with the nat method (lb/snat's tables alongside): the filter
// drops clients outside the ranges, IPv4 and IPv6, counts them, keeps
// across a restart what did not change, and leaves every other nftables
// table alone.
func TestSourceRanges(t *testing.T) {
	if _, err := os.Stat("/run/netns/node1"); err != nil {
		topology(t)
	}
	clientAliases(t)
	sh(t, "ip netns exec lb1 nft '"+foreignTable+"'")
	lb1 := startEdgelb(t, "lb1", config("lb1", "nat", rangedServices(`[10.0.0.2/32, "fd00::2/128"]`, `["fd00::2/128"]`, `[10.0.0.1/30]`)))
	defer func() {
		if t.Failed() {
			lb1.dumpLog(t)
		}
	}()
	waitFor(t, "edgelb to program and own 10.0.0.140 and fd00::140", 30*time.Second, func() bool {
		return hasLine(table(t, "lb1", "-t", "10.0.0.140:80"), "-> 10.0.0.23:30080 Masq 1") &&
			hasLine(table(t, "lb1", "-t", "[fd00::140]:80"), "-> [fd00::23]:30080 Masq 1") &&
			strings.Contains(sh(t, "ip -n lb1 -br addr show dev eth0"), "fd00::140")
	})
	lb1.waitReady(t)
	rs := nftListRuleset(t, "lb1")
	t.Logf("nft list ruleset in lb1:\n%s", rs)
	for _, want := range []string{"table inet foreign", "table inet edgelb_filter", "table ip edgelb"} {
		if !strings.Contains(rs, want) {
			t.Errorf("the ruleset lacks %q", want)
		}
	}
	if !elem("10.0.0.140", 80, "10.0.0.2").MatchString(rs) {
		t.Error("the ruleset lacks web's allowed range")
	}

	t.Run("ranges that include the client let it in, others keep it out, IPv4 and IPv6", func(t *testing.T) {
		wantReached(t, "http://10.0.0.140/", "10.0.0.2")
		wantBlocked(t, "http://10.0.0.140/", "10.0.0.3")
		wantReached(t, "http://[fd00::140]/", "fd00::2")
		wantBlocked(t, "http://[fd00::140]/", "fd00::3")
		wantReached(t, "http://10.0.0.141/", "10.0.0.3") // no ranges: open
		if n := dropped(t, "lb1", "_static", "web"); n < 2 {
			t.Errorf("edgelb_source_range_dropped_packets_total of web = %v, want at least the 2 blocked SYNs", n)
		}
		if n := dropped(t, "lb1", "_static", "web6"); n < 2 {
			t.Errorf("edgelb_source_range_dropped_packets_total of web6 = %v, want at least 2", n)
		}
	})

	t.Run("a restart with changed ranges applies only the difference and keeps allowed connections", func(t *testing.T) {
		kept, keptRd := holdConnectionFrom(t, "10.0.0.140:9000", 10, "10.0.0.2")
		cut, _ := holdConnectionFrom(t, "10.0.0.140:9000", 10, "10.0.0.3")
		webDrops := restrictedCounter(t, "lb1", elem("10.0.0.140", 80, ""))
		lb1.stop(t)
		// Stopping leaves the filter in place: no window without it.
		if !hasElem(t, "lb1", elem("10.0.0.140", 80, "10.0.0.2")) {
			t.Error("stopping edgelb removed the filter")
		}
		os.WriteFile(lb1.cfg, []byte(config("lb1", "nat", rangedServices(`[10.0.0.3/32, "fd00::3/128"]`, `["fd00::3/128"]`, `[10.0.0.2/32]`))), 0o644)
		lb1.start(t)
		took := waitFor(t, "the new ranges", 30*time.Second, func() bool {
			return hasElem(t, "lb1", elem("10.0.0.140", 80, "10.0.0.3"))
		})
		t.Logf("the restarted edgelb applied the new ranges %s after it started", took.Round(10*time.Millisecond))
		wantReached(t, "http://10.0.0.140/", "10.0.0.3")
		wantBlocked(t, "http://10.0.0.140/", "10.0.0.2")
		wantReached(t, "http://[fd00::140]/", "fd00::3")
		wantBlocked(t, "http://[fd00::140]/", "fd00::2")
		if n := restrictedCounter(t, "lb1", elem("10.0.0.140", 80, "")); webDrops < 2 || n < webDrops+2 {
			t.Errorf("web's drop counter went from %d to %d: its element was recreated, not kept", webDrops, n)
		}
		rest, _ := keptRd.ReadString('\n')
		if err := kept.Wait(); err != nil || !strings.HasPrefix(rest, "held") {
			t.Errorf("the allowed client's connection broke: %q %v", rest, err)
		}
		if err := cut.Wait(); err == nil {
			t.Error("the connection of a client removed from the ranges kept working")
		}
		rs := nftListRuleset(t, "lb1")
		if !strings.Contains(rs, "table inet foreign") || !strings.Contains(rs, "table ip edgelb") {
			t.Errorf("a table went missing:\n%s", rs)
		}
	})

	t.Run("cleanup removes the filter table and nothing else of nftables", func(t *testing.T) {
		lb1.stop(t)
		sh(t, "ip netns exec lb1 "+edgelbBin+" cleanup --config "+lb1.cfg)
		rs := nftListRuleset(t, "lb1")
		if strings.Contains(rs, "edgelb_filter") || !strings.Contains(rs, "table inet foreign") {
			t.Errorf("after cleanup:\n%s", rs)
		}
		sh(t, "ip netns exec lb1 nft delete table inet foreign")
	})
}

var logTime = regexp.MustCompile(`^time=(\S+) `)

// lastLogTime returns the time of the last line of e's log that contains
// msg.
func lastLogTime(t *testing.T, e *edgelb, msg string) time.Time {
	t.Helper()
	b, _ := os.ReadFile(e.log)
	var last time.Time
	for _, l := range strings.Split(string(b), "\n") {
		if m := logTime.FindStringSubmatch(l); m != nil && strings.Contains(l, msg) {
			if ts, err := time.Parse(time.RFC3339Nano, m[1]); err == nil {
				last = ts
			}
		}
	}
	if last.IsZero() {
		t.Fatalf("no %q in %s", msg, e.log)
	}
	return last
}
