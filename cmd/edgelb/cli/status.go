package cli

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/edgelb/edgelb/api"
)

func statusFlags(stderr io.Writer) (*flag.FlagSet, *statusOptions) {
	fs := newFlags("status", "status [--config FILE] [--api URL] [--token TOKEN] [--output text|json]", stderr)
	o := &statusOptions{}
	o.apiFlags(fs, "viewer or admin")
	fs.StringVar(&o.output, "output", "text", "output format: text or json")
	return fs, o
}

func statusCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs, o := statusFlags(stderr)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if o.output != "text" && o.output != "json" {
		fmt.Fprintf(stderr, "--output %q: want text or json\n", o.output)
		return errUsage
	}
	c, err := o.client(false, 5*time.Second)
	if err != nil {
		return err
	}
	var s struct {
		Status   api.Status    `json:"status"`
		Members  []api.Member  `json:"members"`
		VIPs     []api.VIP     `json:"vips"`
		Services []api.Service `json:"services"`
		BGP      api.BGPStatus `json:"bgp"`
	}
	for path, into := range map[string]any{"status": &s.Status, "members": &s.Members, "vips": &s.VIPs, "services": &s.Services} {
		if err := c.get(ctx, "/api/v1/"+path, into); err != nil {
			return err
		}
	}
	// Older servers have no /bgp: the rest of the status stands.
	bgpErr := c.get(ctx, "/api/v1/bgp", &s.BGP)
	if o.output == "json" {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(s)
	}
	printStatus(stdout, s.Status, s.Members, s.VIPs, s.Services)
	if bgpErr == nil {
		printBGP(stdout, s.BGP)
	}
	return nil
}

func yesNo(b bool, yes, no string) string {
	if b {
		return yes
	}
	return no
}

func printStatus(w io.Writer, st api.Status, members []api.Member, vips []api.VIP, svcs []api.Service) {
	health := "healthy"
	if !st.Healthy {
		health = "UNHEALTHY: " + st.Problem
	}
	fmt.Fprintf(w, "node %s (edgelb %s): %s, %s%s, dataplane %s\n", st.Node, st.Version, health,
		yesNo(st.Ready, "ready", "not ready"), yesNo(st.Draining, ", draining", ""), st.Dataplane)
	if k := st.Kubernetes; k != nil && k.Problem != "" {
		fmt.Fprintf(w, "kubernetes: %s\n", k.Problem)
	}
	if d := st.DataPath; d != nil && !d.OK {
		what := "keeping the VIPs: no other member has a working data path"
		if d.GaveUp {
			what = "owning no VIPs while another member's data path works"
		}
		fmt.Fprintf(w, "data path: FAILING (%s): %s\n", what, d.Problem)
	}
	if st.ConfigUnapplied > 0 {
		fmt.Fprintf(w, "cluster configuration: this host cannot apply the committed version %d over its config file and owns no VIPs until a version it can take is committed (see the problem above)\n", st.ConfigUnapplied)
	}
	if st.ConfigFileDiffers {
		fmt.Fprintf(w, "config file: its cluster-wide keys (pools, services, ...) differ from the running cluster configuration and are not used; `edgelb config diff -f FILE` shows how, `edgelb config apply -f FILE` makes them the next version\n")
	}
	leader := st.LeaderName
	if st.Leader {
		leader = "this host"
	}
	if leader != "" {
		fmt.Fprintf(w, "status writer (Lease holder): %s\n", leader)
	}
	for _, p := range st.Pools {
		fmt.Fprintf(w, "pool %s: %d of %d addresses used\n", p.Name, p.Used, p.Size)
	}

	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "\nMEMBER\tADDRESS\tSTATE\tCONFIG\tVIPS\n")
	for _, m := range members {
		state := "healthy"
		switch {
		case !m.Alive:
			state = "dead"
		case m.Draining:
			state = "draining"
		case m.Witness:
			state = "witness (owns no VIP)"
		case !m.Healthy && m.DataPathFailing:
			state = "unhealthy (data path)"
		case !m.Healthy:
			state = "unhealthy"
		}
		if m.Alive && !m.Configured {
			// Live in gossip, not in the log's member set: owns no VIP.
			state += ", not configured"
		}
		name := m.Name
		if m.Self {
			name += " (self)"
		}
		cfgVersion := "-"
		if m.ConfigVersion > 0 {
			cfgVersion = fmt.Sprintf("v%d", m.ConfigVersion)
		}
		if m.Unapplied > 0 {
			cfgVersion += fmt.Sprintf(" (cannot apply v%d)", m.Unapplied)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", name, m.Address, state, cfgVersion, strings.Join(m.VIPs, ","))
	}
	fmt.Fprintf(tw, "\nVIP\tOWNER\tSERVICES\tPROBLEM\n")
	for _, v := range vips {
		owner := v.Owner
		switch {
		case v.Announce == "bgp":
			owner = "<every serving host, BGP>"
		case owner == "":
			owner = "<none>"
		}
		problem := v.Problem
		if len(v.RefusedBy) > 0 && !v.Refused {
			problem = strings.TrimPrefix(problem+"; refused by "+strings.Join(v.RefusedBy, ","), "; ")
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", v.Address, owner, strings.Join(v.Services, ","), problem)
	}
	fmt.Fprintf(tw, "\nSERVICE\tVIP:PORT\tSCHED\tBACKENDS (up/total)\tCONNS\n")
	for _, s := range svcs {
		for _, p := range s.Ports {
			up := 0
			for _, b := range p.Backends {
				if b.Health == "up" || b.Health == "unknown" {
					up++
				}
			}
			fmt.Fprintf(tw, "%s/%s\t%s\t%s\t%d/%d\t%d\n", s.Namespace, s.Name,
				fmt.Sprintf("%s/%s", joinHostPort(p.VIP, p.Port), strings.ToLower(p.Protocol)), p.Scheduler, up, len(p.Backends), p.Stats.Connections)
		}
	}
	tw.Flush()
	// Services with no address, and why: "why is it pending".
	for _, s := range svcs {
		if s.State == "pending" {
			fmt.Fprintf(w, "PENDING %s/%s: %s\n", s.Namespace, s.Name, s.Problem)
		}
	}
	// What this host cannot do for a port, after the table: one line
	// each, whole.
	for _, s := range svcs {
		for _, p := range s.Ports {
			if p.Problem != "" {
				fmt.Fprintf(w, "PROBLEM %s/%s %s/%s: %s\n", s.Namespace, s.Name, joinHostPort(p.VIP, p.Port), strings.ToLower(p.Protocol), p.Problem)
			}
		}
	}
}

func joinHostPort(ip string, port uint16) string {
	if strings.Contains(ip, ":") {
		return fmt.Sprintf("[%s]:%d", ip, port)
	}
	return fmt.Sprintf("%s:%d", ip, port)
}

func dashIfEmpty(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// printBGP adds the BGP sessions to `edgelb status`: a line per peer.
func printBGP(w io.Writer, st api.BGPStatus) {
	if !st.Enabled {
		return
	}
	state := yesNo(st.Serving, "serving", "NOT serving (unhealthy, no quorum or draining): routes withdrawn")
	if st.GracefulShutdown {
		state = "draining or stopping: graceful-shutdown (65535:0) sent, routes withdrawn after bgp.withdrawDelay"
	}
	fmt.Fprintf(w, "\nBGP AS %d, router ID %s: %s, %d routes advertised\n", st.ASN, st.RouterID, state, len(st.Advertised))
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for _, r := range st.Routes {
		if len(r.Communities)+len(r.LargeCommunities) == 0 && r.LocalPref == nil {
			continue
		}
		lp := "-"
		if r.LocalPref != nil {
			lp = fmt.Sprint(*r.LocalPref)
		}
		fmt.Fprintf(tw, "  %s\tcommunities %s\tlarge %s\tlocal-pref %s\n", r.Prefix, dashIfEmpty(strings.Join(r.Communities, " ")),
			dashIfEmpty(strings.Join(r.LargeCommunities, " ")), lp)
	}
	tw.Flush()
	fmt.Fprintf(tw, "PEER\tASN\tSTATE\tUPTIME\tBFD\tPREFIXES SENT\n")
	for _, p := range st.Peers {
		up, bfd := "-", p.BFD
		if p.Established {
			up = (time.Duration(p.UptimeSeconds) * time.Second).String()
		}
		if bfd == "" {
			bfd = "-"
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%d\n", p.Address, p.ASN, p.State, up, bfd, p.PrefixesSent)
	}
	tw.Flush()
}
