package packaging

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/edgelb/edgelb/cmd/edgelb/cli"
	"github.com/edgelb/edgelb/test/testenv"
)

// The unit removes the VIP addresses a crashed edgelb left behind, and only
// them: an ExecStopPost= that runs the package's edgelb-crash-cleanup (what
// `edgelb cleanup --vips-only --after-crash` does, in a small binary),
// which the package ships and which does nothing after a clean exit (a
// stop or a graceful restart); run as ExecStopPost= after a crash, it
// removes the VIP (test/system's SIGKILL steps).
func TestUnitRemovesVIPsAfterACrash(t *testing.T) {
	root := testenv.RepoRoot()
	unit, err := os.ReadFile(filepath.Join(root, "packaging", "edgelb.service"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^ExecStopPost=-?(/usr/lib/edgelb/edgelb-crash-cleanup)( .*)?$`).FindStringSubmatch(string(unit))
	if m == nil {
		t.Fatalf("the unit has no ExecStopPost= running /usr/lib/edgelb/edgelb-crash-cleanup:\n%s", unit)
	}
	if !strings.Contains(m[2], "--config /etc/edgelb/config.yaml") {
		t.Errorf("ExecStopPost=%s%s does not read the packaged config", m[1], m[2])
	}
	nfpm, err := os.ReadFile(filepath.Join(root, "packaging", "nfpm.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(nfpm), "dst: "+m[1]+"\n") {
		t.Errorf("the package does not ship %s, which the unit runs", m[1])
	}
	bin := filepath.Join(t.TempDir(), "edgelb-crash-cleanup")
	build := exec.Command("go", "build", "-o", bin, "./cmd/edgelb-crash-cleanup")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building it: %v\n%s", err, out)
	}
	cmd := exec.Command(bin, strings.Fields(m[2])...)
	cmd.Env = append(os.Environ(), "SERVICE_RESULT=success", "EXIT_CODE=exited", "EXIT_STATUS=0")
	if out, err := cmd.CombinedOutput(); err != nil || !strings.Contains(string(out), "nothing to do") {
		t.Errorf("%s%s after a clean exit: %v, %q; want nothing done", m[1], m[2], err, out)
	}
	// The same decision as `edgelb cleanup --vips-only --after-crash`.
	for k, v := range map[string]string{"SERVICE_RESULT": "success", "EXIT_CODE": "exited", "EXIT_STATUS": "0"} {
		t.Setenv(k, v)
	}
	var out, errs bytes.Buffer
	if code := cli.Main(context.Background(), []string{"cleanup", "--vips-only", "--after-crash"}, &out, &errs); code != 0 || !strings.Contains(out.String(), "nothing to do") {
		t.Errorf("edgelb cleanup --vips-only --after-crash after a clean exit: exit %d, %q %q; want nothing done", code, out.String(), errs.String())
	}
}
