package api_test

import (
	"runtime"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/edgelb/edgelb/api"
	"github.com/edgelb/edgelb/api/apitest"
)

// edgelb_build_info says which build answers: the version the API reports
// in /api/v1/status, the Go version and the git commit, with the value 1,
// so that a query can count hosts per version during a rolling upgrade.
func TestBuildInfo(t *testing.T) {
	f := apitest.Sample()
	f.St.Version = "1.2.3+git4.abc1234"
	reg := api.NewMetrics(f).Registry
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, fam := range fams {
		if fam.GetName() != "edgelb_build_info" {
			continue
		}
		for _, m := range fam.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if v := m.GetGauge().GetValue(); v != 1 {
				t.Errorf("edgelb_build_info = %v, want 1", v)
			}
			if labels["version"] != "1.2.3+git4.abc1234" || labels["goversion"] != runtime.Version() || labels["revision"] == "" {
				t.Errorf("edgelb_build_info labels %v: want version 1.2.3+git4.abc1234, goversion %s and a revision", labels, runtime.Version())
			}
			got = append(got, labels["version"])
		}
	}
	if len(got) != 1 {
		t.Fatalf("edgelb_build_info has %d samples, want 1", len(got))
	}
	// make sets the commit (the go command records it only where it may
	// run git): it is the revision label then.
	defer func(r string) { api.Revision = r }(api.Revision)
	api.Revision = "4eca775692c6f4a75e818cd6248716296c4d66d1"
	if err := testutil.GatherAndCompare(reg, strings.NewReader(`
# HELP edgelb_build_info Always 1; its labels say which build runs: version (edgelb version), goversion and revision (the git commit, unknown when the build did not record it).
# TYPE edgelb_build_info gauge
edgelb_build_info{goversion="`+runtime.Version()+`",revision="4eca775692c6f4a75e818cd6248716296c4d66d1",version="1.2.3+git4.abc1234"} 1
`), "edgelb_build_info"); err != nil {
		t.Error(err)
	}
	// It passes Prometheus's own lint (a gauge with a HELP text, no
	// suffix reserved for counters).
	problems, err := testutil.GatherAndLint(reg, "edgelb_build_info")
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		{
			t.Errorf("lint: %s: %s", p.Metric, p.Text)
		}
	}
}

// edgelb_config_unapplied_version is the committed version this host
// cannot apply, 0 when it runs the committed one.
func TestConfigUnappliedMetric(t *testing.T) {
	f := apitest.Sample()
	reg := api.NewMetrics(f).Registry
	const help = `# HELP edgelb_config_unapplied_version The committed cluster configuration version this host cannot apply over its own config file (it owns no VIPs until one it can take is committed); 0 when it runs the committed version.
# TYPE edgelb_config_unapplied_version gauge
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(help+"edgelb_config_unapplied_version 0\n"), "edgelb_config_unapplied_version"); err != nil {
		t.Error(err)
	}
	f.St.ConfigUnapplied = 7
	if err := testutil.GatherAndCompare(reg, strings.NewReader(help+"edgelb_config_unapplied_version 7\n"), "edgelb_config_unapplied_version"); err != nil {
		t.Error(err)
	}
	if problems, err := testutil.GatherAndLint(reg, "edgelb_config_unapplied_version"); err != nil || len(problems) > 0 {
		t.Errorf("lint: %v %v", problems, err)
	}
}
