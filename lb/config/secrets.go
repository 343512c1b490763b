package config

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/netip"
)

// SecretPlaceholder stands for a stored secret (a BGP peer's password)
// wherever the API shows a cluster configuration without its secrets. A
// spec that carries it back keeps the secret stored for the same item
// (RestoreSecrets), so that reading, editing and writing a configuration
// never wipes a password; the parser refuses it where nothing is stored.
const SecretPlaceholder = "(secret)"

// secretField is where secrets are in a spec: one key of the objects in
// a list, each object named by another of its keys. An item is named, not
// counted, so that a placeholder keeps its own peer's password when peers
// are reordered, added or removed around it.
type secretField struct {
	list  []string // the path of the list: bgp, peers
	id    string   // the key that names an item: address
	field string   // the key that holds the secret: password
}

// secretFields are every secret of the cluster configuration. The other
// secrets of a config file (api.tokens, the gossip key) are host-local
// and never in a spec.
var secretFields = []secretField{{list: []string{"bgp", "peers"}, id: "address", field: "password"}}

// secretItem is one item of a secretField's list.
type secretItem struct {
	f    secretField
	item map[string]any
	id   string // the item's name, addresses in canonical form
}

// name is the secret's path with the item named by its id:
// bgp.peers[10.0.0.1].password.
func (s secretItem) name() string {
	p := ""
	for i, k := range s.f.list {
		if i > 0 {
			p += "."
		}
		p += k
	}
	return fmt.Sprintf("%s[%s].%s", p, s.id, s.f.field)
}

// value is the secret as text ("" for none): what the parser reads from
// the scalar, whether JSON wrote it as a string or a number.
func (s secretItem) value() string {
	v, ok := s.item[s.f.field]
	if !ok || v == nil {
		return ""
	}
	if str, ok := v.(string); ok {
		return str
	}
	return fmt.Sprint(v)
}

// secretItems lists the items of every secretField in spec.
func secretItems(spec map[string]any) []secretItem {
	var out []secretItem
	for _, f := range secretFields {
		var v any = spec
		for _, k := range f.list {
			m, ok := v.(map[string]any)
			if !ok {
				v = nil
				break
			}
			v = m[k]
		}
		list, _ := v.([]any)
		for _, it := range list {
			m, ok := it.(map[string]any)
			if !ok {
				continue
			}
			id := fmt.Sprint(m[f.id])
			if a, err := netip.ParseAddr(id); err == nil {
				id = a.String()
			}
			out = append(out, secretItem{f: f, item: m, id: id})
		}
	}
	return out
}

func decodeSpec(spec []byte) (map[string]any, error) {
	dec := json.NewDecoder(bytes.NewReader(spec))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		return nil, err
	}
	return m, nil
}

// RedactSecrets returns spec (canonical JSON, as versions are stored)
// with every secret that is set replaced by SecretPlaceholder; an empty
// one stays empty, so that it shows that there is none. It fails rather
// than return a spec it could not read, so that no secret passes through.
func RedactSecrets(spec json.RawMessage) (json.RawMessage, error) {
	m, err := decodeSpec(spec)
	if err != nil {
		return nil, fmt.Errorf("reading the configuration to hide its secrets: %w", err)
	}
	changed := false
	for _, s := range secretItems(m) {
		if s.value() != "" {
			s.item[s.f.field] = SecretPlaceholder
			changed = true
		}
	}
	if !changed {
		return spec, nil
	}
	return json.Marshal(m)
}

// RestoreSecrets returns spec with each SecretPlaceholder replaced by the
// secret stored in stored (the version the change is made from) for the
// item of the same name. A placeholder with no stored secret stays, for
// the validation to refuse with its field. A spec that is not a JSON or
// YAML object is returned as it is, for the validation to refuse too.
func RestoreSecrets(spec, stored json.RawMessage) json.RawMessage {
	canon, err := CanonicalSpec(spec)
	if err != nil {
		return spec
	}
	m, err := decodeSpec(canon)
	if err != nil {
		return spec
	}
	// The stored values as they were written (a number stays a number),
	// so that a round trip gives the stored bytes back.
	old := map[string]any{}
	if sm, err := decodeSpec(stored); err == nil {
		for _, s := range secretItems(sm) {
			if s.value() != "" {
				old[s.name()] = s.item[s.f.field]
			}
		}
	}
	changed := false
	for _, s := range secretItems(m) {
		if v, ok := s.item[s.f.field].(string); ok && v == SecretPlaceholder {
			if o, ok := old[s.name()]; ok {
				s.item[s.f.field] = o
				changed = true
			}
		}
	}
	if !changed {
		return canon
	}
	out, err := json.Marshal(m)
	if err != nil {
		return canon
	}
	return out
}

// SecretsChanged names the secrets that differ from old to next — set,
// changed or removed, a removed item's included — by their item's name
// (bgp.peers[10.0.0.1].password), never their values: what a diff shows
// of them.
func SecretsChanged(old, next json.RawMessage) []string {
	om, _ := decodeSpec(old)
	nm, _ := decodeSpec(next)
	before := map[string]string{}
	for _, s := range secretItems(om) {
		before[s.name()] = s.value()
	}
	out := []string{}
	seen := map[string]bool{}
	for _, s := range secretItems(nm) {
		seen[s.name()] = true
		if s.value() != before[s.name()] {
			out = append(out, s.name())
		}
	}
	for _, s := range secretItems(om) {
		if !seen[s.name()] && s.value() != "" {
			out = append(out, s.name())
		}
	}
	return out
}
