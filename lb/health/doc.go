// Package health probes the backends of the desired virtual services and
// keeps the results for the dataplane and the API.
//
// A Checker reads the targets from the lb.Store each round: every backend
// (TCP connect) and, for backends that carry a HealthCheckPort (the
// healthCheckNodePort of externalTrafficPolicy: Local Services), an HTTP GET
// of /healthz on that port that must answer 200. Backends of UDP and SCTP
// services are only probed over HTTP, when they have a HealthCheckPort;
// otherwise they count as up. Every Interval all targets are probed in
// parallel, each bounded by Timeout. A target goes down after Fall failures
// in a row and comes back after Rise successes in a row; new targets start
// up. Every change of a result signals Changed, which the dataplane
// subscribes to; Results is the read interface for the API.
package health
