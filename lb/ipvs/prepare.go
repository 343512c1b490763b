package ipvs

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// PrepareOptions says what the kernel must offer.
type PrepareOptions struct {
	// Schedulers are loaded as ip_vs_<name> modules; the kernel also
	// loads them on demand when /sbin/modprobe exists.
	Schedulers []string
	// NAT enables IPVS connection tracking (net.ipv4.vs.conntrack), which
	// source NAT of masqueraded connections needs.
	NAT bool
	// Tunnel loads the ipip module for the tunnel method.
	Tunnel bool
	// Sloppy lets IPVS take a TCP or SCTP flow from any of its packets,
	// not only from its first (net.ipv4.vs.sloppy_tcp, sloppy_sctp): a
	// host then carries on a flow another host started.
	Sloppy bool
	// ProcRoot is where procfs is mounted; "" means /proc.
	ProcRoot string
	Log      *slog.Logger
}

// ErrNoIPVS means the running kernel cannot do IPVS.
var ErrNoIPVS = errors.New("the kernel has no IPVS (CONFIG_IP_VS): /proc/net/ip_vs is missing after modprobe ip_vs; use a kernel with IPVS or dataplane.backend: none")

// Prepare loads the kernel modules and sets the sysctls the dataplane
// needs. It is idempotent. On a kernel without IPVS it returns an error
// wrapping ErrNoIPVS.
func Prepare(o PrepareOptions) error {
	log := o.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	proc := o.ProcRoot
	if proc == "" {
		proc = "/proc"
	}
	if _, err := os.Stat(filepath.Join(proc, "net/ip_vs")); err != nil {
		out, merr := exec.Command("modprobe", "ip_vs").CombinedOutput()
		if _, err := os.Stat(filepath.Join(proc, "net/ip_vs")); err != nil {
			if merr != nil {
				return fmt.Errorf("%w (modprobe: %v: %s)", ErrNoIPVS, merr, strings.TrimSpace(string(out)))
			}
			return ErrNoIPVS
		}
	}
	mods := []string{"nf_conntrack"}
	for _, s := range o.Schedulers {
		mods = append(mods, "ip_vs_"+s)
	}
	if o.Tunnel {
		mods = append(mods, "ipip")
	}
	for _, m := range mods {
		if loaded(proc, m) {
			continue
		}
		if out, err := exec.Command("modprobe", m).CombinedOutput(); err != nil {
			// Built-in modules and kernels that autoload are fine;
			// a real absence shows when a service is added.
			log.Warn("loading kernel module", "module", m, "err", err, "output", strings.TrimSpace(string(out)))
		}
	}
	sysctls := []struct {
		key, val string
		need     bool
	}{
		{"net/ipv4/ip_forward", "1", true},
		// Drop connections to deleted real servers at once instead of
		// black-holing their packets, and let persistence templates of
		// drained real servers expire (kube-proxy sets both too).
		{"net/ipv4/vs/expire_nodest_conn", "1", true},
		{"net/ipv4/vs/expire_quiescent_template", "1", true},
		{"net/ipv6/conf/all/forwarding", "1", false},
	}
	if o.NAT {
		sysctls = append(sysctls, struct {
			key, val string
			need     bool
		}{"net/ipv4/vs/conntrack", "1", true})
	}
	// Sloppy pickup is IPVS's own setting, so it is set either way: a
	// configuration that turns continuity off turns it off.
	sloppy := "0"
	if o.Sloppy {
		sloppy = "1"
	}
	sysctls = append(sysctls, struct {
		key, val string
		need     bool
	}{"net/ipv4/vs/sloppy_tcp", sloppy, o.Sloppy}, struct {
		key, val string
		need     bool
	}{"net/ipv4/vs/sloppy_sctp", sloppy, o.Sloppy})
	if o.Sloppy && o.NAT {
		// Conntrack picks a nat flow up mid-stream without having seen
		// the backend's window; checking the backend's next segments
		// against it would mark them invalid, and the host, to which
		// they are addressed (the VIP), would reset the connection.
		sysctls = append(sysctls, struct {
			key, val string
			need     bool
		}{"net/netfilter/nf_conntrack_tcp_be_liberal", "1", false})
	}
	var errs []error
	for _, s := range sysctls {
		p := filepath.Join(proc, "sys", s.key)
		if b, err := os.ReadFile(p); err == nil && strings.TrimSpace(string(b)) == s.val {
			continue
		}
		if err := os.WriteFile(p, []byte(s.val), 0o644); err != nil {
			if s.need {
				errs = append(errs, fmt.Errorf("setting sysctl %s=%s: %w", strings.ReplaceAll(s.key, "/", "."), s.val, err))
			} else {
				log.Warn("setting sysctl", "sysctl", s.key, "err", err)
			}
		}
	}
	return errors.Join(errs...)
}

func loaded(proc, mod string) bool {
	if _, err := os.Stat(filepath.Join("/sys/module", mod)); err == nil {
		return true
	}
	b, err := os.ReadFile(filepath.Join(proc, "modules"))
	return err == nil && strings.Contains(string(b), mod+" ")
}
