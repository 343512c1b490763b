package cli

import (
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/edgelb/edgelb/cmd/edgelb/node"
	"github.com/edgelb/edgelb/lb/config"
	"github.com/edgelb/edgelb/vip/aftercrash"
)

type cleanupOptions struct {
	config     string
	vipsOnly   bool
	afterCrash bool
}

func cleanupFlags(stderr io.Writer) (*flag.FlagSet, *cleanupOptions) {
	fs := newFlags("cleanup", "cleanup [--config FILE] [--vips-only] [--after-crash]", stderr)
	o := &cleanupOptions{}
	fs.StringVar(&o.config, "config", defaultConfig, "config file: the interface, pools and static services whose kernel state is removed")
	fs.BoolVar(&o.vipsOnly, "vips-only", false, "remove only the VIP addresses (and the list of VIPs kept for a restarted process), never IPVS or nftables, so traffic that reaches this host by other paths keeps flowing")
	fs.BoolVar(&o.afterCrash, "after-crash", false, "act only if systemd's $EXIT_CODE and $EXIT_STATUS (set for ExecStopPost=) say the main process did not exit with status 0, that is did not remove or keep its VIPs itself")
	return fs, o
}

// cleanupCmd removes from the kernel what edgelb put there: the VIP
// addresses it added to node.interface (only those carrying its address
// protocol mark or, on a kernel that drops the mark, listed in its state
// directory), the IPVS virtual services on addresses of its pools and
// static services, and its nftables tables (source NAT and the
// source-range filter). It ends the traffic they carry,
// so edgelb never runs it by itself: the package's prerm runs it when the
// package is removed, after stopping the service (which hands the VIPs to
// the other hosts first).
//
// With --vips-only --after-crash it does what the unit's ExecStopPost=
// (cmd/edgelb-crash-cleanup, the same code in a small binary) does: after a
// crash the VIPs are gone at once, instead of answering ARP beside their
// new owner until their lifetime (cluster.restartHold) runs out.
func cleanupCmd(args []string, stdout, stderr io.Writer) error {
	fs, o := cleanupFlags(stderr)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if o.afterCrash {
		crashed, why, err := aftercrash.Crashed(os.Getenv)
		if err != nil {
			return fmt.Errorf("cleanup: %w", err)
		}
		if !crashed {
			fmt.Fprintf(stdout, "edgelb cleanup: nothing to do: %s\n", why)
			return nil
		}
		fmt.Fprintf(stdout, "edgelb cleanup: %s\n", why)
	}
	cfg, err := config.Load(o.config)
	if err != nil {
		return fmt.Errorf("cleanup: %w", err)
	}
	res, err := node.Cleanup(cfg, node.DefaultStateDir(), o.vipsOnly)
	if o.vipsOnly {
		fmt.Fprintf(stdout, "edgelb cleanup: removed %d VIP(s) from %q\n", res.VIPs, cfg.Node.Interface)
		return err
	}
	fmt.Fprintf(stdout, "edgelb cleanup: removed %d VIP(s) from %q and %d IPVS virtual service(s)\n", res.VIPs, cfg.Node.Interface, res.Services)
	return err
}
