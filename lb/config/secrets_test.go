package config

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
)

const secretSpec = `{"bgp":{"asn":64512,"peers":[` +
	`{"address":"10.0.0.1","asn":64500,"password":"md5-one"},` +
	`{"address":"2001:db8::1","asn":64500,"password":""},` +
	`{"address":"10.0.0.3","asn":64500,"password":12345}]},` +
	`"pools":[{"addresses":["198.51.100.0/28"],"announce":"bgp","name":"edge"}]}`

func TestRedactSecrets(t *testing.T) {
	got, err := RedactSecrets(json.RawMessage(secretSpec))
	if err != nil {
		t.Fatal(err)
	}
	want := `{"bgp":{"asn":64512,"peers":[` +
		`{"address":"10.0.0.1","asn":64500,"password":"(secret)"},` +
		`{"address":"2001:db8::1","asn":64500,"password":""},` +
		`{"address":"10.0.0.3","asn":64500,"password":"(secret)"}]},` +
		`"pools":[{"addresses":["198.51.100.0/28"],"announce":"bgp","name":"edge"}]}`
	if string(got) != want {
		t.Errorf("RedactSecrets =\n%s\nwant\n%s", got, want)
	}
	// Without secrets, the bytes are the stored ones.
	plain := `{"pools":[{"addresses":["192.0.2.0/28"],"name":"a"}]}`
	if got, err := RedactSecrets(json.RawMessage(plain)); err != nil || string(got) != plain {
		t.Errorf("RedactSecrets of a spec without secrets = %s, %v", got, err)
	}
	// What cannot be read is refused, never passed through.
	if got, err := RedactSecrets(json.RawMessage(`{"bgp":`)); err == nil {
		t.Errorf("RedactSecrets of broken JSON = %s, want an error", got)
	}
}

func TestRestoreSecrets(t *testing.T) {
	for _, tc := range []struct{ name, spec, want string }{
		{"the redacted spec gives the stored one back", `{"bgp":{"asn":64512,"peers":[` +
			`{"address":"10.0.0.1","asn":64500,"password":"(secret)"},` +
			`{"address":"2001:db8::1","asn":64500,"password":""},` +
			`{"address":"10.0.0.3","asn":64500,"password":"(secret)"}]},` +
			`"pools":[{"addresses":["198.51.100.0/28"],"announce":"bgp","name":"edge"}]}`,
			`{"bgp":{"asn":64512,"peers":[` +
				`{"address":"10.0.0.1","asn":64500,"password":"md5-one"},` +
				`{"address":"2001:db8::1","asn":64500,"password":""},` +
				`{"address":"10.0.0.3","asn":64500,"password":12345}]},` +
				`"pools":[{"addresses":["198.51.100.0/28"],"announce":"bgp","name":"edge"}]}`},
		{"peers by address, not by place; a new value replaces the stored one",
			`{"bgp":{"asn":64512,"peers":[{"address":"10.0.0.3","password":"new-key"},{"address":"10.0.0.1","password":"(secret)"}]}}`,
			`{"bgp":{"asn":64512,"peers":[{"address":"10.0.0.3","password":"new-key"},{"address":"10.0.0.1","password":"md5-one"}]}}`},
		{"an address written another way is the same peer",
			`{"bgp":{"peers":[{"address":"2001:DB8:0::1","password":"(secret)"},{"address":"10.0.0.1","password":"(secret)"}]}}`,
			`{"bgp":{"peers":[{"address":"2001:DB8:0::1","password":"(secret)"},{"address":"10.0.0.1","password":"md5-one"}]}}`},
		{"a new peer keeps the placeholder, for the validation to refuse",
			`{"bgp":{"peers":[{"address":"10.0.0.9","password":"(secret)"}]}}`,
			`{"bgp":{"peers":[{"address":"10.0.0.9","password":"(secret)"}]}}`},
		{"YAML", "bgp:\n  peers:\n    - {address: 10.0.0.1, password: (secret)}\n",
			`{"bgp":{"peers":[{"address":"10.0.0.1","password":"md5-one"}]}}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := RestoreSecrets(json.RawMessage(tc.spec), json.RawMessage(secretSpec)); string(got) != tc.want {
				t.Errorf("RestoreSecrets =\n%s\nwant\n%s", got, tc.want)
			}
		})
	}
	if got := RestoreSecrets(json.RawMessage(`[1]`), json.RawMessage(secretSpec)); string(got) != `[1]` {
		t.Errorf("RestoreSecrets of a non-object = %s, want it as it was", got)
	}
}

func TestSecretsChanged(t *testing.T) {
	next := `{"bgp":{"asn":64512,"peers":[` +
		`{"address":"10.0.0.1","asn":64500,"password":"md5-one"},` +
		`{"address":"2001:db8::1","asn":64500,"password":"now-set"},` +
		`{"address":"10.0.0.4","asn":64500}]}}`
	got := SecretsChanged(json.RawMessage(secretSpec), json.RawMessage(next))
	want := []string{"bgp.peers[2001:db8::1].password", "bgp.peers[10.0.0.3].password"}
	if !slices.Equal(got, want) {
		t.Errorf("SecretsChanged = %q, want %q", got, want)
	}
	if got := SecretsChanged(json.RawMessage(secretSpec), json.RawMessage(secretSpec)); len(got) != 0 {
		t.Errorf("SecretsChanged of equal specs = %q", got)
	}
	for _, s := range got {
		if strings.Contains(s, "md5") || strings.Contains(s, "now-set") {
			t.Errorf("SecretsChanged shows a value: %q", s)
		}
	}
}
