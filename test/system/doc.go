// Package system tests edgelb as users run it, on the Debian test bed
// (docs/testbed.md): `make system`, and part of `make test`.
package system
