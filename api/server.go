package api

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	_ "embed"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"net/http/pprof"
	"net/netip"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/gin-gonic/gin"
)

// MaxBodyBytes bounds every request body but a cluster configuration's.
const MaxBodyBytes = 64 << 10

// MaxConfigBytes bounds the body of PUT /api/v1/config and
// POST /api/v1/config/validate.
const MaxConfigBytes = 1 << 20

// Roles of bearer tokens.
const (
	RoleAdmin  = "admin"
	RoleViewer = "viewer"
)

//go:embed openapi.json
var openAPI []byte

// Options configures a Server.
type Options struct {
	Listen string
	// Hosts are the names, besides IP addresses and localhost, that
	// requests may give in their Host header (api.hosts): a request for
	// any other name is refused, which closes DNS rebinding (a page whose
	// name resolves to this API) and requests meant for another server.
	// The names in the TLS certificate are added to them.
	Hosts []string
	// CertFile and KeyFile enable TLS when both are set.
	CertFile, KeyFile string
	// Tokens maps a role to its bearer tokens, named after the role and
	// their place ("admin#1"). With no tokens at all (nor NamedTokens),
	// every request is allowed (keep Listen on loopback then).
	Tokens map[string][]string
	// NamedTokens are tokens with names, which the audit log records.
	NamedTokens []Token
	State       State
	// Config is the cluster configuration (GET/PUT /api/v1/config and
	// the rest); nil serves none of it.
	Config ClusterConfig
	// Members is the configured cluster (POST and DELETE
	// /api/v1/members, and the contact GET /api/v1/config reports); nil
	// without a consensus log.
	Members MemberSet
	// OnAudit, if set, is told about each change made through the API.
	OnAudit func(AuditEntry)
	// AuditFile, if set, keeps the audit log across restarts (JSON lines,
	// appended; the last 1000 entries are read at start).
	AuditFile string
	// AuditFileBytes is the size at which the audit file is rotated
	// (FILE.1 keeps the previous one); 0 means DefaultAuditFileBytes.
	AuditFileBytes int64
	Bus            *Bus
	// Metrics is served at /metrics; nil serves no metrics.
	Metrics *Metrics
	// Dashboard is served at / (the web package's files); nil serves none.
	Dashboard fs.FS
	// BGP reports the BGP speaker for GET /api/v1/bgp; nil: not enabled.
	BGP func() BGPStatus
	// ServiceEvents reads a Kubernetes Service's Events from the API
	// server for GET /api/v1/services/{namespace}/{name}/events; nil
	// (no Kubernetes) lists none.
	ServiceEvents func(ctx context.Context, namespace, name string) ([]ServiceEvent, error)
	Log           *slog.Logger
}

// Server is the REST API, the event stream, /metrics and the dashboard.
type Server struct {
	opts     Options
	engine   *gin.Engine
	auditLog auditLog
	// keys are the tokens, names and certificate, replaced whole by
	// Reload.
	keys atomic.Pointer[keys]
}

// keys are what `systemctl reload edgelb` changes without a restart.
type keys struct {
	tokens []token
	// hosts are the names requests may give in Host (lower case).
	hosts map[string]bool
	// cert is the TLS certificate, nil without TLS.
	cert *tls.Certificate
}

// newKeys builds the keys of o: its tokens, its names (api.hosts and the
// certificate's) and, with TLS, its certificate, whose error it returns.
func newKeys(o Options) (*keys, error) {
	k := &keys{hosts: map[string]bool{"localhost": true}}
	for role, toks := range o.Tokens {
		for i, t := range toks {
			k.tokens = append(k.tokens, token{sha256.Sum256([]byte(t)), role, fmt.Sprintf("%s#%d", role, i+1)})
		}
	}
	for _, t := range o.NamedTokens {
		k.tokens = append(k.tokens, token{sha256.Sum256([]byte(t.Secret)), t.Role, t.Name})
	}
	for _, h := range append(o.Hosts, certNames(o.CertFile)...) {
		k.hosts[strings.ToLower(strings.TrimSuffix(h, "."))] = true
	}
	if o.CertFile != "" && o.KeyFile != "" {
		cert, err := tls.LoadX509KeyPair(o.CertFile, o.KeyFile)
		if err != nil {
			return k, fmt.Errorf("API TLS certificate %s and key %s: %w", o.CertFile, o.KeyFile, err)
		}
		k.cert = &cert
	}
	return k, nil
}

// Reload takes o's tokens, names (Hosts) and TLS certificate and key
// files, as `systemctl reload edgelb` asks: requests from now on are
// checked against them and new TLS connections get the new certificate;
// connections open keep theirs. A certificate that cannot be loaded is
// refused and everything stays as it was.
func (s *Server) Reload(o Options) error {
	k, err := newKeys(o)
	if err != nil {
		return err
	}
	if (k.cert != nil) != (s.keys.Load().cert != nil) {
		return errors.New("api.tls cannot be switched on or off by a reload: restart edgelb")
	}
	s.keys.Store(k)
	s.opts.Log.Info("API tokens, names and certificate reloaded", "tokens", len(k.tokens), "tls", k.cert != nil)
	return nil
}

// Token is a named bearer token of a role.
type Token struct {
	Name, Role, Secret string
}

type token struct {
	sum  [sha256.Size]byte
	role string
	name string
}

// New builds the server's routes; it starts nothing.
func New(opts Options) *Server {
	gin.SetMode(gin.ReleaseMode)
	s := &Server{opts: opts}
	s.auditLog.file, s.auditLog.maxBytes, s.auditLog.log = opts.AuditFile, opts.AuditFileBytes, opts.Log
	s.auditLog.load()
	// A certificate that cannot be loaded is Serve's error.
	k, _ := newKeys(opts)
	s.keys.Store(k)
	e := gin.New()
	// The audit log's "from" is the peer, not a header anyone can send.
	_ = e.SetTrustedProxies(nil)
	e.HandleMethodNotAllowed = true
	e.Use(gin.CustomRecovery(func(c *gin.Context, err any) {
		opts.Log.Error("panic in API handler", "path", c.Request.URL.Path, "err", err)
		abort(c, http.StatusInternalServerError, "internal error")
	}), s.auditWrites, s.checkHost, s.limitBody)
	e.NoRoute(func(c *gin.Context) { abort(c, http.StatusNotFound, "no such path: "+c.Request.URL.Path) })
	e.NoMethod(func(c *gin.Context) {
		abort(c, http.StatusMethodNotAllowed, c.Request.Method+" is not allowed on "+c.Request.URL.Path)
	})

	e.GET("/healthz", func(c *gin.Context) { c.JSON(http.StatusOK, gin.H{"status": "ok"}) })
	authed := e.Group("/", s.auth(RoleViewer))
	authed.GET("/readyz", s.readyz)
	if opts.Metrics != nil {
		authed.GET("/metrics", gin.WrapH(opts.Metrics))
	}
	// The Go runtime's profiles, for `go tool pprof` (heap, allocs,
	// goroutine, profile, trace, ...): for an admin only, since they
	// name the code and its arguments and a CPU profile or trace costs
	// the host while it runs.
	e.GET("/debug/pprof/*name", s.auth(RoleAdmin), profiles)
	v1 := authed.Group("/api/v1")
	v1.GET("/status", func(c *gin.Context) { c.JSON(http.StatusOK, opts.State.Status()) })
	v1.GET("/members", s.members)
	v1.GET("/vips", func(c *gin.Context) { c.JSON(http.StatusOK, nonNil(opts.State.VIPs())) })
	v1.GET("/services", func(c *gin.Context) { c.JSON(http.StatusOK, nonNil(opts.State.Services())) })
	v1.GET("/services/:namespace/:name", s.service)
	v1.GET("/services/:namespace/:name/events", s.serviceEvents)
	v1.GET("/events", s.events)
	v1.GET("/bgp", s.bgp)
	v1.GET("/openapi.json", func(c *gin.Context) { c.Data(http.StatusOK, "application/json", openAPI) })
	admin := v1.Group("/", s.auth(RoleAdmin), sameOriginJSON)
	admin.POST("/members/:name/drain", s.drain(true))
	admin.POST("/members/:name/undrain", s.drain(false))
	s.memberRoutes(admin)
	s.configRoutes(v1, admin)

	if opts.Dashboard != nil {
		// The dashboard's files are static and hold no state: every
		// piece of data they show comes from /api/v1 with the token the
		// page asks for, so they are served without one.
		files := http.FileServer(http.FS(opts.Dashboard))
		e.GET("/", gin.WrapH(files))
		e.GET("/ui/*file", gin.WrapH(http.StripPrefix("/ui", files)))
	}
	s.engine = e
	return s
}

// profiles serves net/http/pprof's handlers under /debug/pprof/.
func profiles(c *gin.Context) {
	w, r := c.Writer, c.Request
	switch strings.TrimPrefix(c.Param("name"), "/") {
	case "cmdline":
		pprof.Cmdline(w, r)
	case "profile":
		pprof.Profile(w, r)
	case "symbol":
		pprof.Symbol(w, r)
	case "trace":
		pprof.Trace(w, r)
	default: // the index, or a named profile (heap, goroutine, ...)
		pprof.Index(w, r)
	}
}

// Handler returns the HTTP handler, for tests.
func (s *Server) Handler() http.Handler { return s.engine }

// Run serves until ctx is done, then shuts down gracefully.
func (s *Server) Run(ctx context.Context) error {
	ln, err := net.Listen("tcp", s.opts.Listen)
	if err != nil {
		return fmt.Errorf("API listening on %s: %w", s.opts.Listen, err)
	}
	return s.Serve(ctx, ln)
}

// Serve serves on ln until ctx is done.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{
		Handler:           s.engine,
		ReadHeaderTimeout: 10 * time.Second,
		BaseContext:       func(net.Listener) context.Context { return ctx },
	}
	errc := make(chan error, 1)
	useTLS := s.opts.CertFile != "" && s.opts.KeyFile != ""
	if useTLS {
		if s.keys.Load().cert == nil {
			_, err := newKeys(s.opts)
			return fmt.Errorf("API server: %w", err)
		}
		// The certificate of the moment: Reload replaces it.
		srv.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			return s.keys.Load().cert, nil
		}}
	}
	go func() {
		s.opts.Log.Info("API listening", "addr", ln.Addr().String(), "tls", useTLS, "auth", len(s.keys.Load().tokens) > 0)
		if useTLS {
			errc <- srv.ServeTLS(ln, "", "")
		} else {
			errc <- srv.Serve(ln)
		}
	}()
	select {
	case err := <-errc:
		return fmt.Errorf("API server: %w", err)
	case <-ctx.Done():
	}
	shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdown); err != nil {
		_ = srv.Close()
	}
	return nil
}

func abort(c *gin.Context, code int, msg string) {
	c.Set(auditErrorKey, msg)
	c.AbortWithStatusJSON(code, Error{Error: msg})
}

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

// limitBody refuses bodies over MaxBodyBytes.
func (s *Server) limitBody(c *gin.Context) {
	limit := int64(MaxBodyBytes)
	if strings.HasPrefix(c.Request.URL.Path, "/api/v1/config") {
		limit = MaxConfigBytes
	}
	if c.Request.ContentLength > limit {
		abort(c, http.StatusRequestEntityTooLarge, fmt.Sprintf("request body larger than %d bytes", limit))
		return
	}
	c.Request.Body = http.MaxBytesReader(c.Writer, c.Request.Body, limit)
	c.Next()
}

// tokenOf is the role and name of the bearer token given, "" if none
// matches. Tokens are compared by SHA-256 digest in constant time.
func (s *Server) tokenOf(given string) (role, name string) {
	sum := sha256.Sum256([]byte(given))
	for _, t := range s.keys.Load().tokens {
		if subtle.ConstantTimeCompare(sum[:], t.sum[:]) == 1 {
			role, name = t.role, t.name
		}
	}
	return role, name
}

// checkHost refuses a request whose Host is a name this API does not
// serve (Options.Hosts): what a page whose DNS name was made to resolve
// to this API (DNS rebinding) sends. An IP address cannot be rebound, so
// requests by address are always served; so is a request with a valid
// bearer token, which such a page cannot know (a Prometheus scrape or
// `edgelb status` by name), and /healthz, which tells nothing.
func (s *Server) checkHost(c *gin.Context) {
	if c.Request.URL.Path == "/healthz" {
		c.Next()
		return
	}
	if given, ok := strings.CutPrefix(c.GetHeader("Authorization"), "Bearer "); ok && given != "" {
		if role, _ := s.tokenOf(given); role != "" {
			c.Next()
			return
		}
	}
	host := c.Request.Host
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.ToLower(strings.TrimSuffix(strings.Trim(host, "[]"), "."))
	if _, err := netip.ParseAddr(host); err == nil || s.keys.Load().hosts[host] {
		c.Next()
		return
	}
	abort(c, http.StatusMisdirectedRequest, fmt.Sprintf("Host %q is not a name this API serves: add it to api.hosts (requests by IP address, to localhost or with a valid token are always served)", c.Request.Host))
}

// certNames are the DNS names of the certificate in file, if any.
func certNames(file string) []string {
	if file == "" {
		return nil
	}
	data, err := os.ReadFile(file)
	if err != nil {
		return nil // Run reports it
	}
	var names []string
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			return names
		}
		if cert, err := x509.ParseCertificate(b.Bytes); err == nil && b.Type == "CERTIFICATE" {
			names = append(names, cert.DNSNames...)
		}
	}
}

// sameOriginJSON guards the requests that change state against a web page
// of another site that a user of the dashboard visits: a browser sends a
// "simple" cross-site POST (a form, a text/plain fetch) without asking
// first, with the user's network position — the loopback API without
// tokens — and a token in a cookie-less header cannot be sent that way, but
// an API without tokens needs none. Such a request is refused when the
// browser says it comes from another origin (Origin, Sec-Fetch-Site), and
// every request that changes state must say Content-Type: application/json,
// which no simple cross-site request can.
func sameOriginJSON(c *gin.Context) {
	if site := c.GetHeader("Sec-Fetch-Site"); site == "cross-site" || site == "same-site" {
		abort(c, http.StatusForbidden, "cross-origin request refused (Sec-Fetch-Site: "+site+")")
		return
	}
	if origin := c.GetHeader("Origin"); origin != "" {
		u, err := url.Parse(origin)
		if err != nil || u.Host == "" || !strings.EqualFold(u.Host, c.Request.Host) {
			abort(c, http.StatusForbidden, fmt.Sprintf("cross-origin request refused: Origin %q is not this API (%s)", origin, c.Request.Host))
			return
		}
	}
	if mt, _, err := mime.ParseMediaType(c.GetHeader("Content-Type")); err != nil || mt != "application/json" {
		abort(c, http.StatusUnsupportedMediaType, "a request that changes state needs Content-Type: application/json")
		return
	}
	c.Next()
}

// auth requires a bearer token of at least the given role once tokens are
// configured. Tokens are compared by SHA-256 digest in constant time, so
// neither their content nor their length leaks through timing.
func (s *Server) auth(need string) gin.HandlerFunc {
	return func(c *gin.Context) {
		if len(s.keys.Load().tokens) == 0 {
			c.Next()
			return
		}
		h := c.GetHeader("Authorization")
		given, ok := strings.CutPrefix(h, "Bearer ")
		if !ok || given == "" {
			c.Header("WWW-Authenticate", `Bearer realm="edgelb"`)
			abort(c, http.StatusUnauthorized, "a bearer token is required (Authorization: Bearer <token>)")
			return
		}
		role, name := s.tokenOf(given)
		switch {
		case role == "":
			c.Header("WWW-Authenticate", `Bearer realm="edgelb", error="invalid_token"`)
			abort(c, http.StatusUnauthorized, "the token is not valid")
		case need == RoleAdmin && role != RoleAdmin:
			abort(c, http.StatusForbidden, "this needs an admin token; a viewer token can only read")
		default:
			c.Set("role", role)
			c.Set("token", name)
			c.Next()
		}
	}
}

// Readiness is the body of GET /readyz.
type Readiness struct {
	Status string `json:"status"` // "ready" or "not ready"
	Reason string `json:"reason,omitempty"`
	// Kubernetes is the state of the connection to the API server, as in
	// GET /api/v1/status. A problem there does not make the host not
	// ready: once programmed, the dataplane keeps serving what it has
	// while the API server is lost or refuses edgelb's token, and a probe
	// that took the host out of service for it would stop traffic that
	// still flows. It is shown here so that the same probe sees it.
	Kubernetes *KubernetesStatus `json:"kubernetes,omitempty"`
}

func (s *Server) readyz(c *gin.Context) {
	r := Readiness{Status: "ready", Kubernetes: s.opts.State.Status().Kubernetes}
	code := http.StatusOK
	if ok, why := s.opts.State.Ready(); !ok {
		r.Status, r.Reason, code = "not ready", why, http.StatusServiceUnavailable
	}
	c.JSON(code, r)
}

func (s *Server) service(c *gin.Context) {
	ns, name := c.Param("namespace"), c.Param("name")
	if l, ok := s.opts.State.(ServiceLookup); ok {
		if svc, ok := l.Service(ns, name); ok {
			c.JSON(http.StatusOK, svc)
		} else {
			abort(c, http.StatusNotFound, fmt.Sprintf("no service %s/%s", ns, name))
		}
		return
	}
	for _, svc := range s.opts.State.Services() {
		if svc.Namespace == ns && svc.Name == name {
			c.JSON(http.StatusOK, svc)
			return
		}
	}
	abort(c, http.StatusNotFound, fmt.Sprintf("no service %s/%s", ns, name))
}

// serviceEvents lists the Kubernetes Events of a Service edgelb is
// responsible for (any in GET /api/v1/services, pending ones included):
// none for a static service or without Kubernetes; 502 when the API
// server cannot be read.
func (s *Server) serviceEvents(c *gin.Context) {
	ns, name := c.Param("namespace"), c.Param("name")
	if !slices.ContainsFunc(s.opts.State.Services(), func(svc Service) bool { return svc.Namespace == ns && svc.Name == name }) {
		abort(c, http.StatusNotFound, fmt.Sprintf("no service %s/%s", ns, name))
		return
	}
	evs := []ServiceEvent{}
	if ns != StaticNamespace && s.opts.ServiceEvents != nil {
		got, err := s.opts.ServiceEvents(c.Request.Context(), ns, name)
		if err != nil {
			abort(c, http.StatusBadGateway, err.Error())
			return
		}
		evs = append(evs, got...)
	}
	c.JSON(http.StatusOK, evs)
}

func (s *Server) drain(on bool) gin.HandlerFunc {
	verb := map[bool]string{true: "drain", false: "undrain"}[on]
	return func(c *gin.Context) {
		// The request takes no body; refuse one that is not empty JSON.
		if body, err := io.ReadAll(c.Request.Body); err != nil {
			abort(c, http.StatusRequestEntityTooLarge, fmt.Sprintf("request body larger than %d bytes", MaxBodyBytes))
			return
		} else if b := strings.TrimSpace(string(body)); b != "" && b != "{}" {
			var v map[string]any
			if json.Unmarshal(body, &v) != nil || len(v) > 0 {
				abort(c, http.StatusBadRequest, verb+" takes no request body")
				return
			}
		}
		name := c.Param("name")
		s.audit(c, "member."+verb+" "+name, 0)
		var err error
		if on {
			err = s.opts.State.Drain(c.Request.Context(), name)
		} else {
			err = s.opts.State.Undrain(c.Request.Context(), name)
		}
		switch {
		case errors.Is(err, ErrNotFound):
			abort(c, http.StatusNotFound, fmt.Sprintf("no member %q", name))
		case errors.Is(err, ErrNotReplicated):
			abort(c, http.StatusConflict, err.Error())
		case err != nil:
			abort(c, http.StatusBadGateway, err.Error())
		default:
			c.JSON(http.StatusAccepted, gin.H{"member": name, "draining": on})
		}
	}
}

// events streams Server-Sent Events: the remembered backlog after
// Last-Event-ID, then live events, with a comment every 15 s to keep
// proxies from closing the connection.
func (s *Server) events(c *gin.Context) {
	var last uint64
	if v := c.GetHeader("Last-Event-ID"); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			abort(c, http.StatusBadRequest, "Last-Event-ID must be a number")
			return
		}
		last = n
	}
	backlog, events, cancel := s.opts.Bus.Subscribe(last)
	defer cancel()
	w := c.Writer
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	send := func(ev Event) bool {
		b, _ := json.Marshal(ev)
		_, err := fmt.Fprintf(w, "id: %d\nevent: %s\ndata: %s\n\n", ev.ID, ev.Type, b)
		return err == nil
	}
	for _, ev := range backlog {
		if !send(ev) {
			return
		}
	}
	fmt.Fprint(w, ": connected\n\n")
	w.Flush()
	keepalive := time.NewTicker(15 * time.Second)
	defer keepalive.Stop()
	for {
		select {
		case <-c.Request.Context().Done():
			return
		case ev := <-events:
			if !send(ev) {
				return
			}
			w.Flush()
		case <-keepalive.C:
			if _, err := fmt.Fprint(w, ": keepalive\n\n"); err != nil {
				return
			}
			w.Flush()
		}
	}
}
