package cli

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/edgelb/edgelb/api"
	"github.com/edgelb/edgelb/lb/config"
)

// The one client of the local API that status and config share: how it
// is found (flags, $EDGELB_TOKEN, the config file) and how it is asked.

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

// client finds the API and the token: --api, else the config's
// api.listen; --token, else $EDGELB_TOKEN, else the config's first
// viewer token (admin first when write).
func (o *statusOptions) client(write bool, timeout time.Duration) (*apiClient, error) {
	if o.token == "" {
		o.token = os.Getenv("EDGELB_TOKEN")
	}
	if o.api == "" || o.token == "" {
		cfg, err := config.Load(o.config)
		if err != nil && o.api == "" {
			return nil, fmt.Errorf("finding the API: %w (or pass --api)", err)
		}
		if cfg != nil {
			if o.api == "" {
				scheme := "http"
				if cfg.API.TLS != nil {
					scheme = "https"
				}
				o.api = scheme + "://" + cfg.API.Listen
			}
			roles := []string{"viewer", "admin"}
			if write {
				roles = []string{"admin", "viewer"}
			}
			for _, role := range roles {
				if t := cfg.API.Tokens[role]; len(t) > 0 && o.token == "" {
					o.token = t[0]
				}
			}
		}
	}
	c := &apiClient{base: strings.TrimRight(o.api, "/"), token: o.token, http: &http.Client{Timeout: timeout}}
	if o.insecure {
		c.http.Transport = &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}} //nolint:gosec // user's explicit choice
	}
	return c, nil
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

// send makes a request that changes something; it returns the status and
// the body, and an error only when the API cannot be reached.
func (c *apiClient) send(ctx context.Context, method, path string, body []byte, hdr map[string]string) (int, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, bytes.NewReader(body))
	if err != nil {
		return 0, nil, fmt.Errorf("API address %q: %w", c.base, err)
	}
	req.Header.Set("Content-Type", "application/json")
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return 0, nil, fmt.Errorf("cannot reach the edgelb API at %s: %w", c.base, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return 0, nil, fmt.Errorf("reading %s: %w", path, err)
	}
	return resp.StatusCode, b, nil
}
