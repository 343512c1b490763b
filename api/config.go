package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/gin-gonic/gin"
)

// ClusterConfig is the cluster configuration as the API reads and changes
// it (api/clustercfg implements it over the replicated versions). Its
// methods are safe for concurrent use.
//
// Secrets (the BGP peers' passwords) are shown as SecretPlaceholder in
// every spec these methods return unless secrets is asked for; a spec
// given to Put or Validate that carries the placeholder keeps the secret
// stored in the current version, so that a read, edit and write never
// wipes or replaces one.
type ClusterConfig interface {
	// Current is the version this host runs.
	Current(secrets bool) (ConfigDoc, error)
	// Put makes spec the next version if ifVersion is the current one,
	// and returns once a majority of the cluster has committed it:
	// ErrStale if it is not, *InvalidConfig if spec does not validate,
	// ErrNotReplicated if no version can be made here, ErrNoQuorum when
	// no majority is reachable (nothing changed), ErrUnconfirmed when ctx
	// ended before the cluster confirmed it.
	Put(ctx context.Context, spec json.RawMessage, ifVersion uint64, by string) (ConfigDoc, error)
	// Validate checks spec without taking it (*InvalidConfig) and says
	// what it would change.
	Validate(spec json.RawMessage) (ConfigEffect, error)
	// History lists the kept versions, oldest first.
	History() []ConfigVersion
	// Version returns version n (ErrNotFound).
	Version(n uint64, secrets bool) (ConfigDoc, error)
	// SetBackendState makes a version in which the backend (ip:port) of
	// the service ("namespace/name", "_static/name") is enabled, drained
	// or disabled ("enable", "drain", "disable"); *InvalidConfig if the
	// backend is not an address:port.
	// The errors are Put's.
	SetBackendState(ctx context.Context, service, backend, state, by string) (ConfigDoc, error)
}

// ErrNoQuorum: this host cannot reach a majority of the configured
// cluster, so the change was not made (503, with Retry-After); the error
// wrapping it names the unreachable members.
var ErrNoQuorum = errors.New("not changed: no majority of the cluster is reachable from this host")

// ErrUnconfirmed: the change was not acknowledged in time (503, with
// Retry-After); it may still be committed, which the current version
// says.
var ErrUnconfirmed = errors.New("not acknowledged: the cluster did not confirm the change in time")

// writeTimeout bounds how long a write waits for the cluster to commit
// it.
const writeTimeout = 5 * time.Second

// retryAfter is the Retry-After of a 503: about an election timeout and
// a probe, the time a partition's majority needs to be found again.
const retryAfter = "2"

// unavailable answers 503 when err is ErrNoQuorum or ErrUnconfirmed and
// reports whether it did.
func unavailable(c *gin.Context, err error) bool {
	if !errors.Is(err, ErrNoQuorum) && !errors.Is(err, ErrUnconfirmed) {
		return false
	}
	c.Header("Retry-After", retryAfter)
	abort(c, http.StatusServiceUnavailable, err.Error())
	return true
}

// SecretPlaceholder is what every configuration the API shows has in
// place of a secret that is set (lb/config's SecretPlaceholder).
const SecretPlaceholder = "(secret)"

// ErrStale: the If-Match version is not the current one.
var ErrStale = errors.New("the configuration changed meanwhile: the version given is not the current one")

// ConfigDoc is a version of the cluster configuration (GET /api/v1/config).
type ConfigDoc struct {
	Version   uint64    `json:"version"`
	UpdatedAt time.Time `json:"updatedAt"`
	UpdatedBy string    `json:"updatedBy"`
	// Spec has the same keys and shapes as the config file's
	// cluster-wide keys (pools, services, dataplane, healthCheck, bgp).
	Spec json.RawMessage `json:"spec"`
	// Contact, in GET /api/v1/config, says whether this host is in
	// contact with a majority of the configured cluster: without it, the
	// version shown may be behind the committed one, and writes through
	// this host get 503.
	Contact *Contact `json:"contact,omitempty"`
}

// ConfigVersion is one entry of GET /api/v1/config/history.
type ConfigVersion struct {
	Version   uint64    `json:"version"`
	UpdatedAt time.Time `json:"updatedAt"`
	UpdatedBy string    `json:"updatedBy"`
	// Member is the member the version was made on: its gossip address
	// (ip:port), the name the consensus log knows it by.
	Member string `json:"member"`
	// Lost is always false: a version exists only once a majority has
	// committed it, so none is ever lost. (Releases that replicated by
	// last writer wins marked the edits a partition lost.) Kept for
	// their clients.
	Lost bool `json:"lost,omitempty"`
	// Current: the version that runs.
	Current bool `json:"current,omitempty"`
	// SecretsChanged names the secrets set, changed or removed since the
	// version listed before this one (bgp.peers[10.0.0.1].password),
	// never their values: the part of a diff that the specs, which show
	// every secret as SecretPlaceholder, cannot show.
	SecretsChanged []string `json:"secretsChanged,omitempty"`
}

// FieldError is one problem in a spec: Field is its path
// (spec.pools[1].addresses[0]), Message the same as `edgelb check`'s.
type FieldError struct {
	Field   string `json:"field"`
	Message string `json:"message"`
	// Member, when set, is the other member whose config file the
	// version does not fit (its host-local keys: node.interface,
	// bgp.routerID, cluster.bindAddr); Field is in that file, or is the
	// spec's field that needs it.
	Member string `json:"member,omitempty"`
}

// InvalidConfig is a spec that does not validate (422).
type InvalidConfig struct {
	Errors []FieldError `json:"errors"`
}

func (e *InvalidConfig) Error() string {
	lines := make([]string, len(e.Errors))
	for i, f := range e.Errors {
		lines[i] = f.Field + ": " + f.Message
	}
	return strings.Join(lines, "\n")
}

// ConfigEffect is what a spec would change, by name (services, pools) and
// address (VIPs).
type ConfigEffect struct {
	VIPsAdded       []string `json:"vipsAdded"`
	VIPsRemoved     []string `json:"vipsRemoved"`
	ServicesAdded   []string `json:"servicesAdded"`
	ServicesRemoved []string `json:"servicesRemoved"`
	ServicesChanged []string `json:"servicesChanged"`
	PoolsAdded      []string `json:"poolsAdded"`
	PoolsRemoved    []string `json:"poolsRemoved"`
	PoolsChanged    []string `json:"poolsChanged"`
	// Other names the other keys that change (dataplane, healthCheck,
	// bgp).
	Other []string `json:"other"`
	// SecretsChanged names the secrets that would be set, changed or
	// removed (bgp.peers[10.0.0.1].password), never their values.
	SecretsChanged []string `json:"secretsChanged"`
}

// ValidateResult is the answer of POST /api/v1/config/validate.
type ValidateResult struct {
	Valid  bool          `json:"valid"`
	Errors []FieldError  `json:"errors"`
	Effect *ConfigEffect `json:"effect,omitempty"`
}

func (s *Server) configRoutes(v1, admin *gin.RouterGroup) {
	v1.GET("/audit", func(c *gin.Context) { c.JSON(http.StatusOK, s.auditLog.list()) })
	cc := s.opts.Config
	if cc == nil {
		return
	}
	v1.GET("/config", func(c *gin.Context) {
		secrets, ok := s.secretsParam(c)
		if !ok {
			return
		}
		doc, err := cc.Current(secrets)
		if err != nil {
			abort(c, http.StatusServiceUnavailable, err.Error())
			return
		}
		if secrets {
			s.audit(c, "config.secrets.read", 0)
		}
		if s.opts.Members != nil {
			ct := s.opts.Members.Contact()
			ct.Unreachable = nonNil(ct.Unreachable)
			doc.Contact = &ct
		}
		c.Header("ETag", etag(doc.Version))
		c.JSON(http.StatusOK, doc)
	})
	v1.GET("/config/history", func(c *gin.Context) { c.JSON(http.StatusOK, nonNil(cc.History())) })
	v1.GET("/config/history/:n", func(c *gin.Context) {
		n, ok := versionParam(c)
		if !ok {
			return
		}
		secrets, ok := s.secretsParam(c)
		if !ok {
			return
		}
		doc, err := cc.Version(n, secrets)
		switch {
		case errors.Is(err, ErrNotFound):
			abort(c, http.StatusNotFound, fmt.Sprintf("version %d is not in the history", n))
			return
		case err != nil:
			abort(c, http.StatusInternalServerError, err.Error())
			return
		}
		if secrets {
			s.audit(c, fmt.Sprintf("config.secrets.read %d", n), 0)
		}
		c.Header("ETag", etag(doc.Version))
		c.JSON(http.StatusOK, doc)
	})
	admin.PUT("/config", func(c *gin.Context) {
		ifVersion, ok := ifMatch(c, true)
		if !ok {
			return
		}
		spec, ok := specBody(c)
		if !ok {
			return
		}
		if spec, ok = s.operationalState(c, spec, false); ok {
			s.put(c, "config.put", spec, ifVersion)
		}
	})
	admin.POST("/config/validate", func(c *gin.Context) {
		spec, ok := specBody(c)
		if !ok {
			return
		}
		if spec, ok = s.operationalState(c, spec, false); ok {
			s.validate(c, spec)
		}
	})
	admin.POST("/services/:namespace/:name/backends/:backend/:action", func(c *gin.Context) {
		action := c.Param("action")
		if action != "enable" && action != "drain" && action != "disable" {
			abort(c, http.StatusNotFound, fmt.Sprintf("%q is not enable, drain or disable", action))
			return
		}
		svc := c.Param("namespace") + "/" + c.Param("name")
		be := c.Param("backend")
		s.audit(c, fmt.Sprintf("backend.%s %s %s", action, svc, be), 0)
		ctx, cancel := context.WithTimeout(c.Request.Context(), writeTimeout)
		defer cancel()
		doc, err := cc.SetBackendState(ctx, svc, be, action, s.who(c))
		var inv *InvalidConfig
		switch {
		case unavailable(c, err):
		case errors.Is(err, ErrStale):
			abort(c, http.StatusConflict, "the configuration changed meanwhile: try again")
		case errors.Is(err, ErrNotReplicated):
			abort(c, http.StatusConflict, err.Error())
		case errors.As(err, &inv):
			c.AbortWithStatusJSON(http.StatusUnprocessableEntity, inv)
		case err != nil:
			abort(c, http.StatusInternalServerError, err.Error())
		default:
			s.audit(c, fmt.Sprintf("backend.%s %s %s", action, svc, be), doc.Version)
			c.Header("ETag", etag(doc.Version))
			c.JSON(http.StatusOK, doc)
		}
	})
	admin.POST("/config/rollback/:n", func(c *gin.Context) {
		n, ok := versionParam(c)
		if !ok {
			return
		}
		ifVersion, ok := ifMatch(c, false)
		if !ok {
			return
		}
		// With its secrets: a rollback restores the passwords version n had.
		old, err := cc.Version(n, true)
		if err != nil {
			abort(c, http.StatusNotFound, fmt.Sprintf("version %d is not in the history", n))
			return
		}
		// The backends' admin states are operational state, not history:
		// the current ones stay unless asked for version n's.
		restore := c.Query("backendStates")
		if restore != "" && restore != "restore" && restore != "keep" {
			abort(c, http.StatusBadRequest, fmt.Sprintf("backendStates=%q: want keep (the default) or restore", restore))
			return
		}
		spec := old.Spec
		if restore != "restore" {
			if spec, ok = s.operationalState(c, old.Spec, true); !ok {
				return
			}
		}
		// A dry run says what the rollback would change, the secrets
		// included, which a dry run of the spec as GET shows it (every
		// secret a placeholder for the current one) cannot.
		if dry, _ := strconv.ParseBool(c.Query("dryRun")); dry {
			s.validate(c, spec)
			return
		}
		if ifVersion == 0 {
			cur, err := cc.Current(false)
			if err != nil {
				abort(c, http.StatusServiceUnavailable, err.Error())
				return
			}
			ifVersion = cur.Version
		}
		s.put(c, fmt.Sprintf("config.rollback %d", n), spec, ifVersion)
	})
}

// operationalState gives spec the current backendStates — the backends an
// administrator drained or disabled, which are operational state rather
// than configuration history — when it has none (a file applied, an
// edited copy without the key) or, with replace, whatever it has (a
// rollback). A spec that names backendStates, even as [], sets them. It
// answers 400 itself for a spec that is not a JSON object.
func (s *Server) operationalState(c *gin.Context, spec json.RawMessage, replace bool) (json.RawMessage, bool) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(spec, &m); err != nil || m == nil {
		return spec, true // the validation says what is wrong with it
	}
	if _, named := m["backendStates"]; named && !replace {
		return spec, true
	}
	cur, err := s.opts.Config.Current(false)
	if err != nil {
		return spec, true // no version yet: nothing to keep
	}
	var curSpec map[string]json.RawMessage
	if json.Unmarshal(cur.Spec, &curSpec) != nil {
		return spec, true
	}
	if states, ok := curSpec["backendStates"]; ok {
		m["backendStates"] = states
	} else {
		delete(m, "backendStates")
	}
	out, err := json.Marshal(m)
	if err != nil {
		abort(c, http.StatusInternalServerError, err.Error())
		return nil, false
	}
	return out, true
}

// validate answers a dry run of spec.
func (s *Server) validate(c *gin.Context, spec json.RawMessage) {
	eff, err := s.opts.Config.Validate(spec)
	var inv *InvalidConfig
	switch {
	case errors.As(err, &inv):
		c.JSON(http.StatusOK, ValidateResult{Errors: inv.Errors})
	case err != nil:
		abort(c, http.StatusInternalServerError, err.Error())
	default:
		c.JSON(http.StatusOK, ValidateResult{Valid: true, Errors: []FieldError{}, Effect: &eff})
	}
}

// put makes spec the next version and answers.
func (s *Server) put(c *gin.Context, what string, spec json.RawMessage, ifVersion uint64) {
	s.audit(c, what, 0)
	ctx, cancel := context.WithTimeout(c.Request.Context(), writeTimeout)
	defer cancel()
	doc, err := s.opts.Config.Put(ctx, spec, ifVersion, s.who(c))
	var inv *InvalidConfig
	switch {
	case unavailable(c, err):
	case errors.Is(err, ErrStale):
		cur, _ := s.opts.Config.Current(false)
		c.Header("ETag", etag(cur.Version))
		abort(c, http.StatusConflict, fmt.Sprintf("version %d is not the current version (%d): get the configuration again and reapply the change", ifVersion, cur.Version))
	case errors.Is(err, ErrNotReplicated):
		abort(c, http.StatusConflict, err.Error())
	case errors.As(err, &inv):
		c.AbortWithStatusJSON(http.StatusUnprocessableEntity, inv)
	case err != nil:
		abort(c, http.StatusInternalServerError, err.Error())
	default:
		s.audit(c, what, doc.Version)
		c.Header("ETag", etag(doc.Version))
		c.JSON(http.StatusOK, doc)
	}
}

// secretsParam reads ?secrets=true, which asks for a configuration with
// its secrets: only an admin token may (or anyone when the API has no
// tokens, where every request is an admin's).
func (s *Server) secretsParam(c *gin.Context) (bool, bool) {
	secrets, ok := boolParam(c, "secrets")
	if !ok || !secrets {
		return false, ok
	}
	if secrets && len(s.keys.Load().tokens) > 0 && c.GetString("role") != RoleAdmin {
		abort(c, http.StatusForbidden, fmt.Sprintf("secrets=true needs an admin token; a viewer token sees every secret as %q", SecretPlaceholder))
		return false, false
	}
	return secrets, true
}

func etag(v uint64) string { return `"` + strconv.FormatUint(v, 10) + `"` }

// ifMatch reads If-Match: "N". Without it, a required one is 428.
func ifMatch(c *gin.Context, required bool) (uint64, bool) {
	h := strings.TrimSpace(c.GetHeader("If-Match"))
	if h == "" {
		if required {
			abort(c, http.StatusPreconditionRequired, `If-Match: "N" is required: the version the change was made from (the ETag of GET /api/v1/config)`)
			return 0, false
		}
		return 0, true
	}
	h = strings.TrimPrefix(h, "W/")
	n, err := strconv.ParseUint(strings.Trim(h, `"`), 10, 64)
	if err != nil {
		abort(c, http.StatusBadRequest, fmt.Sprintf(`If-Match %q is not a version like "3"`, h))
		return 0, false
	}
	return n, true
}

func versionParam(c *gin.Context) (uint64, bool) {
	n, err := strconv.ParseUint(c.Param("n"), 10, 64)
	if err != nil || n == 0 {
		abort(c, http.StatusBadRequest, fmt.Sprintf("%q is not a version number", c.Param("n")))
		return 0, false
	}
	return n, true
}

// specBody reads a body {"spec": {...}} (the shape of GET) or the spec
// alone.
func specBody(c *gin.Context) (json.RawMessage, bool) {
	b, err := io.ReadAll(c.Request.Body)
	if err != nil {
		abort(c, http.StatusRequestEntityTooLarge, fmt.Sprintf("request body larger than %d bytes", MaxConfigBytes))
		return nil, false
	}
	// Anything else than an object is refused by the validation, as a
	// spec error.
	var top map[string]json.RawMessage
	if json.Unmarshal(b, &top) == nil {
		if spec, ok := top["spec"]; ok {
			return spec, true
		}
	}
	return b, true
}
