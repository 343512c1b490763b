package cli

import (
	"log/slog"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/edgelb/edgelb/api"
	"github.com/edgelb/edgelb/api/apitest"
)

// edgelb members against the API of a host with a consensus log.
func TestMembersCommands(t *testing.T) {
	f := apitest.Sample()
	ms := &apitest.Members{Names: []string{"10.0.0.11:7946", "10.0.0.12:7946", "10.0.0.13:7946"},
		Cont: api.Contact{Quorum: true, Leader: "10.0.0.12:7946"}}
	srv := httptest.NewServer(api.New(api.Options{State: f, Bus: f.Bus, Members: ms,
		NamedTokens: []api.Token{{Name: "ops", Role: "admin", Secret: "ops-token-0123456789"}},
		Log:         slog.New(slog.DiscardHandler),
	}).Handler())
	defer srv.Close()
	t.Setenv("EDGELB_TOKEN", "ops-token-0123456789")
	members := func(args ...string) (int, string, string) {
		return runMain(append(append([]string{"members"}, args...), "--api", srv.URL)...)
	}

	code, out, errOut := members("add", "10.0.0.14:7946")
	if code != 0 || !strings.HasPrefix(out, "added 10.0.0.14:7946: the configured members are 10.0.0.11:7946, 10.0.0.12:7946, 10.0.0.13:7946, 10.0.0.14:7946\n") {
		t.Errorf("members add: %d\n%s%s", code, out, errOut)
	}
	code, out, errOut = members("list")
	if code != 0 || !strings.Contains(strings.Join(strings.Fields(out), " "), "10.0.0.14:7946 10.0.0.14:7946 yes no no 0") || !strings.Contains(out, "lb1 (this host)") {
		t.Errorf("members list: %d\n%s%s", code, out, errOut)
	}
	code, _, errOut = members("add", "10.0.0.14:7946")
	if code != 1 || !strings.Contains(errOut, "409 Conflict") {
		t.Errorf("members add twice: %d %s, want exit 1 and the 409", code, errOut)
	}
	code, out, errOut = members("remove", "10.0.0.13:7946", "--force")
	if code != 0 || !strings.HasPrefix(out, "removed 10.0.0.13:7946") || !ms.Forced {
		t.Errorf("members remove --force: %d (forced %v)\n%s%s", code, ms.Forced, out, errOut)
	}
	code, _, errOut = members("remove", "10.0.0.99:7946")
	if code != 1 || !strings.Contains(errOut, "404 Not Found") {
		t.Errorf("members remove of an unknown member: %d %s", code, errOut)
	}
	if code, _, _ := members("add"); code != 2 {
		t.Errorf("members add without an address: exit %d, want 2", code)
	}
}
