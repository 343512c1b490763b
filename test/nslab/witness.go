package nslab

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
)

// StartWitness runs `edgelb witness` on h instead of `edgelb run`: the
// third voter of a pair, with node.name and the cluster keys of h's
// Config (the lab's first Join hosts are the configured cluster, h among
// them), its log in h's state directory. It owns no VIP and serves no API,
// so Configured passes it over; Stop, Kill and Cleanup treat it as any
// host's process.
func (h *Host) StartWitness() {
	l := h.Lab
	if h.Log != nil {
		h.Logs = append(h.Logs, h.Log.String())
	}
	h.Log = &LockedBuffer{}
	h.witness = true
	n := l.Join
	if n == 0 {
		n = 3
	}
	var join []string
	for _, o := range l.Hosts[:min(n, len(l.Hosts))] {
		join = append(join, strconv.Quote(o.IP4.String()))
	}
	path := filepath.Join(l.Dir, h.Name+"-witness.yaml")
	WriteFile(l.T, path, fmt.Sprintf(`node: {name: %s}
cluster:
  bindAddr: %s
  join: [%s]
  secretKeyFile: %s
`, h.Name, h.IP4, strings.Join(join, ", "), h.Key))
	cmd := exec.Command("ip", "netns", "exec", h.NS, edgelbBin, "witness", "--config", path, "--state-dir", h.StateDir())
	cmd.Env = os.Environ()
	cmd.Stdout, cmd.Stderr = h.Log, h.Log
	if err := cmd.Start(); err != nil {
		l.T.Fatal(err)
	}
	h.proc, h.exit = cmd, make(chan error, 1)
	go func() { h.exit <- cmd.Wait() }()
}
