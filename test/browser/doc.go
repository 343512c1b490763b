// Package browser holds the end-to-end dashboard test: real `edgelb run`
// processes gossiping on 127.0.0.1 with static services and the
// announce-only dataplane, each owning VIPs on its own veth interface in
// the root namespace, and Chromium driving one member's dashboard through
// a drain. It needs root (interfaces) and Chromium; without them it skips,
// or fails when CI=true.
package browser
