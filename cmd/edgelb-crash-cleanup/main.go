// Command edgelb-crash-cleanup is what edgelb.service runs as
// ExecStopPost=: after a crash of `edgelb run` (anything but a clean exit)
// it removes the VIP addresses the process left on node.interface, and the
// list of VIPs kept for a next process, so that the host's kernel stops
// answering ARP/NDP for them beside their new owner. It does what `edgelb
// cleanup --vips-only --after-crash` does, in a binary that links neither
// the Kubernetes client nor GoBGP, so that it starts in a fraction of the
// time: the sooner it has run, the shorter that overlap can be on a loaded
// host (docs/failover.md). IPVS and nftables stay, as with --vips-only.
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/edgelb/edgelb/lb/config"
	"github.com/edgelb/edgelb/vip"
	"github.com/edgelb/edgelb/vip/aftercrash"
)

func main() {
	path := flag.String("config", "/etc/edgelb/config.yaml", "config file: the interface whose VIPs are removed")
	flag.Usage = func() {
		fmt.Fprintln(os.Stderr, "usage: edgelb-crash-cleanup [--config FILE]  (systemd's ExecStopPost= of edgelb.service: acts only after a crash)")
		flag.PrintDefaults()
	}
	flag.Parse()
	if err := run(*path); err != nil {
		fmt.Fprintln(os.Stderr, "edgelb cleanup:", err)
		os.Exit(1)
	}
}

func run(path string) error {
	crashed, why, err := aftercrash.Crashed(os.Getenv)
	if err != nil {
		return err
	}
	if !crashed {
		fmt.Printf("edgelb cleanup: nothing to do: %s\n", why)
		return nil
	}
	fmt.Printf("edgelb cleanup: %s\n", why)
	cfg, err := config.Load(path)
	if err != nil {
		return err
	}
	if cfg.Node.Interface == "" {
		return nil
	}
	n, err := aftercrash.RemoveVIPs(cfg.Node.Interface, aftercrash.DefaultStateDir(), vip.NewQuieter())
	fmt.Printf("edgelb cleanup: removed %d VIP(s) from %q\n", n, cfg.Node.Interface)
	return err
}
