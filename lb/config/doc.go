// Package config parses edgelb's YAML configuration file into a validated,
// typed model (netip addresses, durations, enums).
//
// The file is read once: Load and Parse either return a Config that every
// other package can use without re-checking it, or an error listing every
// problem found, each prefixed with file:line and the path of the field
// (like `nginx -t`). Nothing in edgelb changes the host before a Config has
// been accepted.
//
// The cluster-wide keys also travel as a JSON spec (spec.go): the versions
// of the cluster configuration, applied over a host's own keys by Host.
// secrets.go knows which of a spec's fields are secrets, so that the API
// can hide them (RedactSecrets), take them back from a spec that carries
// the placeholder (RestoreSecrets) and say which changed (SecretsChanged).
package config
