// Package aftercrash removes the VIP addresses a crashed edgelb left on
// its interface. It is what the unit's ExecStopPost= runs, in a binary of
// its own (cmd/edgelb-crash-cleanup) that links neither the Kubernetes
// client nor GoBGP: the sooner it has run, the shorter a crashed host's
// kernel answers ARP for a VIP beside its new owner (docs/failover.md).
// `edgelb cleanup` uses it for the VIPs as well.
package aftercrash

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/edgelb/edgelb/vip"
)

// Crashed tells from the variables systemd sets for ExecStopPost= whether
// the main process died without removing or keeping its VIPs. `edgelb
// run` exits with status 0 only after its own shutdown: on SIGTERM (stop)
// it hands the VIPs over and removes them, on SIGUSR2 (graceful restart)
// it keeps them for the next process. Anything else — killed by a signal
// (SIGKILL, the watchdog's SIGABRT, a timeout), a panic, an error exit —
// leaves them to this cleanup. Without $EXIT_CODE the main process never
// ran (ExecStartPre failed): only $SERVICE_RESULT tells, and whatever a
// previous process kept is no longer wanted.
func Crashed(getenv func(string) string) (crashed bool, why string, err error) {
	result, code, status := getenv("SERVICE_RESULT"), getenv("EXIT_CODE"), getenv("EXIT_STATUS")
	switch {
	case code == "exited" && status == "0":
		return false, "the main process exited cleanly", nil
	case code != "":
		return true, fmt.Sprintf("the main process did not exit cleanly (%s, %s %s): removing its VIPs", result, code, status), nil
	case result == "":
		return false, "", errors.New("--after-crash is for systemd's ExecStopPost=: $SERVICE_RESULT and $EXIT_CODE are not set")
	case result == "success":
		return false, "no main process ran, the service stopped successfully", nil
	}
	return true, fmt.Sprintf("no main process ran (%s): removing the VIPs left on the interface", result), nil
}

// Kernel is the VIP kernel of a node on iface, with its lists of added and
// kept VIPs in stateDir (none when stateDir is "").
func Kernel(iface, stateDir string) *vip.Netlink {
	n := &vip.Netlink{Interface: iface}
	if stateDir != "" {
		n.KeptFile = filepath.Join(stateDir, "kept-vips")
		n.AddedFile = filepath.Join(stateDir, "added-vips")
	}
	return n
}

// DefaultStateDir is the service's state directory (systemd's
// $STATE_DIRECTORY, the unit's StateDirectory=edgelb), else /var/lib/edgelb
// when it is writable, else none (the address mark alone: Linux 6.2+).
func DefaultStateDir() string {
	dir := strings.Split(os.Getenv("STATE_DIRECTORY"), ":")[0]
	if dir == "" {
		dir = "/var/lib/edgelb"
	}
	if unix.Access(dir, unix.W_OK) != nil {
		return ""
	}
	return dir
}

// RemoveVIPs removes the VIP addresses edgelb added to iface (those
// carrying its address protocol mark or, on a kernel that drops the mark,
// listed in stateDir), the list of VIPs kept for a next process, and the
// quiet tables (vip.QuietTable); it returns how many addresses it removed.
func RemoveVIPs(iface, stateDir string, quiet vip.Quieter) (int, error) {
	var errs []error
	removed := 0
	nl := Kernel(iface, stateDir)
	held, err := nl.VIPs()
	if err != nil {
		errs = append(errs, fmt.Errorf("listing VIPs on %s: %w", iface, err))
	}
	for _, a := range held {
		if err := nl.DelVIP(a); err != nil {
			errs = append(errs, fmt.Errorf("removing VIP %s: %w", a, err))
			continue
		}
		removed++
	}
	// Nothing is left for a next process to adopt.
	if nl.KeptFile != "" {
		if err := os.Remove(nl.KeptFile); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	if err := quiet.Quiet(nil); err != nil {
		errs = append(errs, fmt.Errorf("removing the nftables tables %s: %w", vip.QuietTable, err))
	}
	return removed, errors.Join(errs...)
}
