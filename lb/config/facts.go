package config

import (
	"encoding/json"
	"fmt"
	"strings"

	"gopkg.in/yaml.v3"
)

// Facts are the host-local keys of one host's config file that a cluster
// configuration can fail on there: a version that needs node.interface (a
// dr or tunnel method), a routerID (a bgp section: bgp.routerID, else an
// IPv4 cluster.bindAddr) or a peer other than the host itself
// (cluster.bindAddr). Every host gossips its own, so that the host taking
// a write checks it against every member's (Check) before proposing it,
// and no committed version leaves a host behind that the write could
// have named. They are kept as the file writes them: the host's own parse
// checks their form.
type Facts struct {
	Interface string `json:"i,omitempty"`
	RouterID  string `json:"r,omitempty"`
	BindAddr  string `json:"b,omitempty"`
}

// Facts reads the host-local keys a cluster configuration can fail on
// from the host's file.
func (h *Host) Facts() Facts {
	var doc struct {
		Node struct {
			Interface string `yaml:"interface"`
		} `yaml:"node"`
		Cluster struct {
			BindAddr string `yaml:"bindAddr"`
		} `yaml:"cluster"`
		BGP struct {
			RouterID string `yaml:"routerID"`
		} `yaml:"bgp"`
	}
	// A file that does not decode fails every version on its own host;
	// the others cannot tell, and check nothing of it.
	_ = yaml.Unmarshal(h.data, &doc)
	return Facts{Interface: doc.Node.Interface, RouterID: doc.BGP.RouterID, BindAddr: doc.Cluster.BindAddr}
}

// Encode is the facts' gossiped form.
func (f Facts) Encode() []byte {
	b, _ := json.Marshal(f)
	return b
}

// DecodeFacts decodes what Encode wrote.
func DecodeFacts(b []byte) (Facts, error) {
	var f Facts
	if err := json.Unmarshal(b, &f); err != nil {
		return Facts{}, fmt.Errorf("decoding a member's facts: %w", err)
	}
	return f, nil
}

// Check validates spec, which this host's own keys take, over the facts
// of the host named member: the errors are the ones that host's Apply
// would give, each naming the member and the field of its file
// (node.interface, bgp.routerID) or of the spec that needs it. Check runs
// the same rules as Apply, on a stand-in file that holds only the facts:
// errors caused by the spec alone are Apply's on this host already.
func (f Facts) Check(member string, spec json.RawMessage) Errors {
	q := func(s string) string { b, _ := json.Marshal(s); return string(b) }
	var file strings.Builder
	fmt.Fprintf(&file, "node: {name: %s", q(member))
	if f.Interface != "" {
		fmt.Fprintf(&file, ", interface: %s", q(f.Interface))
	}
	file.WriteString("}\ncluster: {insecure: true")
	if f.BindAddr != "" {
		fmt.Fprintf(&file, ", bindAddr: %s", q(f.BindAddr))
	}
	file.WriteString("}\n")
	if f.RouterID != "" {
		fmt.Fprintf(&file, "bgp: {routerID: %s}\n", q(f.RouterID))
	}
	stand := NewHost(member, []byte(file.String()), ".")
	stand.readFile = func(string) ([]byte, error) { return nil, fmt.Errorf("no files on a stand-in host") }
	_, err := stand.Apply(spec)
	if err == nil {
		return nil
	}
	var out Errors
	add := func(e *FieldError) {
		c := *e
		c.Member, c.File, c.Line = member, member+"'s config file", 0
		// The rules speak of the host that checks its own file.
		c.Msg = strings.ReplaceAll(c.Msg, "this host's own", member+"'s own")
		c.Msg = fmt.Sprintf("%s (%s's config file: %s)", c.Msg, member, f.describe())
		out = append(out, &c)
	}
	switch e := err.(type) {
	case Errors:
		for _, fe := range e {
			add(fe)
		}
	case *FieldError:
		add(e)
	default:
		add(&FieldError{Field: "spec", Msg: err.Error()})
	}
	return out
}

// describe says what the facts are, for a message.
func (f Facts) describe() string {
	var s []string
	if f.Interface == "" {
		s = append(s, "no node.interface")
	} else {
		s = append(s, "node.interface "+f.Interface)
	}
	if f.RouterID == "" {
		s = append(s, "no bgp.routerID")
	} else {
		s = append(s, "bgp.routerID "+f.RouterID)
	}
	if f.BindAddr == "" {
		s = append(s, "no cluster.bindAddr")
	} else {
		s = append(s, "cluster.bindAddr "+f.BindAddr)
	}
	return strings.Join(s, ", ")
}
