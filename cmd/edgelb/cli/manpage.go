package cli

import (
	"bytes"
	"flag"
	"fmt"
	"io"
	"regexp"
	"strings"
)

// manCommand is one subcommand as edgelb(8) describes it: the flags come
// from the function the subcommand itself parses with, the synopsis from
// the first line of its --help.
type manCommand struct {
	name  string
	flags *flag.FlagSet // nil: the command takes no flags
	text  string        // the paragraph under the synopsis
}

// manCommands lists the subcommands in the order of the usage.
func manCommands() []manCommand {
	run, _ := runFlags(io.Discard)
	check, _ := checkFlags(io.Discard)
	status, _ := statusFlags(io.Discard)
	cleanup, _ := cleanupFlags(io.Discard)
	cfgFlags, _ := configFlags(io.Discard)
	memFlags, _ := membersFlags(io.Discard)
	witness, _ := witnessFlags(io.Discard)
	return []manCommand{
		{"run", run, "Run the daemon: join the other appliance hosts, allocate addresses to " +
			"Services of type LoadBalancer, announce the addresses this host owns and program " +
			"IPVS. A config that does not pass check is refused before anything on the host " +
			"changes. Each Service may choose its forwarding and health checks with edgelb.io/ " +
			"annotations (README.md lists them); the host holding the Lease records Events on the " +
			"Services: allocations, refusals, owner changes, backends that all fail their checks. " +
			"SIGTERM hands the host's addresses over to the other hosts before it exits. " +
			"The systemd unit edgelb.service runs this command."},
		{"check", check, "Validate a config file and print a one-line summary. Every problem is " +
			"printed as file:line: field: message and the exit status is 1."},
		{"status", status, "Print the node's health, the members, the owner of each address and " +
			"the services with their backends, read from the local REST API."},
		{"config", cfgFlags, "Read and change the cluster configuration (pools, services, " +
			"dataplane, healthCheck, bgp without routerID, backendStates), the versioned document the hosts " +
			"commit through a consensus log (Raft over the encrypted gossip, kept in each state directory), through the local " +
			"REST API; a change is acknowledged once a majority of the hosts has committed it, and refused (503) " +
			"on a host that cannot reach a majority. get prints the running version's spec as YAML, each BGP peer's password shown as " +
			"(secret) to every token; get --show-secrets prints the passwords, with an admin token only, " +
			"and the audit log records the read. apply -f FILE makes FILE " +
			"(the spec, the output of get, or a whole config file whose host-local keys are left out) " +
			"the next version, refused with file: field: message lines (the rules and messages of check) " +
			"if it is invalid, or if another change came first, or with cluster.insecure in a cluster of several hosts " +
			"(each host then runs its own file's cluster-wide keys); a password given as (secret) keeps the one " +
			"stored for the peer with the same address; a FILE without backendStates keeps the backends drained or " +
			"disabled as they are. diff -f FILE prints what it would " +
			"change (+/- VIPs, services, pools; ~ secret for a password, never its value) or its errors, changing nothing; history lists the " +
			"versions kept, each committed by a majority of the cluster, and the passwords each changed; rollback N makes version N's " +
			"content, its passwords included, the next version, the backends' admin states staying as they are " +
			"(--restore-backend-states: version N's). Writes need an admin token; the audit log " +
			"(GET /api/v1/audit) records every attempt, accepted or refused, with the token's name."},
		{"members", memFlags, "List and change the configured members: the hosts that vote on the cluster " +
			"configuration and may own VIPs, kept in the consensus log and named by their gossip addresses " +
			"(cluster.bindAddr:bindPort). list prints every member, configured or not, with whether it is alive and healthy, " +
			"the configuration version it runs and its VIPs, under a line saying whether this host is in contact with a majority. " +
			"add ADDRESS commits a new member (then start edgelb on it: its empty log joins the running cluster and " +
			"catches up from the leader, it never bootstraps a cluster of its own); remove NAME commits a member's removal " +
			"(it stops counting towards the quorum and owns no VIP from then on; then stop edgelb on it). A change is " +
			"acknowledged once a majority has committed it, refused (503) without a reachable majority, and refused " +
			"when the configured members would then have no reachable majority (a host down) unless --force; the last " +
			"member cannot be removed. Both need an admin token and are in the audit log. docs/operations.md walks " +
			"through adding and removing a host."},
		{"witness", witness, "Run a witness on a third machine, for a pair of hosts: it joins their gossip " +
			"(with their key) and their configuration's consensus log as the third voter, so that the VIP quorum and " +
			"the log's majority are 2 of 3: either host with the witness keeps serving every VIP and accepts configuration " +
			"changes, and a partition gives the VIPs to at most the side the witness is on, never to both. The witness owns " +
			"no VIP, programs nothing and serves no API. Its config file has node.name and the cluster keys; cluster.join " +
			"lists the two hosts and the witness, as the hosts' own files do. With the witness lost the pair keeps serving; " +
			"with the witness and a host lost the survivor owns nothing. The systemd unit edgelb-witness.service runs this " +
			"command; docs/failover.md gives the guarantees."},
		{"keygen", keygenFlags(io.Discard), "Print a new random 32-byte gossip encryption key, " +
			"base64-encoded, for cluster.secretKeyFile. Every host of a cluster needs the same key."},
		{"cleanup", cleanup, "Remove what edgelb put in this host's kernel: the VIP addresses it " +
			"added to node.interface, the IPVS virtual services on addresses of its pools and static " +
			"services, and its nftables tables (source NAT, source-range filter, the quiet VIPs of a handover); nothing else. It ends the traffic they carry: the " +
			"package runs it on removal, after stopping the service. With --vips-only --after-crash " +
			"it does what the unit's ExecStopPost= (/usr/lib/edgelb/edgelb-crash-cleanup) does: when the daemon did not exit cleanly (killed, hung, " +
			"crashed) it removes only the VIP addresses the daemon left on the interface, the " +
			"list of VIPs kept for a restart and the quiet-VIP tables, so that they do not answer ARP beside their new owner."},
		{"version", nil, "Print the version, the git commit (when the build recorded it) and the Go version it was built with."},
	}
}

// WriteManPage writes the edgelb(8) manual page in roff. version and date
// (YYYY-MM-DD) go into its title line; hack/manpage calls this for
// `make deb`.
func WriteManPage(w io.Writer, version, date string) error {
	var b bytes.Buffer
	p := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	p(`.\" Generated by hack/manpage from edgelb's own flag definitions; do not edit.`)
	p(`.TH EDGELB 8 "%s" "edgelb %s" "System Administration"`, date, version)
	p(".SH NAME")
	p(`edgelb \- bare-metal load-balancer appliance for Kubernetes`)

	p(".SH SYNOPSIS")
	cmds := manCommands()
	for i, c := range cmds {
		if i > 0 {
			p(".br")
		}
		p("%s", synopsis(c))
	}

	p(".SH DESCRIPTION")
	p("%s", roffText("edgelb gives Services of type LoadBalancer an external IP address from "+
		"address pools, announces it from one of a few appliance hosts (gossip membership, "+
		"gratuitous ARP and unsolicited Neighbor Advertisements, sub-second failover) and "+
		"forwards with kernel IPVS to the cluster's NodePorts or pod addresses. It serves a REST "+
		"API, a dashboard and Prometheus metrics."))
	p(".PP")
	p("%s", roffText("The package installs the service edgelb.service but neither enables nor "+
		"starts it: the default config holds example addresses. Edit /etc/edgelb/config.yaml, "+
		"run edgelb check, then systemctl enable --now edgelb."))
	p(".PP")
	p("%s", roffText("Flags may be written with one dash or two (-config or --config)."))

	p(".SH COMMANDS")
	for _, c := range cmds {
		p(".TP")
		p("%s", synopsis(c))
		p("%s", roffText(c.text))
		if c.flags == nil {
			continue
		}
		n := 0
		c.flags.VisitAll(func(*flag.Flag) { n++ })
		if n == 0 {
			continue
		}
		p(".RS")
		c.flags.VisitAll(func(f *flag.Flag) {
			arg, usage := flag.UnquoteUsage(f)
			p(".TP")
			if arg == "" {
				p(`.B %s`, roffEscape("--"+f.Name))
			} else {
				p(`.BI %s " %s"`, roffEscape("--"+f.Name), roffEscape(arg))
			}
			if f.DefValue != "" && f.DefValue != "false" {
				usage += " (default: " + f.DefValue + ")"
			}
			p("%s", roffText(usage))
		})
		p(".RE")
	}

	p(".SH EXIT STATUS")
	p("%s", roffText("0 on success, 1 on an error (for check: the config file has problems), "+
		"2 on a usage error such as an unknown command or flag."))
	p(".SH ENVIRONMENT")
	p(".TP")
	p(".B EDGELB_TOKEN")
	p("%s", roffText("the bearer token edgelb status and edgelb config send when --token is not given."))
	p(".SH FILES")
	for _, f := range [][2]string{
		{"/etc/edgelb/config.yaml", "the config, commented; a conffile, so upgrades keep local edits"},
		{"/etc/edgelb/gossip.key", "the gossip encryption key, created by the package if missing; the same on every host"},
		{"/var/lib/edgelb/consensus.db", "the consensus log of the cluster configuration: its committed versions and history, the same on every host; the file's cluster-wide keys are proposed only when the cluster has no version yet"},
		{"/var/lib/edgelb/cluster-config.json", "with cluster.insecure, this host's own versions of the cluster configuration; after an upgrade from a release that replicated by last writer wins, read once to seed the consensus log"},
		{"/var/lib/edgelb/audit.log", "the changes made through this host's API (JSON lines)"},
		{"/usr/lib/systemd/system/edgelb.service", "the systemd unit"},
		{"/usr/lib/sysctl.d/60-edgelb.conf", "forwarding and IPVS sysctls"},
		{"/usr/lib/modules-load.d/edgelb.conf", "the kernel modules loaded at boot"},
		{"/usr/share/edgelb/rbac.yaml", "the ServiceAccount and RBAC rules edgelb needs in the cluster"},
		{"/usr/share/doc/edgelb/README.md", "the full documentation; docs/ beside it has the guides (operations.md first), CHANGELOG.md what changed"},
	} {
		p(".TP")
		p(".I %s", f[0])
		p("%s", roffText(f[1]))
	}
	p(".SH SEE ALSO")
	p(".BR ipvsadm (8),")
	p(".BR nft (8),")
	p(".BR systemctl (1),")
	p(".BR journalctl (1)")
	_, err := w.Write(b.Bytes())
	return err
}

// synopsis renders the first line of a command's --help ("Usage: edgelb
// run --config FILE [...]") with flags in bold and placeholders in italics.
func synopsis(c manCommand) string {
	line := "edgelb " + c.name
	if c.flags != nil {
		var help bytes.Buffer
		out := c.flags.Output()
		c.flags.SetOutput(&help)
		c.flags.Usage()
		c.flags.SetOutput(out)
		first, _, _ := strings.Cut(help.String(), "\n")
		line = strings.TrimPrefix(first, "Usage: ")
	}
	name, args, _ := strings.Cut(strings.TrimPrefix(line, "edgelb "), " ")
	s := `\fBedgelb ` + roffEscape(name) + `\fR`
	if args != "" {
		s += " " + synopsisArgs.ReplaceAllStringFunc(roffEscape(args), func(w string) string {
			if strings.HasPrefix(w, `\-`) {
				return `\fB` + w + `\fR`
			}
			return `\fI` + w + `\fR`
		})
	}
	return s
}

// synopsisArgs matches, in escaped text, a flag (\-\-log\-level) or a
// placeholder (FILE, URL).
var synopsisArgs = regexp.MustCompile(`(?:\\-)+[a-z][a-z\\-]*|\b[A-Z]{2,}\b`)

// roffEscape escapes backslashes and writes the dashes of flags (a word
// that starts with a dash, such as --log-level) as minus signs, so they can
// be copied from the rendered page; hyphens in words stay hyphens.
func roffEscape(s string) string {
	s = strings.ReplaceAll(s, `\`, `\e`)
	return flagWord.ReplaceAllStringFunc(s, func(w string) string {
		return strings.ReplaceAll(w, "-", `\-`)
	})
}

// flagWord matches a flag in text: dashes, then a word, at the start or
// after a space or an opening bracket.
var flagWord = regexp.MustCompile(`(?:^|[\s\[(|"])-+[A-Za-z0-9][A-Za-z0-9-]*`)

// roffText escapes s for a text line: a line must not start with a
// control character.
func roffText(s string) string {
	s = roffEscape(s)
	if strings.HasPrefix(s, ".") || strings.HasPrefix(s, "'") {
		s = `\&` + s
	}
	return s
}
