package ipvs_test

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/edgelb/edgelb/lb/ipvs"
	"github.com/edgelb/edgelb/test/prereq"
)

// The unit the package installs; tests run in lb/ipvs.
const shippedUnit = "../../packaging/edgelb.service"

// procOptions returns the procfs mount options systemd gives the service
// of a unit: ProcSubset=pid is subset=pid, ProtectProc=X is hidepid=X
// (systemd.exec(5)). The last assignment in [Service] wins.
func procOptions(unit string) (string, error) {
	var subset, protect string
	section := ""
	sc := bufio.NewScanner(strings.NewReader(unit))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || line[0] == '#' || line[0] == ';':
			continue
		case line[0] == '[':
			section = line
			continue
		}
		key, val, ok := strings.Cut(line, "=")
		if !ok || section != "[Service]" {
			continue
		}
		switch strings.TrimSpace(key) {
		case "ProcSubset":
			subset = strings.TrimSpace(val)
		case "ProtectProc":
			protect = strings.TrimSpace(val)
		}
	}
	var opts []string
	switch subset {
	case "", "all":
	case "pid":
		opts = append(opts, "subset=pid")
	default:
		return "", fmt.Errorf("ProcSubset=%s: not all or pid", subset)
	}
	switch protect {
	case "", "default":
	case "noaccess", "invisible", "ptraceable":
		opts = append(opts, "hidepid="+protect)
	default:
		return "", fmt.Errorf("ProtectProc=%s: not default, noaccess, invisible or ptraceable", protect)
	}
	return strings.Join(opts, ","), nil
}

func TestProcOptions(t *testing.T) {
	for _, tc := range []struct{ unit, want string }{
		{"[Service]\nExecStart=/usr/bin/edgelb run\n", ""},
		{"[Service]\nProtectProc=invisible\n", "hidepid=invisible"},
		{"[Service]\nProtectProc=invisible\nProcSubset=pid\n", "subset=pid,hidepid=invisible"},
		{"[Service]\nProcSubset=pid\nProcSubset=all\n", ""},
		{"[Service]\n# ProcSubset=pid\n; ProcSubset=pid\nProtectProc=default\n", ""},
		{"[Unit]\nProcSubset=pid\n[Service]\nProtectProc=ptraceable\n", "hidepid=ptraceable"},
	} {
		got, err := procOptions(tc.unit)
		if err != nil || got != tc.want {
			t.Errorf("procOptions(%q) = %q, %v; want %q", tc.unit, got, err, tc.want)
		}
	}
	if _, err := procOptions("[Service]\nProcSubset=everything\n"); err == nil {
		t.Error("procOptions accepted ProcSubset=everything")
	}
}

// mountProc mounts a new procfs instance with opts in a temporary
// directory until the test ends, the way systemd does for a service with
// ProcSubset= or ProtectProc=. It needs root and a kernel of 5.8 or later.
func mountProc(t *testing.T, opts string) string {
	t.Helper()
	prereq.Require(t, os.Geteuid() == 0, "mounting a procfs needs root")
	dir := t.TempDir()
	if err := unix.Mount("proc", dir, "proc", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, opts); err != nil {
		prereq.Missing(t, "mount -t proc -o %q: %v (needs CAP_SYS_ADMIN and Linux 5.8 or later)", opts, err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(dir, unix.MNT_DETACH); err != nil {
			t.Errorf("unmounting %s: %v", dir, err)
		}
	})
	return dir
}

// missingForPrepare lists what Prepare reads and writes under a procfs
// that the procfs at root lacks. /proc/net/ip_vs and the IPVS sysctls are
// only required when the running kernel has them (this process's /proc).
func missingForPrepare(root string) []string {
	need := []string{"net", "sys/net/ipv4/ip_forward"}
	for _, p := range []string{"net/ip_vs", "sys/net/ipv4/vs/expire_nodest_conn"} {
		if _, err := os.Stat(filepath.Join("/proc", p)); err == nil {
			need = append(need, p)
		}
	}
	var missing []string
	for _, p := range need {
		if _, err := os.Stat(filepath.Join(root, p)); err != nil {
			missing = append(missing, p)
		}
	}
	return missing
}

// The service's procfs, as the shipped unit sets it up, still has
// /proc/net and /proc/sys/net. ProcSubset=pid, which the unit once had,
// hides both, and Prepare then fails with ErrNoIPVS on every start.
func TestShippedUnitKeepsProcNet(t *testing.T) {
	b, err := os.ReadFile(shippedUnit)
	if err != nil {
		t.Fatal(err)
	}
	opts, err := procOptions(string(b))
	if err != nil {
		t.Fatalf("%s: %v", shippedUnit, err)
	}
	if m := missingForPrepare(mountProc(t, opts)); len(m) > 0 {
		t.Errorf("%s mounts /proc for edgelb with %q, which lacks %s: ipvs.Prepare cannot work", shippedUnit, opts, strings.Join(m, ", "))
	}
	// The check itself catches the setting that broke the dataplane.
	old := string(b) + "\n[Service]\nProcSubset=pid\n"
	opts, err = procOptions(old)
	if err != nil {
		t.Fatal(err)
	}
	if m := missingForPrepare(mountProc(t, opts)); len(m) == 0 {
		t.Errorf("a procfs mounted with %q has everything Prepare needs; the check above cannot catch ProcSubset=pid", opts)
	}
}

// Prepare on a pid-only procfs (ProcSubset=pid) finds no /proc/net/ip_vs,
// whatever the kernel has, and fails with ErrNoIPVS: why the unit must not
// set it.
func TestPrepareOnPidOnlyProc(t *testing.T) {
	prereq.Require(t, os.Geteuid() == 0, "needs root to mount a procfs")
	proc := mountProc(t, "subset=pid")
	err := ipvs.Prepare(ipvs.PrepareOptions{ProcRoot: proc})
	if !errors.Is(err, ipvs.ErrNoIPVS) {
		t.Fatalf("Prepare with a subset=pid procfs: %v, want ErrNoIPVS", err)
	}
}
