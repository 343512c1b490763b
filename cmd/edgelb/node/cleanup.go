package node

import (
	"errors"
	"fmt"

	"github.com/edgelb/edgelb/lb/config"
	"github.com/edgelb/edgelb/lb/filter"
	"github.com/edgelb/edgelb/lb/snat"
	"github.com/edgelb/edgelb/vip/aftercrash"
)

// Removed counts what Cleanup removed.
type Removed struct {
	VIPs, Services int
}

// Cleanup removes from this host's kernel what a node put there under
// cfg (read from the file, with the versions kept in stateDir): the VIP
// addresses it added to node.interface (only those carrying its address
// protocol mark or, on a kernel that drops the mark, listed in the state
// directory), and unless vipsOnly the IPVS virtual services on addresses
// of its pools and static services and its nftables tables (source NAT
// and the source-range filter). It ends the traffic they carry: only
// `edgelb cleanup` calls it.
func Cleanup(cfg *config.Config, stateDir string, vipsOnly bool) (Removed, error) {
	var errs []error
	var res Removed
	snatK, quiet, ipvsK, filterK := CleanupKernels()
	defer ipvsK.Close()
	if cfg.Node.Interface != "" {
		n, err := aftercrash.RemoveVIPs(cfg.Node.Interface, stateDir, quiet)
		res.VIPs = n
		if err != nil {
			errs = append(errs, err)
		}
	}
	if vipsOnly {
		return res, errors.Join(errs...)
	}
	if cfg.Dataplane.Backend == config.BackendIPVS {
		owns := cleanupManaged(cfg, stateDir).Contains
		all, err := ipvsK.GetVirtualServers()
		if err != nil {
			errs = append(errs, fmt.Errorf("listing IPVS virtual services: %w", err))
		}
		for _, vs := range all {
			if !owns(vs.Address) {
				continue // not edgelb's: never touched
			}
			if err := ipvsK.DeleteVirtualServer(vs); err != nil {
				errs = append(errs, fmt.Errorf("deleting virtual service %s: %w", vs, err))
				continue
			}
			res.Services++
		}
		if cfg.Dataplane.Method == config.MethodNAT {
			if err := snatK.Sync(nil); err != nil {
				errs = append(errs, fmt.Errorf("removing the nftables table %s: %w", snat.TableName, err))
			}
		}
	}
	// The source-range filter runs with every backend.
	if err := filterK.Delete(); err != nil {
		errs = append(errs, fmt.Errorf("removing the nftables table %s: %w", filter.TableName, err))
	}
	return res, errors.Join(errs...)
}
