// Package health probes the backends of the desired virtual services and
// keeps the results for the dataplane and the API.
//
// A Checker reads the targets from the lb.Store: every backend with its
// virtual service's check (lb.HealthCheck: the edgelb.io/health-check-*
// annotations or a static service's healthCheck) and, for backends that
// carry a HealthCheckPort (the healthCheckNodePort of externalTrafficPolicy:
// Local Services), an HTTP GET of /healthz on that port that must answer
// 200. A tcp check connects, an http check GETs its path and wants 200-399,
// none probes nothing; without a check TCP backends are connected to and
// UDP and SCTP ones count as up. Each target is probed every interval (its
// check's, else Config's), bounded by its timeout. A target goes down after
// Fall failures in a row and comes back after Rise successes in a row; a
// new target counts as up until its first probe, whose result then decides
// at once (so a restarted edgelb does not send traffic to a backend that is
// down).
// FirstRound lets the dataplane wait for the first round before its first
// pass. Every change of a result signals Changed, which the dataplane
// subscribes to; Results is the read interface for the API.
package health
