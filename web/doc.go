// Package web is edgelb's dashboard: static files embedded into the binary
// and served by the api package at / and /ui/.
//
// The dashboard is plain ES modules and hand-written CSS with no build
// step and nothing fetched from the internet. It holds no state on the
// server: the page asks for an API token, keeps it in sessionStorage, and
// reads everything it shows from /api/v1 with that token — the status,
// members, VIPs and services (polled every few seconds and whenever the
// event stream reports an ownership, drain, member, health or allocation
// change) and the event stream itself, read with fetch() because
// EventSource cannot send an Authorization header. Traffic charts are
// rates computed in the page from the services' IPVS counters. The poll
// interval is 5 s; the URL parameter ?refresh=N sets it to N seconds.
//
// Files:
//
//	static/index.html  the page
//	static/style.css   its styles
//	static/api.js      the REST client and the Server-Sent Events reader
//	static/dom.js      a small element builder (no innerHTML)
//	static/chart.js    SVG line charts of rates
//	static/app.js      login, rendering, refresh, drain and undrain, adding and removing members
//	static/config.js   the cluster configuration card: tables, dry run,
//	                   apply, delete, history, diff, rollback, audit log
//	static/forms.js    what each of its forms edits, the fields' inputs,
//	                   and reading and writing a spec by path
//	static/service.js  one Service's view: state, owners, source ranges,
//	                   backends and its Kubernetes Events
//
// The webtest package drives the dashboard in Chromium for tests.
package web
