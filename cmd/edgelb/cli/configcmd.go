package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/edgelb/edgelb/api"
	"github.com/edgelb/edgelb/lb/config"
)

type configOptions struct {
	statusOptions
	file          string
	showSecrets   bool
	restoreStates bool
}

// configFlags are the flags of `edgelb config SUBCOMMAND`.
func configFlags(stderr io.Writer) (*flag.FlagSet, *configOptions) {
	fs := newFlags("config", "config get|apply|diff|history|rollback N [-f FILE] [--show-secrets] [--restore-backend-states] [--api URL] [--token TOKEN] [--output yaml|json]", stderr)
	o := &configOptions{}
	o.apiFlags(fs, "admin or viewer")
	fs.StringVar(&o.output, "output", "yaml", "output of get and history: yaml (get: the spec, ready to edit and apply) or json")
	fs.StringVar(&o.file, "f", "", "apply, diff: the file with the cluster configuration (YAML or JSON: the spec, the output of get, or a whole config file, whose host-local keys are left out)")
	fs.BoolVar(&o.restoreStates, "restore-backend-states", false, "rollback: also take version N's backend admin states (by default the backends drained or disabled now stay so)")
	fs.BoolVar(&o.showSecrets, "show-secrets", false, "get: print the BGP peers' passwords instead of "+api.SecretPlaceholder+" (admin token; the read is in the audit log)")
	return fs, o
}

const configUsage = `Usage:
  edgelb config get                 print the cluster configuration (the spec, as YAML);
                                    each BGP password is shown as (secret), which apply
                                    reads as "keep the stored one" (--show-secrets: the
                                    passwords, with an admin token)
  edgelb config apply -f FILE       make FILE the next version (refused if it is invalid,
                                    or if the configuration changed since it was read);
                                    without a backendStates key, the backends drained or
                                    disabled now stay so
  edgelb config diff -f FILE        what FILE would change (a changed password is named,
                                    never shown), and its errors; nothing changes
  edgelb config history             the versions kept (each committed by a majority)
  edgelb config rollback N          make version N's content the next version, the
                                    backends' admin states as they are now
                                    (--restore-backend-states: version N's too)
`

// parseOperands parses args with fs, flags before or after the
// operands, and returns the operands: at least one (the subcommand), or
// errUsage after printing the usage.
func parseOperands(fs *flag.FlagSet, args []string) ([]string, error) {
	var operands []string
	for rest := args; ; {
		if err := fs.Parse(rest); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, err
			}
			return nil, errUsage
		}
		if fs.NArg() == 0 {
			break
		}
		operands = append(operands, fs.Arg(0))
		rest = fs.Args()[1:]
	}
	if len(operands) == 0 {
		fs.Usage()
		return nil, errUsage
	}
	return operands, nil
}

func configCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs, o := configFlags(stderr)
	usage := fs.Usage
	fs.Usage = func() { usage(); fmt.Fprint(stderr, "\n"+configUsage) }
	// Flags may come before or after the operands (rollback N).
	operands, err := parseOperands(fs, args)
	if err != nil {
		return err
	}
	sub, operands := operands[0], operands[1:]
	if o.output != "yaml" && o.output != "json" {
		fmt.Fprintf(stderr, "--output %q: want yaml or json\n", o.output)
		return errUsage
	}
	want := map[string]int{"get": 0, "apply": 0, "diff": 0, "history": 0, "rollback": 1}
	n, ok := want[sub]
	if !ok {
		fmt.Fprintf(stderr, "edgelb config: unknown subcommand %q\n\n%s", sub, configUsage)
		return errUsage
	}
	if len(operands) != n {
		fmt.Fprintf(stderr, "edgelb config %s: unexpected arguments: %s\n\n%s", sub, strings.Join(operands, " "), configUsage)
		return errUsage
	}
	if o.showSecrets && sub != "get" {
		fmt.Fprintf(stderr, "edgelb config %s: --show-secrets is for get\n", sub)
		return errUsage
	}
	if (sub == "apply" || sub == "diff") && o.file == "" {
		fmt.Fprintf(stderr, "edgelb config %s needs -f FILE\n", sub)
		return errUsage
	}
	// The writes, and a read of the secrets, need an admin token.
	c, err := o.client(sub == "apply" || sub == "diff" || sub == "rollback" || o.showSecrets, 10*time.Second)
	if err != nil {
		return err
	}
	switch sub {
	case "get":
		return configGet(ctx, c, o, stdout)
	case "apply":
		return configApply(ctx, c, o, stdout)
	case "diff":
		return configDiff(ctx, c, o, stdout)
	case "history":
		return configHistory(ctx, c, o, stdout)
	default:
		v, err := strconv.ParseUint(operands[0], 10, 64)
		if err != nil || v == 0 {
			fmt.Fprintf(stderr, "edgelb config rollback: %q is not a version number\n", operands[0])
			return errUsage
		}
		return configRollback(ctx, c, v, o.restoreStates, stdout)
	}
}

// answer turns an error answer into an error with the API's message;
// invalid specs list each field, with the file's name, like `edgelb check`.
func answer(path, file string, code int, body []byte) error {
	var inv api.InvalidConfig
	if code == http.StatusUnprocessableEntity && json.Unmarshal(body, &inv) == nil && len(inv.Errors) > 0 {
		return invalidError(file, inv.Errors)
	}
	var e api.Error
	if json.Unmarshal(body, &e) == nil && e.Error != "" {
		return fmt.Errorf("%s: %d %s: %s", path, code, http.StatusText(code), e.Error)
	}
	return fmt.Errorf("%s: %d %s", path, code, http.StatusText(code))
}

func invalidError(file string, errs []api.FieldError) error {
	lines := make([]string, len(errs))
	for i, e := range errs {
		where := file
		if e.Member != "" {
			// Another member's file does not fit the version.
			where = e.Member
		}
		lines[i] = fmt.Sprintf("%s: %s: %s", where, e.Field, e.Message)
	}
	return errors.New(strings.Join(lines, "\n"))
}

func configGet(ctx context.Context, c *apiClient, o *configOptions, w io.Writer) error {
	path := "/api/v1/config"
	if o.showSecrets {
		path += "?secrets=true"
	}
	var doc api.ConfigDoc
	if err := c.get(ctx, path, &doc); err != nil {
		return err
	}
	if o.output == "json" {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(doc)
	}
	var spec any
	if err := json.Unmarshal(doc.Spec, &spec); err != nil {
		return fmt.Errorf("decoding the spec: %w", err)
	}
	fmt.Fprintf(w, "# edgelb cluster configuration version %d, %s by %s\n", doc.Version, doc.UpdatedAt.Format(time.RFC3339), doc.UpdatedBy)
	if doc.Contact != nil {
		fmt.Fprintf(w, "# %s\n", contactLine(doc))
	}
	enc := yaml.NewEncoder(w)
	enc.SetIndent(2)
	defer enc.Close()
	return enc.Encode(spec)
}

// readSpec reads the file given with -f as a spec.
func readSpec(file string) (json.RawMessage, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	spec, err := config.CanonicalSpec(data)
	if err != nil {
		var fe *config.FieldError
		if errors.As(err, &fe) {
			return nil, fmt.Errorf("%s: %s", file, fe.Msg)
		}
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	return spec, nil
}

func configApply(ctx context.Context, c *apiClient, o *configOptions, w io.Writer) error {
	spec, err := readSpec(o.file)
	if err != nil {
		return err
	}
	var cur api.ConfigDoc
	if err := c.get(ctx, "/api/v1/config", &cur); err != nil {
		return err
	}
	if bytes.Equal(spec, cur.Spec) {
		fmt.Fprintf(w, "unchanged: version %d\n", cur.Version)
		return nil
	}
	code, body, err := c.send(ctx, "PUT", "/api/v1/config", spec, map[string]string{"If-Match": etagOf(cur.Version)})
	if err != nil {
		return err
	}
	if code != http.StatusOK {
		return answer("/api/v1/config", o.file, code, body)
	}
	var doc api.ConfigDoc
	if err := json.Unmarshal(body, &doc); err != nil {
		return fmt.Errorf("decoding the answer: %w", err)
	}
	fmt.Fprintf(w, "applied: version %d (was %d)\n", doc.Version, cur.Version)
	return nil
}

func etagOf(v uint64) string { return `"` + strconv.FormatUint(v, 10) + `"` }

func configDiff(ctx context.Context, c *apiClient, o *configOptions, w io.Writer) error {
	spec, err := readSpec(o.file)
	if err != nil {
		return err
	}
	code, body, err := c.send(ctx, "POST", "/api/v1/config/validate", spec, nil)
	if err != nil {
		return err
	}
	if code != http.StatusOK {
		return answer("/api/v1/config/validate", o.file, code, body)
	}
	var r api.ValidateResult
	if err := json.Unmarshal(body, &r); err != nil {
		return fmt.Errorf("decoding the answer: %w", err)
	}
	if !r.Valid {
		return invalidError(o.file, r.Errors)
	}
	printEffect(w, r.Effect)
	return nil
}

func printEffect(w io.Writer, e *api.ConfigEffect) {
	n := 0
	line := func(sign, what string, names []string) {
		for _, name := range names {
			fmt.Fprintf(w, "%s %s %s\n", sign, what, name)
			n++
		}
	}
	line("+", "vip", e.VIPsAdded)
	line("-", "vip", e.VIPsRemoved)
	line("+", "service", e.ServicesAdded)
	line("-", "service", e.ServicesRemoved)
	line("~", "service", e.ServicesChanged)
	line("+", "pool", e.PoolsAdded)
	line("-", "pool", e.PoolsRemoved)
	line("~", "pool", e.PoolsChanged)
	line("~", "", e.Other)
	line("~", "secret", e.SecretsChanged)
	if n == 0 {
		fmt.Fprintln(w, "no change")
	}
}

func configHistory(ctx context.Context, c *apiClient, o *configOptions, w io.Writer) error {
	var hs []api.ConfigVersion
	if err := c.get(ctx, "/api/v1/config/history", &hs); err != nil {
		return err
	}
	if o.output == "json" {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(hs)
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "VERSION\tUPDATED\tBY\tMEMBER\t")
	for _, h := range hs {
		note := ""
		if h.Current {
			note = "current"
		}
		if len(h.SecretsChanged) > 0 {
			note = strings.TrimPrefix(note+"; changed "+strings.Join(h.SecretsChanged, ", "), "; ")
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\n", h.Version, h.UpdatedAt.Format(time.RFC3339), h.UpdatedBy, h.Member, note)
	}
	return tw.Flush()
}

func configRollback(ctx context.Context, c *apiClient, v uint64, restoreStates bool, w io.Writer) error {
	path := fmt.Sprintf("/api/v1/config/rollback/%d", v)
	if restoreStates {
		path += "?backendStates=restore"
	}
	code, body, err := c.send(ctx, "POST", path, nil, nil)
	if err != nil {
		return err
	}
	if code != http.StatusOK {
		return answer(path, fmt.Sprintf("version %d", v), code, body)
	}
	var doc api.ConfigDoc
	if err := json.Unmarshal(body, &doc); err != nil {
		return fmt.Errorf("decoding the answer: %w", err)
	}
	fmt.Fprintf(w, "rolled back: version %d has the content of version %d\n", doc.Version, v)
	return nil
}
