package config

import (
	"net/netip"
	"strings"

	"gopkg.in/yaml.v3"
)

// BackendState is the administrative state of one backend.
type BackendState string

const (
	// BackendDrain keeps the backend at weight 0: open connections stay,
	// new ones go to the others.
	BackendDrain BackendState = "drain"
	// BackendDisable takes the backend out of the table.
	BackendDisable BackendState = "disable"
)

var backendStates = []string{string(BackendDrain), string(BackendDisable)}

// BackendAdmin is an administrative state set on one backend of one
// service (a backend not listed is enabled).
type BackendAdmin struct {
	// Service is "namespace/name", or "_static/name" for a static service.
	Service string
	// Backend is the backend's address and port as the API lists it.
	Backend netip.AddrPort
	State   BackendState
}

// StaticPrefix is the namespace static services are listed under.
const StaticPrefix = "_static"

func (p *parser) backendStates(n *yaml.Node, path string) {
	d := p.d
	seen := map[string]string{}
	d.list(n, path, func(_ int, item *yaml.Node, path string) {
		var b BackendAdmin
		var svcNode, beNode *yaml.Node
		d.mapping(item, path, map[string]func(*yaml.Node, string){
			"service": func(n *yaml.Node, path string) {
				svcNode = n
				d.str(n, path, &b.Service)
				if ns, name, ok := strings.Cut(b.Service, "/"); !ok || ns == "" || name == "" || strings.Contains(name, "/") {
					d.errorf(n, path, "%q is not namespace/name (or _static/name for a static service)", b.Service)
				}
			},
			"backend": func(n *yaml.Node, path string) {
				beNode = n
				var s string
				d.str(n, path, &s)
				ap, err := netip.ParseAddrPort(s)
				if err != nil || ap.Port() == 0 || ap.Addr().Zone() != "" {
					d.errorf(n, path, "%q is not an address:port", s)
					return
				}
				b.Backend = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
			},
			"state": func(n *yaml.Node, path string) {
				s := string(b.State)
				d.enum(n, path, backendStates, &s)
				b.State = BackendState(s)
			},
		})
		switch {
		case svcNode == nil:
			d.errorf(item, join(path, "service"), "required")
		case beNode == nil:
			d.errorf(item, join(path, "backend"), "required")
		case b.State == "":
			d.errorf(item, join(path, "state"), "required: drain or disable")
		}
		if b.Service == "" || !b.Backend.IsValid() {
			return
		}
		k := b.Service + " " + b.Backend.String()
		if prev, ok := seen[k]; ok {
			d.errorf(item, path, "%s of %s is already given in %s", b.Backend, b.Service, prev)
			return
		}
		seen[k] = path
		p.cfg.BackendStates = append(p.cfg.BackendStates, b)
	})
}
