package app

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/edgelb/edgelb/api"
	"github.com/edgelb/edgelb/lb/config"
)

type statusOptions struct {
	config, api, token, output string
	insecure                   bool
}

// apiFlags adds the flags that find and reach the local API; the default
// token is the config's first of roles.
func (o *statusOptions) apiFlags(fs *flag.FlagSet, roles string) {
	fs.StringVar(&o.config, "config", defaultConfig, "config file, to find the API address (ignored when --api is given)")
	fs.StringVar(&o.api, "api", "", "base URL of the edgelb API (default: from the config's api.listen)")
	// $EDGELB_TOKEN is read after parsing, not as the flag's default, so
	// that --help and the man page never print a token.
	fs.StringVar(&o.token, "token", "", "bearer token (default: $EDGELB_TOKEN, else the config's first "+roles+" token)")
	fs.BoolVar(&o.insecure, "insecure-skip-verify", false, "do not verify the API's TLS certificate")
}

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
	if o.token == "" {
		o.token = os.Getenv("EDGELB_TOKEN")
	}
	if o.output != "text" && o.output != "json" {
		fmt.Fprintf(stderr, "--output %q: want text or json\n", o.output)
		return errUsage
	}
	if o.api == "" || o.token == "" {
		cfg, err := config.Load(o.config)
		if err != nil && o.api == "" {
			return fmt.Errorf("finding the API: %w (or pass --api)", err)
		}
		if cfg != nil {
			if o.api == "" {
				scheme := "http"
				if cfg.API.TLS != nil {
					scheme = "https"
				}
				o.api = scheme + "://" + cfg.API.Listen
			}
			if o.token == "" {
				for _, role := range []string{"viewer", "admin"} {
					if t := cfg.API.Tokens[role]; len(t) > 0 {
						o.token = t[0]
						break
					}
				}
			}
		}
	}
	c := &apiClient{base: strings.TrimRight(o.api, "/"), token: o.token, http: &http.Client{Timeout: 5 * time.Second}}
	if o.insecure {
		c.http.Transport = &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}} //nolint:gosec // user's explicit choice
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

type apiClient struct {
	base, token string
	http        *http.Client
}

func (c *apiClient) get(ctx context.Context, path string, into any) error {
	req, err := http.NewRequestWithContext(ctx, "GET", c.base+path, nil)
	if err != nil {
		return fmt.Errorf("API address %q: %w", c.base, err)
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("cannot reach the edgelb API at %s: %w", c.base, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("reading %s: %w", path, err)
	}
	if resp.StatusCode != http.StatusOK {
		var e api.Error
		if json.Unmarshal(body, &e) == nil && e.Error != "" {
			return fmt.Errorf("%s: %s: %s", path, resp.Status, e.Error)
		}
		return fmt.Errorf("%s: %s", path, resp.Status)
	}
	if err := json.Unmarshal(body, into); err != nil {
		return fmt.Errorf("decoding %s: %w", path, err)
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
		case !m.Healthy:
			state = "unhealthy"
		}
		name := m.Name
		if m.Self {
			name += " (self)"
		}
		cfgVersion := "-"
		if m.ConfigVersion > 0 {
			cfgVersion = fmt.Sprintf("v%d", m.ConfigVersion)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", name, m.Address, state, cfgVersion, strings.Join(m.VIPs, ","))
	}
	fmt.Fprintf(tw, "\nVIP\tOWNER\tSERVICES\n")
	for _, v := range vips {
		owner := v.Owner
		switch {
		case v.Announce == "bgp":
			owner = "<every serving host, BGP>"
		case owner == "":
			owner = "<none>"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\n", v.Address, owner, strings.Join(v.Services, ","))
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
}

func joinHostPort(ip string, port uint16) string {
	if strings.Contains(ip, ":") {
		return fmt.Sprintf("[%s]:%d", ip, port)
	}
	return fmt.Sprintf("%s:%d", ip, port)
}
