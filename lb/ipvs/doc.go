// Package ipvs is edgelb's IPVS dataplane: it reconciles the kernel's IPVS
// table to the desired virtual services held in an lb.Store.
//
// Data flows one way. Producers (the static config, the Kubernetes
// controller) Set a new lb.Desired; the Dataplane's loop is woken, waits at
// least MinSyncInterval since the previous pass so bursts coalesce, and runs
// one pass: for every virtual service whose desired state (backends, their
// health, scheduler, persistence) differs from what it last applied it reads
// the kernel, and creates, updates or deletes only the difference. A full
// pass, which also reads every virtual service in the kernel, runs at start
// and every ResyncPeriod, so changes made behind edgelb's back are repaired.
//
// Only virtual services on VIPs edgelb manages are touched: the VIPs of the
// desired state, those of the address pools and static services
// (Options.Owns), and any VIP this process programmed before. Everything else
// in the table is left alone, and the table is never flushed — not at start,
// restart or stop; the Interface has no Flush at all.
//
// A backend that leaves, or is terminating, is set to weight 0 and deleted
// once it has no connections, active or inactive (FIN_WAIT, TIME_WAIT,
// UDP), or DrainTimeout has passed. A backend
// that fails its health checks is set to weight 0 and kept.
//
// The dataplane pushes what others need to know of it: its health
// (Options.Reporter, under HealthSource: unhealthy while the kernel cannot
// be prepared or the table cannot be read, reported once per change) and
// every pass's duration and error (Options.OnSync), so nobody polls
// Status; Status and Healthy remain for the API's reads.
//
// Stats, for the API and metrics, reads the counters through a handle of
// its own (Options.StatsIPVS) at most once per StatsInterval and serves
// that copy in between, so that scrapes and dashboards never cost a dump
// of the table each, nor hold up a pass.
//
// Only kernel.go imports github.com/moby/ipvs; tests drive the Dataplane
// through the in-memory ipvstest.Fake.
package ipvs
