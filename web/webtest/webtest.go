// Package webtest drives the dashboard in a headless Chromium (Debian's
// /usr/bin/chromium) for tests, and provides a fake api.State whose
// traffic counters grow so that the charts have something to draw.
package webtest

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"github.com/edgelb/edgelb/test/prereq"
)

// Chromium is the browser the tests drive; EDGELB_CHROMIUM overrides it.
const Chromium = "/usr/bin/chromium"

// Require skips the test with reason when ok is false, or fails it when
// the environment has CI=true: the CI machine must provide every
// prerequisite, so a missing one there is a failure, not a skip.
func Require(t testing.TB, ok bool, format string, args ...any) {
	t.Helper()
	prereq.Require(t, ok, format, args...)
}

// Page is one browser tab.
type Page struct {
	t   testing.TB
	Ctx context.Context

	mu     sync.Mutex
	errors []string // uncaught exceptions and console errors of the page
}

// NewPage starts a headless Chromium with a fresh profile and no network
// of its own (no background networking, updates, sync or QUIC) and opens
// a tab. Everything is stopped when the test ends.
func NewPage(t testing.TB) *Page {
	t.Helper()
	path := Chromium
	if p := os.Getenv("EDGELB_CHROMIUM"); p != "" {
		path = p
	}
	_, err := os.Stat(path)
	Require(t, err == nil, "Chromium is not installed at %s (apt-get install chromium; hack/test-deps.sh does it)", path)

	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(path),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("disable-extensions", true),
		chromedp.Flag("disable-default-apps", true),
		chromedp.Flag("disable-breakpad", true),
		chromedp.Flag("metrics-recording-only", true),
		chromedp.Flag("password-store", "basic"),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1440, 1000),
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	p := &Page{t: t}
	ctx, cancel := chromedp.NewContext(actx, chromedp.WithListener(p.listen))
	p.Ctx = ctx
	t.Cleanup(func() {
		cancel()
		cancelAlloc()
		for _, e := range p.Errors() {
			t.Logf("page error: %s", e)
		}
	})
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("starting %s: %v", path, err)
	}
	return p
}

func (p *Page) listen(ev any) {
	var msg string
	switch ev := ev.(type) {
	case *runtime.EventExceptionThrown:
		msg = ev.ExceptionDetails.Text
		if ex := ev.ExceptionDetails.Exception; ex != nil && ex.Description != "" {
			msg = ex.Description
		}
	case *runtime.EventConsoleAPICalled:
		if ev.Type != runtime.ConsoleAPICalledTypeError {
			return
		}
		var parts []string
		for _, a := range ev.Args {
			if a.Description != "" {
				parts = append(parts, a.Description)
			} else {
				parts = append(parts, string(a.Value))
			}
		}
		msg = "console.error: " + strings.Join(parts, " ")
	default:
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.errors = append(p.errors, msg)
}

// Errors returns the page's uncaught exceptions and console errors so far.
func (p *Page) Errors() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.errors...)
}

// Do runs steps and fails the test with what the page shows when one fails.
func (p *Page) Do(what string, steps ...chromedp.Action[chromedp.Void]) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.Ctx, time.Minute)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		p.t.Fatalf("%s: %v\n--- the page shows:\n%s\n--- page errors: %q", what, err, p.Text(), p.Errors())
	}
}

// Text returns the visible text of the page, for failure messages.
func (p *Page) Text() string {
	ctx, cancel := context.WithTimeout(p.Ctx, 5*time.Second)
	defer cancel()
	s, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.body.innerText`))
	if err != nil {
		return "(cannot read the page: " + err.Error() + ")"
	}
	return s
}

// Eval evaluates a JavaScript expression that returns a string.
func (p *Page) Eval(expr string) string {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.Ctx, 10*time.Second)
	defer cancel()
	s, err := chromedp.Run(ctx, chromedp.Evaluate[string](expr))
	if err != nil {
		p.t.Fatalf("evaluating %s: %v", expr, err)
	}
	return s
}

// EvalAsync evaluates a JavaScript expression whose value is a promise of
// a string.
func (p *Page) EvalAsync(expr string) string {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.Ctx, 10*time.Second)
	defer cancel()
	s, err := chromedp.Run(ctx, chromedp.Evaluate[string](expr, chromedp.EvalAwaitPromise))
	if err != nil {
		p.t.Fatalf("evaluating %s: %v", expr, err)
	}
	return s
}

// Screenshot writes a PNG of the whole page to test/artifacts/name.png and
// returns its path.
func (p *Page) Screenshot(name string) string {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.Ctx, 30*time.Second)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		p.t.Fatalf("screenshot: %v", err)
	}
	path := filepath.Join(ArtifactDir(p.t), name+".png")
	if err := os.WriteFile(path, png, 0o644); err != nil {
		p.t.Fatalf("writing the screenshot: %v", err)
	}
	p.t.Logf("screenshot: %s", path)
	return path
}

// ArtifactDir returns the repository's test/artifacts directory (ignored by
// git), creating it.
func ArtifactDir(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			break
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("no go.mod above the test's directory")
		}
		dir = parent
	}
	dir = filepath.Join(dir, "test", "artifacts")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// Actions on the dashboard. Each waits, by polling with a deadline, for
// the page to reach the state it names.

// Poll waits up to timeout for a JavaScript expression to become truthy.
func Poll(expr string, timeout time.Duration) chromedp.Action[chromedp.Void] {
	return chromedp.Poll[chromedp.Void](expr, chromedp.WithPollingTimeout(timeout), chromedp.WithPollingInterval(50*time.Millisecond))
}

// SignIn signs in with token, or continues without one when token is "",
// and waits for the dashboard's first data.
func SignIn(token string) chromedp.Action[chromedp.Void] {
	steps := []chromedp.Action[chromedp.Void]{chromedp.WaitVisible(chromedp.ID("token"))}
	if token == "" {
		steps = append(steps, chromedp.Click(chromedp.ID("login-none")))
	} else {
		steps = append(steps, chromedp.SendKeys(chromedp.ID("token"), token), chromedp.Click(chromedp.ID("login-submit")))
	}
	return chromedp.Steps(append(steps, chromedp.WaitVisible(chromedp.ID("app")),
		Poll(`document.querySelectorAll('#members tbody tr').length > 0`, 30*time.Second))...)
}

func js(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// OwnerIs waits until the VIPs table shows owner for vip.
func OwnerIs(vip, owner string, timeout time.Duration) chromedp.Action[chromedp.Void] {
	return Poll(fmt.Sprintf(`document.querySelector('tr[data-vip=' + %s + '] .owner')?.textContent === %s`,
		js(js(vip)), js(owner)), timeout)
}

// ServiceShown waits until the services table has a row for ns/name.
func ServiceShown(ns, name string, timeout time.Duration) chromedp.Action[chromedp.Void] {
	return Poll(fmt.Sprintf(`!!document.querySelector('#services tr[data-service=' + %s + ']')`, js(js(ns+"/"+name))), timeout)
}

// MemberDraining waits until the members table shows member as draining
// (or not).
func MemberDraining(member string, draining bool, timeout time.Duration) chromedp.Action[chromedp.Void] {
	not := "!"
	if draining {
		not = ""
	}
	return Poll(fmt.Sprintf(`(r => r && %s/draining/.test(r.querySelector('.state').textContent))(document.querySelector('tr[data-member=' + %s + ']'))`,
		not, js(js(member))), timeout)
}

// ClickDrain clicks verb ("drain" or "undrain") on member's row and
// confirms the dialog.
func ClickDrain(member, verb string) chromedp.Action[chromedp.Void] {
	return chromedp.Steps(
		chromedp.Click(chromedp.CSS(fmt.Sprintf(`tr[data-member=%s] button.%s`, js(member), verb))),
		chromedp.WaitVisible(chromedp.ID("confirm")),
		chromedp.Click(chromedp.ID("confirm-ok")),
		chromedp.WaitNotVisible(chromedp.ID("confirm")),
	)
}

// BannerContains waits until the message banner shows text.
func BannerContains(text string, timeout time.Duration) chromedp.Action[chromedp.Void] {
	return Poll(fmt.Sprintf(`!document.querySelector('#banner').hidden && document.querySelector('#banner-text').textContent.includes(%s)`, js(text)), timeout)
}

// SetField sets a field of the cluster configuration form, as typing does
// (the form hears an input event).
func SetField(key, value string) chromedp.Action[chromedp.Void] {
	return chromedp.Steps(
		chromedp.WaitVisible(chromedp.CSS(fmt.Sprintf(`#cfg-fields [data-field=%s]`, js(key)))),
		chromedp.Evaluate[chromedp.Void](fmt.Sprintf(`(el => { el.value = %s; el.dispatchEvent(new Event('input')); })(document.querySelector('#cfg-fields [data-field=' + %s + ']'))`,
			js(value), js(js(key)))))
}

// ConfirmDialog accepts the open confirmation dialog.
func ConfirmDialog() chromedp.Action[chromedp.Void] {
	return chromedp.Steps(
		chromedp.WaitVisible(chromedp.ID("confirm")),
		chromedp.Click(chromedp.ID("confirm-ok")),
		chromedp.WaitNotVisible(chromedp.ID("confirm")),
	)
}

// FieldError waits until the configuration form shows an error containing
// text under the field key.
func FieldError(key, text string, timeout time.Duration) chromedp.Action[chromedp.Void] {
	return Poll(fmt.Sprintf(`document.querySelector('#cfg-fields .field-error[data-for=' + %s + ']')?.textContent.includes(%s)`,
		js(js(key)), js(text)), timeout)
}

// CheckAndApply sends the open form to the dry run, waits for its
// acceptance, applies it and waits for the banner of the new version.
func CheckAndApply(version uint64, timeout time.Duration) chromedp.Action[chromedp.Void] {
	return chromedp.Steps(
		chromedp.Click(chromedp.ID("cfg-check")),
		Poll(`!document.querySelector('#cfg-apply').disabled`, timeout),
		chromedp.Click(chromedp.ID("cfg-apply")),
		BannerContains(fmt.Sprintf("Version %d applied", version), timeout))
}

// EditRow clicks Edit on the row of a configuration table (#cfg-pools,
// #cfg-peers, ...) whose data attribute attr is value.
func EditRow(table, attr, value string) chromedp.Action[chromedp.Void] {
	return chromedp.Click(chromedp.CSS(fmt.Sprintf(`%s tr[data-%s=%s] button.edit`, table, attr, js(value))))
}
