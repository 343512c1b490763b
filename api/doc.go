// Package api serves edgelb's REST API (gin) under /api/v1, the live event
// stream (Server-Sent Events), /healthz, /readyz, /metrics (Prometheus)
// and the embedded dashboard.
//
// It reads and changes the daemon only through the small State interface,
// so it does not depend on which of the cluster, dataplane or Kubernetes
// parts are running; the daemon publishes events to a Bus. Once tokens are
// configured every path but /healthz and the dashboard's static files
// needs a bearer token; viewer tokens read, admin tokens also drain.
// Every configuration it answers shows its secrets (the BGP peers'
// passwords) as SecretPlaceholder; only an admin who asks (?secrets=true)
// gets them, and the read is audited.
package api
