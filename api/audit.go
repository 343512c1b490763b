package api

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/gin-gonic/gin"
)

// AuditEntry is one write attempt through the API — accepted or refused —
// or an admin's read of the secrets (GET /api/v1/audit).
type AuditEntry struct {
	Time time.Time `json:"time"`
	// Who is the token's name (never the token); "anonymous" when the
	// API has no tokens, "unauthenticated" when a token was required and
	// none valid was given.
	Who string `json:"who"`
	// From is the client's address.
	From string `json:"from"`
	// What is the change: "config.put", "config.rollback 3", "member.drain lb2",
	// the method and path when the request did not get as far as naming
	// one; or "config.secrets.read [N]", an admin's read of the secrets,
	// which changes nothing but is worth knowing about.
	What string `json:"what"`
	// Version is the cluster configuration version the change produced
	// (0 when it produced none).
	Version uint64 `json:"version,omitempty"`
	// Result is the HTTP status answered; Error the message of a refusal.
	Result int    `json:"result"`
	Error  string `json:"error,omitempty"`
}

// Keys a handler sets on the request for its audit entry (audit).
const (
	auditWhatKey    = "audit.what"
	auditVersionKey = "audit.version"
	auditErrorKey   = "audit.error"
)

// maxAudit is how many entries GET /api/v1/audit keeps in memory;
// DefaultAuditFileBytes the size at which the file is rotated (one older
// file, FILE.1, is kept).
const (
	maxAudit              = 1000
	DefaultAuditFileBytes = 4 << 20
)

// auditLog keeps the last write attempts made through this host's API
// and appends each to its file (JSON lines) when it has one: written and
// fsynced before the answer leaves, rotated at maxBytes. A line torn by a
// crash is skipped when read and ended before the next is appended, so it
// costs only itself.
type auditLog struct {
	mu       sync.Mutex
	entries  []AuditEntry
	file     string
	maxBytes int64
	log      *slog.Logger
}

// load reads the last entries of the file and its rotated predecessor,
// and makes sure the file ends with a newline.
func (a *auditLog) load() {
	if a.file == "" {
		return
	}
	if a.maxBytes <= 0 {
		a.maxBytes = DefaultAuditFileBytes
	}
	for _, name := range []string{a.file + ".1", a.file} {
		b, err := os.ReadFile(name)
		if err != nil {
			if !errors.Is(err, os.ErrNotExist) {
				a.log.Warn("reading the audit log", "file", name, "err", err)
			}
			continue
		}
		sc := bufio.NewScanner(bytes.NewReader(b))
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			var e AuditEntry
			if json.Unmarshal(sc.Bytes(), &e) == nil {
				a.append(e)
			}
		}
		if name == a.file && len(b) > 0 && b[len(b)-1] != '\n' {
			// Torn by a crash: end it, so that the next entry is a
			// line of its own.
			if err := a.write([]byte("\n")); err != nil {
				a.log.Warn("ending the torn last line of the audit log", "file", name, "err", err)
			}
		}
	}
}

func (a *auditLog) append(e AuditEntry) {
	a.entries = append(a.entries, e)
	if n := len(a.entries) - maxAudit; n > 0 {
		a.entries = append([]AuditEntry(nil), a.entries[n:]...)
	}
}

// add records e; the error is the file's.
func (a *auditLog) add(e AuditEntry) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.append(e)
	if a.file == "" {
		return nil
	}
	b, _ := json.Marshal(e)
	if err := a.rotate(int64(len(b)) + 1); err != nil {
		a.log.Warn("rotating the audit log", "file", a.file, "err", err)
	}
	return a.write(append(b, '\n'))
}

// write appends b to the file and syncs it.
func (a *auditLog) write(b []byte) error {
	f, err := os.OpenFile(a.file, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write(b)
	if serr := f.Sync(); err == nil {
		err = serr
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// rotate moves the file to FILE.1 when n more bytes would take it past
// maxBytes.
func (a *auditLog) rotate(n int64) error {
	st, err := os.Stat(a.file)
	if err != nil || st.Size()+n <= a.maxBytes {
		return nil
	}
	return os.Rename(a.file, a.file+".1")
}

func (a *auditLog) list() []AuditEntry {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]AuditEntry{}, a.entries...)
}

// audit names the change a request makes, and the version it produced,
// for its entry. A write's entry is recorded when it is answered
// (auditWrites); a read (of the secrets) is recorded at once.
func (s *Server) audit(c *gin.Context, what string, version uint64) {
	c.Set(auditWhatKey, what)
	c.Set(auditVersionKey, version)
	if !isWrite(c.Request) {
		s.record(c)
	}
}

// isWrite reports whether r may change something: every request but
// reads and dry runs.
func isWrite(r *http.Request) bool {
	switch {
	case r.Method == http.MethodGet || r.Method == http.MethodHead || r.Method == http.MethodOptions:
		return false
	case strings.HasSuffix(r.URL.Path, "/config/validate") || r.URL.Query().Get("dryRun") == "true":
		return false
	}
	return true
}

// auditWrites records every write attempt, accepted or refused (421,
// 401, 403, 409, 422, 503 ...), once it is answered.
func (s *Server) auditWrites(c *gin.Context) {
	if !isWrite(c.Request) {
		c.Next()
		return
	}
	c.Next()
	s.record(c)
}

// record appends the request's audit entry.
func (s *Server) record(c *gin.Context) {
	e := AuditEntry{Time: time.Now().UTC(), Who: s.who(c), From: c.ClientIP(), What: c.GetString(auditWhatKey),
		Version: c.GetUint64(auditVersionKey), Result: c.Writer.Status(), Error: c.GetString(auditErrorKey)}
	if e.What == "" {
		e.What = c.Request.Method + " " + c.Request.URL.Path
	}
	if err := s.auditLog.add(e); err != nil {
		s.opts.Log.Error("writing the audit log", "file", s.auditLog.file, "err", err)
	}
	if e.Result < 300 {
		s.opts.Log.Info("change through the API", "who", e.Who, "from", e.From, "what", e.What, "configVersion", e.Version)
	} else {
		s.opts.Log.Info("change through the API refused", "who", e.Who, "from", e.From, "what", e.What, "result", e.Result, "err", e.Error)
	}
	if s.opts.OnAudit != nil {
		s.opts.OnAudit(e)
	}
}

// who is the name of the request's token.
func (s *Server) who(c *gin.Context) string {
	if v, ok := c.Get("token"); ok {
		return v.(string)
	}
	if len(s.keys.Load().tokens) > 0 {
		return "unauthenticated"
	}
	return "anonymous"
}
