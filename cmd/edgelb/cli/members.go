package cli

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/edgelb/edgelb/api"
)

type membersOptions struct {
	statusOptions
	force bool
}

// membersFlags are the flags of `edgelb members SUBCOMMAND`.
func membersFlags(stderr io.Writer) (*flag.FlagSet, *membersOptions) {
	fs := newFlags("members", "members list|add ADDRESS|remove NAME [--force] [--api URL] [--token TOKEN] [--output text|json]", stderr)
	o := &membersOptions{}
	o.apiFlags(fs, "admin or viewer")
	fs.StringVar(&o.output, "output", "text", "output of list: text or json")
	fs.BoolVar(&o.force, "force", false, "add, remove: make the change even though the configured members would then have no reachable majority")
	return fs, o
}

const membersUsage = `Usage:
  edgelb members list            the members: configured (they vote on the cluster
                                 configuration and may own VIPs) or not, alive,
                                 healthy, their VIPs and configuration version
  edgelb members add ADDRESS     make the host whose gossip address is ADDRESS
                                 (its cluster.bindAddr:bindPort) a configured member;
                                 then start edgelb on it
  edgelb members remove NAME     remove a configured member (its gossip address, or
                                 its node name while it is live); it gives up its
                                 VIPs; then stop edgelb on it
`

func membersCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs, o := membersFlags(stderr)
	usage := fs.Usage
	fs.Usage = func() { usage(); fmt.Fprint(stderr, "\n"+membersUsage) }
	operands, err := parseOperands(fs, args)
	if err != nil {
		return err
	}
	sub, operands := operands[0], operands[1:]
	want := map[string]int{"list": 0, "add": 1, "remove": 1}
	n, ok := want[sub]
	if !ok {
		fmt.Fprintf(stderr, "edgelb members: unknown subcommand %q\n\n%s", sub, membersUsage)
		return errUsage
	}
	if len(operands) != n {
		fmt.Fprintf(stderr, "edgelb members %s: want %d argument(s), got %q\n\n%s", sub, n, operands, membersUsage)
		return errUsage
	}
	if o.output != "text" && o.output != "json" {
		fmt.Fprintf(stderr, "--output %q: want text or json\n", o.output)
		return errUsage
	}
	// A change waits for the cluster to commit it (5 s at most).
	c, err := o.client(sub != "list", 15*time.Second)
	if err != nil {
		return err
	}
	force := ""
	if o.force {
		force = "?force=true"
	}
	switch sub {
	case "list":
		return membersList(ctx, c, o.output, stdout)
	case "add":
		body, _ := json.Marshal(api.AddMemberRequest{Address: operands[0]})
		res, err := memberChange(ctx, c, "POST", "/api/v1/members"+force, body)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "added %s: the configured members are %s\n", res.Member, strings.Join(res.Members, ", "))
		fmt.Fprintln(stdout, "now start edgelb on the new host: it joins the cluster and takes the committed configuration")
		return nil
	default:
		res, err := memberChange(ctx, c, "DELETE", "/api/v1/members/"+url.PathEscape(operands[0])+force, nil)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "removed %s: the configured members are %s\n", res.Member, strings.Join(res.Members, ", "))
		fmt.Fprintln(stdout, "it owns no VIP any more; stop edgelb on it (systemctl stop edgelb)")
		return nil
	}
}

func memberChange(ctx context.Context, c *apiClient, method, path string, body []byte) (api.MemberChange, error) {
	code, b, err := c.send(ctx, method, path, body, nil)
	if err != nil {
		return api.MemberChange{}, err
	}
	if code != http.StatusOK && code != http.StatusCreated {
		return api.MemberChange{}, answer(path, "", code, b)
	}
	var res api.MemberChange
	if err := json.Unmarshal(b, &res); err != nil {
		return api.MemberChange{}, fmt.Errorf("decoding the answer of %s: %w", path, err)
	}
	return res, nil
}

func membersList(ctx context.Context, c *apiClient, output string, w io.Writer) error {
	var members []api.Member
	if err := c.get(ctx, "/api/v1/members", &members); err != nil {
		return err
	}
	if output == "json" {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(members)
	}
	var doc api.ConfigDoc
	if err := c.get(ctx, "/api/v1/config", &doc); err == nil {
		fmt.Fprintln(w, contactLine(doc))
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tADDRESS\tCONFIGURED\tALIVE\tHEALTHY\tCONFIG\tVIPS")
	yes := map[bool]string{true: "yes", false: "no"}
	for _, m := range members {
		name := m.Name
		if m.Self {
			name += " (this host)"
		}
		if m.Witness {
			name += " (witness)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%s\n", name, m.Address, yes[m.Configured], yes[m.Alive], yes[m.Healthy],
			m.ConfigVersion, strings.Join(m.VIPs, " "))
	}
	return tw.Flush()
}

// contactLine says which committed version a host shows and whether it
// is in contact with a majority.
func contactLine(doc api.ConfigDoc) string {
	c := doc.Contact
	switch {
	case c == nil:
		return fmt.Sprintf("version %d, this host's own (no consensus log: cluster.insecure or a lone host)", doc.Version)
	case c.Quorum:
		return fmt.Sprintf("version %d committed; this host is in contact with a majority (leader %s)", doc.Version, c.Leader)
	case len(c.Unreachable) > 0:
		return fmt.Sprintf("version %d, possibly behind: this host is NOT in contact with a majority (unreachable: %s); writes through it are refused",
			doc.Version, strings.Join(c.Unreachable, ", "))
	default:
		return fmt.Sprintf("version %d, possibly behind: this host is NOT in contact with a majority (no leader known); writes through it are refused", doc.Version)
	}
}
