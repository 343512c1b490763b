package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/edgelb/edgelb/api"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// scaleSize reads a size of BenchmarkScale from the environment, for
// smaller runs by hand.
func scaleSize(b *testing.B, env string, def int) int {
	s := os.Getenv(env)
	if s == "" {
		return def
	}
	n, err := strconv.Atoi(s)
	if err != nil || n <= 0 {
		b.Fatalf("%s=%q: want a positive number", env, s)
	}
	return n
}

// BenchmarkScale runs edgelb against the real API server at scale: 10,000
// LoadBalancer Services with 10 endpoints each (one EndpointSlice per
// Service) and 100 Nodes, all created before edgelb starts, in `direct`
// mode so that the endpoints are the backends. It reports:
//   - all-addressed-s: from edgelb's start until every Service's status
//     has its address (with edgelb's default API client rate limit, or
//     EDGELB_SCALE_QPS; status writes and Events share it);
//   - rss-MB and peak-rss-MB: edgelb's resident memory then (VmRSS, VmHWM);
//     heap-live-MB: its live heap after the last GC then (GODEBUG=gctrace=1);
//     rss-settled-MB: its resident memory after the endpoint changes;
//     rss-scraped-MB: then after one scrape of /metrics;
//   - endpoint-p50-ms, endpoint-p99-ms, endpoint-max-ms: from changing one
//     endpoint of a Service to the change showing in edgelb's desired
//     state, read from its REST API (that Service's view) every 10 ms,
//     over 100 changes (EDGELB_SCALE_CHANGES), one at a time. The REST
//     API's answers that showed them are timed too (api-p50-ms).
//   - rebuild-p50-ms: how long one rebuild of the desired state took
//     meanwhile, from edgelb's debug log.
//
// Last, it logs the top of edgelb's heap profile (GET /debug/pprof/heap,
// `go tool pprof -top`) and keeps the profile in EDGELB_SCALE_HEAPPROFILE
// if set.
//
// With EDGELB_SCALE_CPUPROFILE=FILE it keeps edgelb's CPU profile of the
// first 15 s of the endpoint changes there and logs its top.
//
// EDGELB_SCALE_SERVICES, EDGELB_SCALE_ENDPOINTS, EDGELB_SCALE_NODES and
// EDGELB_SCALE_CHANGES change the sizes; EDGELB_SCALE_GOMEMLIMIT gives edgelb that GOMEMLIMIT.
// `make bench-scale` runs it.
func BenchmarkScale(b *testing.B) {
	nSvc := scaleSize(b, "EDGELB_SCALE_SERVICES", 10000)
	nEP := scaleSize(b, "EDGELB_SCALE_ENDPOINTS", 10)
	nNode := scaleSize(b, "EDGELB_SCALE_NODES", 100)
	nChanges := scaleSize(b, "EDGELB_SCALE_CHANGES", 100)
	if nSvc > 60000 || nEP > 100 {
		b.Fatalf("at most 60000 Services (the pool) and 100 endpoints each")
	}
	ctx := context.Background()
	fast := fastClient(b)
	for iter := 0; iter < b.N; iter++ {
		ns := fmt.Sprintf("scale%d-%d", time.Now().UnixNano()%1e6, iter)
		class := "edgelb.io/" + ns
		createNamespace(b, ns)

		t0 := time.Now()
		var nodes []string
		for i := 0; i < nNode; i++ {
			name := fmt.Sprintf("%s-node%03d", ns, i)
			createNode(b, node(name, fmt.Sprintf("10.230.%d.%d", i/250, i%250+1), true))
			nodes = append(nodes, name)
		}
		err := parallel(nSvc, 16, func(i int) error {
			name := fmt.Sprintf("s%05d", i)
			svc := lbService(ns, name, class, 80)
			noNodePorts := false // 10,000 Services would exhaust the NodePort range
			svc.Spec.AllocateLoadBalancerNodePorts = &noNodePorts
			if _, err := fast.CoreV1().Services(ns).Create(ctx, svc, metav1.CreateOptions{}); err != nil {
				return err
			}
			_, err := fast.DiscoveryV1().EndpointSlices(ns).Create(ctx, scaleSlice(ns, name, i, nEP, nodes), metav1.CreateOptions{})
			return err
		})
		if err != nil {
			b.Fatal(err)
		}
		b.Logf("created %d Services, %d EndpointSlices of %d endpoints and %d Nodes in %s",
			nSvc, nSvc, nEP, nNode, time.Since(t0).Round(time.Millisecond))

		addressed := watchAddressed(b, ns, nSvc)
		cfg := config(b, "scale", class, "lease-"+ns, `  - {name: main, addresses: ["10.224.0.0/16"]}`)
		cfg = strings.Replace(cfg, "dataplane: {backend: none}", "dataplane: {backend: none, mode: direct}", 1)
		if qps := os.Getenv("EDGELB_SCALE_QPS"); qps != "" {
			cfg = strings.Replace(cfg, "defaultClass:", "qps: "+qps+", burst: "+qps+", defaultClass:", 1)
		}
		listen := regexp.MustCompile(`listen: "([^"]+)"`).FindStringSubmatch(cfg)[1]
		// The runtime logs the live heap after each GC (heap-live-MB).
		// EDGELB_SCALE_MEMPROFILERATE samples the heap profile every that
		// many bytes instead of 512 kB: a finer profile, a slower edgelb.
		godebug := "gctrace=1"
		if r := os.Getenv("EDGELB_SCALE_MEMPROFILERATE"); r != "" {
			godebug += ",memprofilerate=" + r
		}
		b.Setenv("GODEBUG", godebug)
		if v := os.Getenv("EDGELB_SCALE_GOMEMLIMIT"); v != "" {
			// A soft memory limit for edgelb alone (the API server runs
			// already).
			b.Setenv("GOMEMLIMIT", v)
		}
		b.ResetTimer()
		start0 := time.Now()
		p := start(b, "scale", cfg)
		select {
		case <-addressed:
		case <-time.After(30 * time.Minute):
			b.Fatalf("not every Service had its address 30 minutes after edgelb started")
		}
		took := time.Since(start0)
		b.StopTimer()
		rss, peak := memory(b, p.cmd.Process.Pid)
		cpuAddressed := cpuSeconds(b, p.cmd.Process.Pid)
		live, liveMax := liveHeap(b, p.log)
		b.Logf("every Service has its address %s after edgelb started; RSS %.0f MB (peak %.0f MB); live heap after the last GC %.0f MB (most %.0f MB)",
			took.Round(time.Millisecond), rss, peak, live, liveMax)

		logged, err := os.Stat(p.log)
		if err != nil {
			b.Fatal(err)
		}
		profiled := cpuProfile(b, "http://"+listen)
		lat, apiTook := endpointChanges(b, fast, "http://"+listen, ns, fmt.Sprintf("s%05d", nSvc/2), nSvc/2, nEP, nodes, nChanges)
		rebuilds := rebuildTimes(b, p.log, logged.Size())
		<-profiled
		b.ReportMetric(took.Seconds(), "all-addressed-s")
		b.ReportMetric(rss, "rss-MB")
		b.ReportMetric(peak, "peak-rss-MB")
		b.ReportMetric(live, "heap-live-MB")
		rssSettled, _ := memory(b, p.cmd.Process.Pid)
		liveSettled, _ := liveHeap(b, p.log)
		cpuChanges := cpuSeconds(b, p.cmd.Process.Pid) - cpuAddressed
		b.Logf("after the endpoint changes: RSS %.0f MB, live heap after the last GC %.0f MB; edgelb's CPU: %.1f s until every Service had its address, %.1f s from then through the endpoint changes",
			rssSettled, liveSettled, cpuAddressed, cpuChanges)
		b.ReportMetric(cpuAddressed, "cpu-addressed-s")
		b.ReportMetric(cpuChanges, "cpu-changes-s")
		b.ReportMetric(rssSettled, "rss-settled-MB")
		// Scraped last: a scrape at this scale (series for every virtual
		// service) costs memory of its own.
		t1 := time.Now()
		m := scrape(b, "http://"+listen+"/metrics")
		scrapeTook := time.Since(t1)
		rssScraped, _ := memory(b, p.cmd.Process.Pid)
		anon, file := rssSplit(b, p.cmd.Process.Pid)
		b.Logf("of that RSS after the scrape: %.0f MB anonymous (the Go runtime's), %.0f MB of files (the binary's pages)", anon, file)
		// Where the anonymous part goes, as the runtime counts it when
		// the scrape is written (before the scrape's own garbage).
		mb := func(name string) float64 { return m[name] / (1 << 20) }
		b.Logf("the runtime at the scrape: heap in use %.0f MB (goal of the next GC %.0f MB), heap idle not returned %.0f MB, stacks %.1f MB, span and GC metadata %.1f MB, other %.1f MB",
			mb("go_memstats_heap_inuse_bytes"), mb("go_memstats_next_gc_bytes"), mb("go_memstats_heap_idle_bytes")-mb("go_memstats_heap_released_bytes"),
			mb("go_memstats_stack_inuse_bytes"), mb("go_memstats_mspan_inuse_bytes")+mb("go_memstats_gc_sys_bytes"), mb("go_memstats_other_sys_bytes"))
		b.Logf("by then: %.0f answers from the API server, %.0f of them 429, %.0f retries; Events %.0f recorded, %.0f written, %.0f failed; RSS %.0f MB after the scrape of /metrics (%s, %.0f backends' series left out)",
			m["edgelb_kubernetes_requests_total"], m[`edgelb_kubernetes_requests_total{code="429"}`], m["edgelb_kubernetes_request_retries_total"],
			m[`edgelb_kubernetes_events_total{outcome="recorded"}`], m[`edgelb_kubernetes_events_total{outcome="written"}`], m[`edgelb_kubernetes_events_total{outcome="failed"}`], rssScraped,
			scrapeTook.Round(time.Millisecond), m["edgelb_backend_metrics_omitted"])
		b.ReportMetric(rssScraped, "rss-scraped-MB")
		heapTop(b, "http://"+listen)
		b.ReportMetric(m[`edgelb_kubernetes_requests_total{code="429"}`], "api-429s")
		b.ReportMetric(ms(quantile(lat, 0.50)), "endpoint-p50-ms")
		b.ReportMetric(ms(quantile(lat, 0.99)), "endpoint-p99-ms")
		b.ReportMetric(ms(lat[len(lat)-1]), "endpoint-max-ms")
		b.ReportMetric(ms(quantile(apiTook, 0.50)), "api-p50-ms")
		if len(rebuilds) > 0 {
			b.ReportMetric(float64(rebuilds[len(rebuilds)/2].Microseconds())/1000, "rebuild-p50-ms")
		}
		p.stop(b)
	}
}

// fastClient is an admin client whose rate limit does not slow the set-up.
func fastClient(b *testing.B) kubernetes.Interface {
	rc, err := clientcmd.BuildConfigFromFlags("", env.AdminKubeconfig)
	if err != nil {
		b.Fatal(err)
	}
	rc.QPS, rc.Burst = 2000, 4000
	c, err := kubernetes.NewForConfig(rc)
	if err != nil {
		b.Fatal(err)
	}
	return c
}

// parallel runs f(0..n-1) on workers goroutines and returns the first error.
func parallel(n, workers int, f func(i int) error) error {
	var (
		wg    sync.WaitGroup
		once  sync.Once
		first error
		next  = make(chan int)
	)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				if err := f(i); err != nil {
					once.Do(func() { first = err })
				}
			}
		}()
	}
	for i := 0; i < n; i++ {
		next <- i
	}
	close(next)
	wg.Wait()
	return first
}

// scaleSlice is the EndpointSlice of Service i: n ready endpoints spread
// over the nodes, port p80 -> 8080.
func scaleSlice(ns, svc string, i, n int, nodes []string) *discoveryv1.EndpointSlice {
	pname, port, proto, ready := "p80", int32(8080), corev1.ProtocolTCP, true
	es := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Namespace: ns, Name: svc + "-abc", Labels: map[string]string{discoveryv1.LabelServiceName: svc}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: &pname, Port: &port, Protocol: &proto}},
	}
	for j := 0; j < n; j++ {
		node := nodes[(i+j)%len(nodes)]
		es.Endpoints = append(es.Endpoints, discoveryv1.Endpoint{
			Addresses:  []string{fmt.Sprintf("10.%d.%d.%d", 128+j, i/256, i%256)},
			NodeName:   &node,
			Conditions: discoveryv1.EndpointConditions{Ready: &ready},
		})
	}
	return es
}

// watchAddressed returns a channel closed once n Services of ns have an
// address in their status.
func watchAddressed(b *testing.B, ns string, n int) <-chan struct{} {
	ctx, cancel := context.WithCancel(context.Background())
	b.Cleanup(cancel)
	done := make(chan struct{})
	go func() {
		seen := map[string]bool{}
		for ctx.Err() == nil {
			list, err := env.Admin.CoreV1().Services(ns).List(ctx, metav1.ListOptions{})
			if err != nil {
				time.Sleep(time.Second)
				continue
			}
			for _, s := range list.Items {
				if len(s.Status.LoadBalancer.Ingress) > 0 {
					seen[s.Name] = true
				}
			}
			if len(seen) == n {
				close(done)
				return
			}
			w, err := env.Admin.CoreV1().Services(ns).Watch(ctx, metav1.ListOptions{ResourceVersion: list.ResourceVersion})
			if err != nil {
				continue
			}
			for ev := range w.ResultChan() {
				if s, ok := ev.Object.(*corev1.Service); ok && ev.Type == watch.Modified && len(s.Status.LoadBalancer.Ingress) > 0 {
					seen[s.Name] = true
				}
				if len(seen) == n {
					w.Stop()
					close(done)
					return
				}
			}
		}
	}()
	return done
}

// memory returns a process's resident memory and its peak, in MB.
func memory(b *testing.B, pid int) (rss, peak float64) {
	f := procStatus(b, pid)
	return f["VmRSS:"], f["VmHWM:"]
}

// cpuSeconds is the CPU time, user and system, a process has used.
func cpuSeconds(b *testing.B, pid int) float64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		b.Fatal(err)
	}
	// The fields after the command's parenthesis: state is the first,
	// utime and stime the 12th and 13th (clock ticks of 1/100 s).
	f := strings.Fields(string(data[strings.LastIndexByte(string(data), ')')+1:]))
	utime, _ := strconv.ParseFloat(f[11], 64)
	stime, _ := strconv.ParseFloat(f[12], 64)
	return (utime + stime) / 100
}

// rssSplit returns the anonymous and the file-backed parts of a process's
// resident memory, in MB.
func rssSplit(b *testing.B, pid int) (anon, file float64) {
	f := procStatus(b, pid)
	return f["RssAnon:"], f["RssFile:"]
}

// procStatus reads the sizes of /proc/PID/status, in MB, by field name
// (with its colon).
func procStatus(b *testing.B, pid int) map[string]float64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		b.Fatal(err)
	}
	out := map[string]float64{}
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) == 3 && f[2] == "kB" {
			kb, _ := strconv.ParseFloat(f[1], 64)
			out[f[0]] = kb / 1024
		}
	}
	return out
}

// quantile is the q-quantile of sorted durations (nearest rank).
func quantile(sorted []time.Duration, q float64) time.Duration {
	i := int(math.Ceil(q*float64(len(sorted)))) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// endpointChanges changes one endpoint of a Service n times, one change at
// a time, and returns, sorted, how long each change took to show in
// edgelb's desired state and how long the REST API's answer that showed it
// took.
func endpointChanges(b *testing.B, client kubernetes.Interface, base, ns, name string, i, nEP int, nodes []string, n int) (lat, apiTook []time.Duration) {
	ctx := context.Background()
	backends := func() ([]string, error) {
		resp, err := http.Get(base + "/api/v1/services/" + ns + "/" + name)
		if err != nil {
			return nil, err
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return nil, fmt.Errorf("%s", resp.Status)
		}
		var svc api.Service
		if err := json.NewDecoder(resp.Body).Decode(&svc); err != nil {
			return nil, err
		}
		var out []string
		for _, p := range svc.Ports {
			for _, be := range p.Backends {
				out = append(out, be.Address)
			}
		}
		return out, nil
	}
	eventually(b, time.Minute, "the API shows "+name+" with its endpoints", func() error {
		got, err := backends()
		if err != nil {
			return err
		}
		if len(got) != nEP {
			return fmt.Errorf("backends %v, want %d", got, nEP)
		}
		return nil
	})
	slice := scaleSlice(ns, name, i, nEP, nodes)
	for k := 0; k < n; k++ {
		addr := fmt.Sprintf("10.250.%d.%d", k/250, k%250+1)
		cur, err := client.DiscoveryV1().EndpointSlices(ns).Get(ctx, slice.Name, metav1.GetOptions{})
		if err != nil {
			b.Fatal(err)
		}
		cur.Endpoints[0].Addresses = []string{addr}
		t0 := time.Now()
		if _, err := client.DiscoveryV1().EndpointSlices(ns).Update(ctx, cur, metav1.UpdateOptions{}); err != nil {
			b.Fatal(err)
		}
		want := addr + ":8080"
		for {
			t1 := time.Now()
			got, err := backends()
			if err == nil && slices.Contains(got, want) {
				apiTook = append(apiTook, time.Since(t1))
				break
			}
			if time.Since(t0) > time.Minute {
				b.Fatalf("%s not among %s's backends a minute after the change: %v %v", want, name, got, err)
			}
			time.Sleep(10 * time.Millisecond)
		}
		lat = append(lat, time.Since(t0))
	}
	slices.Sort(lat)
	slices.Sort(apiTook)
	fmt.Printf("%d endpoint changes to desired state: p50 %v, p90 %v, p99 %v, max %v; the REST API's answer that showed each: p50 %v, max %v\n",
		n, quantile(lat, 0.5), quantile(lat, 0.9), quantile(lat, 0.99), lat[len(lat)-1], quantile(apiTook, 0.5), apiTook[len(apiTook)-1])
	return lat, apiTook
}

var gcLive = regexp.MustCompile(`^gc \d+ @.*, \d+->\d+->(\d+) MB`)

// liveHeap returns the live heap after the last GC edgelb's runtime
// logged (GODEBUG=gctrace=1), and the most it was, in MB.
func liveHeap(b *testing.B, path string) (last, most float64) {
	data, err := os.ReadFile(path)
	if err != nil {
		b.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if m := gcLive.FindStringSubmatch(line); m != nil {
			last, _ = strconv.ParseFloat(m[1], 64)
			most = max(most, last)
		}
	}
	return last, most
}

var rebuiltTook = regexp.MustCompile(`msg="desired state rebuilt".* took=(\S+)`)

// rebuildTimes returns, sorted, how long the rebuilds of the desired state
// that edgelb logged after offset took.
func rebuildTimes(b *testing.B, path string, offset int64) []time.Duration {
	data, err := os.ReadFile(path)
	if err != nil {
		b.Fatal(err)
	}
	var out []time.Duration
	for _, line := range strings.Split(string(data[offset:]), "\n") {
		if m := rebuiltTook.FindStringSubmatch(line); m != nil {
			if d, err := time.ParseDuration(m[1]); err == nil {
				out = append(out, d)
			}
		}
	}
	slices.Sort(out)
	b.Logf("%d rebuilds of the desired state meanwhile: %v", len(out), out)
	return out
}

// cpuProfile fetches, when EDGELB_SCALE_CPUPROFILE names a file, edgelb's
// CPU profile of the next 15 s into it and prints its top; the channel is
// closed when it is done.
func cpuProfile(b *testing.B, base string) <-chan struct{} {
	done := make(chan struct{})
	path := os.Getenv("EDGELB_SCALE_CPUPROFILE")
	if path == "" {
		close(done)
		return done
	}
	go func() {
		defer close(done)
		resp, err := http.Get(base + "/debug/pprof/profile?seconds=15")
		if err != nil {
			fmt.Printf("CPU profile: %v\n", err)
			return
		}
		defer resp.Body.Close()
		f, err := os.Create(path)
		if err != nil {
			fmt.Printf("CPU profile: %v\n", err)
			return
		}
		_, err = io.Copy(f, resp.Body)
		f.Close()
		if err != nil {
			fmt.Printf("CPU profile: %v\n", err)
			return
		}
		out, _ := exec.Command("go", "tool", "pprof", "-top", "-nodecount=25", path).CombinedOutput()
		fmt.Printf("edgelb's CPU profile during the endpoint changes (%s):\n%s", path, out)
	}()
	return done
}

// heapTop fetches edgelb's heap profile after a GC and logs its top, by
// the code that allocated what is in use.
func heapTop(b *testing.B, base string) {
	resp, err := http.Get(base + "/debug/pprof/heap?gc=1")
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	path := os.Getenv("EDGELB_SCALE_HEAPPROFILE")
	if path == "" {
		path = filepath.Join(b.TempDir(), "heap.pprof")
	}
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		b.Fatal(err)
	}
	f.Close()
	out, err := exec.Command("go", "tool", "pprof", "-top", "-nodecount=20", "-sample_index=inuse_space", path).CombinedOutput()
	if err != nil {
		b.Fatalf("go tool pprof: %v: %s", err, out)
	}
	// Printed, not logged: the testing package truncates a benchmark's
	// long log.
	fmt.Printf("edgelb's heap profile after a GC (%s):\n%s", path, out)
}

// scrape reads edgelb's counters at url: each metric's total under its
// name, and under name{label="value"} the total of the series with that
// label.
func scrape(b *testing.B, url string) map[string]float64 {
	resp, err := http.Get(url)
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		b.Fatal(err)
	}
	out := map[string]float64{}
	for name, f := range families {
		for _, m := range f.GetMetric() {
			v := m.GetCounter().GetValue() + m.GetGauge().GetValue()
			out[name] += v
			for _, l := range m.GetLabel() {
				out[fmt.Sprintf("%s{%s=%q}", name, l.GetName(), l.GetValue())] += v
			}
		}
	}
	return out
}
