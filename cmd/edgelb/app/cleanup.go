package app

import (
	"errors"
	"flag"
	"fmt"
	"io"

	"github.com/edgelb/edgelb/lb/config"
	"github.com/edgelb/edgelb/lb/ipvs"
	"github.com/edgelb/edgelb/lb/snat"
)

func cleanupFlags(stderr io.Writer) (*flag.FlagSet, *string) {
	fs := newFlags("cleanup", "cleanup [--config FILE]", stderr)
	path := fs.String("config", defaultConfig, "config file: the interface, pools and static services whose kernel state is removed")
	return fs, path
}

// cleanupCmd removes from the kernel what edgelb put there: the VIP
// addresses it added to node.interface (only those carrying its address
// protocol mark or, on a kernel that drops the mark, listed in its state
// directory), the IPVS virtual services on addresses of its pools and
// static services, and its nftables table. It ends the traffic they carry,
// so edgelb never runs it by itself: the package's prerm runs it when the
// package is removed, after stopping the service (which hands the VIPs to
// the other hosts first).
func cleanupCmd(args []string, stdout, stderr io.Writer) error {
	fs, path := cleanupFlags(stderr)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	cfg, err := config.Load(*path)
	if err != nil {
		return fmt.Errorf("cleanup: %w", err)
	}
	var errs []error
	vips := 0
	if cfg.Node.Interface != "" {
		nl := vipKernel(cfg.Node.Interface)
		held, err := nl.VIPs()
		if err != nil {
			errs = append(errs, fmt.Errorf("listing VIPs on %s: %w", cfg.Node.Interface, err))
		}
		for _, a := range held {
			if err := nl.DelVIP(a); err != nil {
				errs = append(errs, fmt.Errorf("removing VIP %s: %w", a, err))
				continue
			}
			vips++
		}
	}
	services := 0
	if cfg.Dataplane.Backend == config.BackendIPVS {
		k := ipvs.NewKernel()
		defer k.Close()
		owns := ownedVIPs(cfg)
		all, err := k.GetVirtualServers()
		if err != nil {
			errs = append(errs, fmt.Errorf("listing IPVS virtual services: %w", err))
		}
		for _, vs := range all {
			if !owns(vs.Address) {
				continue // not edgelb's: never touched
			}
			if err := k.DeleteVirtualServer(vs); err != nil {
				errs = append(errs, fmt.Errorf("deleting virtual service %s: %w", vs, err))
				continue
			}
			services++
		}
		if cfg.Dataplane.Method == config.MethodNAT {
			if err := snat.New().Sync(nil); err != nil {
				errs = append(errs, fmt.Errorf("removing the nftables table %s: %w", snat.TableName, err))
			}
		}
	}
	fmt.Fprintf(stdout, "edgelb cleanup: removed %d VIP(s) from %q and %d IPVS virtual service(s)\n", vips, cfg.Node.Interface, services)
	return errors.Join(errs...)
}
