package packaging

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/edgelb/edgelb/cmd/edgelb/cli"
	"github.com/edgelb/edgelb/test/testenv"
)

// The unit removes the VIP addresses a crashed edgelb left behind, and only
// them: an ExecStopPost= that runs `edgelb cleanup --vips-only
// --after-crash`, whose command line edgelb accepts and which does nothing
// after a clean exit (a stop or a graceful restart).
func TestUnitRemovesVIPsAfterACrash(t *testing.T) {
	unit, err := os.ReadFile(filepath.Join(testenv.RepoRoot(), "packaging", "edgelb.service"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^ExecStopPost=-?/usr/bin/edgelb (cleanup .*)$`).FindStringSubmatch(string(unit))
	if m == nil {
		t.Fatalf("the unit has no ExecStopPost= running edgelb cleanup:\n%s", unit)
	}
	args := strings.Fields(m[1])
	for _, f := range []string{"--vips-only", "--after-crash"} {
		if !strings.Contains(m[1], f) {
			t.Errorf("ExecStopPost=%s lacks %s: it would remove IPVS and nftables, or act after clean exits too", m[1], f)
		}
	}
	for k, v := range map[string]string{"SERVICE_RESULT": "success", "EXIT_CODE": "exited", "EXIT_STATUS": "0"} {
		t.Setenv(k, v)
	}
	var out, errs bytes.Buffer
	if code := cli.Main(context.Background(), args, &out, &errs); code != 0 || !strings.Contains(out.String(), "nothing to do") {
		t.Errorf("edgelb %s after a clean exit: exit %d, %q %q; want nothing done", m[1], code, out.String(), errs.String())
	}
}
