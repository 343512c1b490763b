// Package system tests edgelb as users run it, on the Debian test bed
// (docs/testbed.md). Its test is built with the testbed tag: `make system`.
package system
