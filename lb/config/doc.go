// Package config parses edgelb's YAML configuration file into a validated,
// typed model (netip addresses, durations, enums).
//
// The file is read once: Load and Parse either return a Config that every
// other package can use without re-checking it, or an error listing every
// problem found, each prefixed with file:line and the path of the field
// (like `nginx -t`). Nothing in edgelb changes the host before a Config has
// been accepted.
package config
