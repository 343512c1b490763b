package packaging

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/edgelb/edgelb/test/prereq"
)

// stub stands in for the commands the maintainer scripts call: it logs its
// name and arguments, and answers the queries as the STUB_* variables say.
const stub = `#!/bin/sh
echo "$(basename "$0") $*" >>"$STUB_LOG"
case "$(basename "$0") $*" in
"systemctl "*is-active*) exit "${STUB_ACTIVE:-3}" ;;
"deb-systemd-helper debian-installed "*) exit "${STUB_DEBIAN_INSTALLED:-1}" ;;
"deb-systemd-helper "*was-enabled*) exit "${STUB_WAS_ENABLED:-1}" ;;
"edgelb check "*) [ "${STUB_CHECK:-0}" = 0 ] || echo "config.yaml:3: pools: bad" >&2; exit "${STUB_CHECK:-0}" ;;
esac
exit 0
`

// testMaintainerScripts runs the package's maintainer scripts as dpkg
// would on a host where systemd runs, in a mount namespace that fakes
// /run/systemd/system and hides the host's /etc, /var and systemd helpers,
// with stubs for systemctl, deb-systemd-helper, deb-systemd-invoke,
// adduser and edgelb. It checks what they ask of systemd on an upgrade, a
// fresh install, a removal and a purge.
func testMaintainerScripts(t *testing.T, root, deb string) {
	if _, err := exec.LookPath("unshare"); err != nil {
		prereq.Missing(t, "unshare is not installed")
	}
	scripts := t.TempDir()
	run(t, root, "dpkg-deb", "--control", deb, scripts)
	stubs := t.TempDir()
	if err := os.WriteFile(filepath.Join(stubs, "stub"), []byte(stub), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"systemctl", "deb-systemd-helper", "deb-systemd-invoke", "adduser", "edgelb"} {
		if err := os.Symlink("stub", filepath.Join(stubs, name)); err != nil {
			t.Fatal(err)
		}
	}

	for _, tc := range []struct {
		name    string
		steps   [][]string // script and arguments, run in order
		env     []string
		want    []string // calls that must be logged
		notWant []string // substrings no call may contain
	}{{
		name:    "upgrade: the prerm does not stop the service",
		steps:   [][]string{{"prerm", "upgrade", "1.0"}},
		env:     []string{"STUB_ACTIVE=0"},
		notWant: []string{"stop", "disable", "mask", "cleanup"},
	}, {
		name:  "upgrade: the postinst restarts a running service on a good config",
		steps: [][]string{{"postinst", "configure", "1.0"}},
		env:   []string{"STUB_ACTIVE=0", "STUB_DEBIAN_INSTALLED=0"},
		want: []string{"systemctl --system daemon-reload", "edgelb check --config /etc/edgelb/config.yaml", "deb-systemd-invoke restart edgelb.service", "deb-systemd-helper update-state edgelb.service",
			"deb-systemd-helper update-state edgelb-witness.service", "deb-systemd-invoke restart edgelb-witness.service"},
		notWant: []string{"stop", " start", "helper enable"},
	}, {
		name:    "upgrade: an enabled unit stays enabled",
		steps:   [][]string{{"postinst", "configure", "1.0"}},
		env:     []string{"STUB_ACTIVE=0", "STUB_DEBIAN_INSTALLED=0", "STUB_WAS_ENABLED=0"},
		want:    []string{"deb-systemd-helper unmask edgelb.service", "deb-systemd-helper enable edgelb.service", "deb-systemd-invoke restart edgelb.service"},
		notWant: []string{"stop"},
	}, {
		name:    "upgrade: a stopped service stays stopped",
		steps:   [][]string{{"postinst", "configure", "1.0"}},
		env:     []string{"STUB_ACTIVE=3", "STUB_DEBIAN_INSTALLED=0"},
		notWant: []string{"deb-systemd-invoke", "helper enable"},
	}, {
		name:    "upgrade: a config the new binary refuses is not restarted",
		steps:   [][]string{{"postinst", "configure", "1.0"}},
		env:     []string{"STUB_ACTIVE=0", "STUB_DEBIAN_INSTALLED=0", "STUB_CHECK=1"},
		want:    []string{"edgelb check --config /etc/edgelb/config.yaml"},
		notWant: []string{"deb-systemd-invoke restart edgelb.service"},
	}, {
		name:    "fresh install: neither enabled nor started",
		steps:   [][]string{{"postinst", "configure"}},
		want:    []string{"adduser --system --group --no-create-home --home /var/lib/edgelb edgelb", "deb-systemd-helper update-state edgelb.service", "systemctl --system daemon-reload"},
		notWant: []string{"deb-systemd-invoke", "helper enable", "is-active"},
	}, {
		name:  "remove and purge: stopped, disabled, forgotten",
		steps: [][]string{{"prerm", "remove"}, {"postrm", "remove"}, {"postrm", "purge"}},
		want: []string{"deb-systemd-invoke stop edgelb.service", "edgelb cleanup --config /etc/edgelb/config.yaml", "deb-systemd-helper disable edgelb.service",
			"systemctl --system daemon-reload", "deb-systemd-helper purge edgelb.service",
			"deb-systemd-invoke stop edgelb-witness.service", "deb-systemd-helper disable edgelb-witness.service", "deb-systemd-helper purge edgelb-witness.service"},
		notWant: []string{"start"},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			for _, d := range []string{"etc/edgelb", "var/lib/edgelb"} {
				if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
					t.Fatal(err)
				}
			}
			// An existing key: the postinst keeps it (and does not run the
			// real /usr/bin/edgelb, which the host need not have).
			key := filepath.Join(dir, "etc/edgelb/gossip.key")
			if err := os.WriteFile(key, []byte("a2V5\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, "etc/edgelb/config.yaml"), []byte("node: {name: lb1}\n"), 0o640); err != nil {
				t.Fatal(err)
			}
			log := filepath.Join(dir, "log")
			var out strings.Builder
			for _, step := range tc.steps {
				// /run/systemd/system says systemd runs; the tmpfs over
				// /usr/lib/systemd keeps the host's systemd-sysctl and
				// systemd-modules-load from running.
				setup := `set -e
mount -t tmpfs none /run && mkdir -p /run/systemd/system
if [ -d /usr/lib/systemd ]; then mount -t tmpfs none /usr/lib/systemd; fi
mount --bind "$D/var" /var
mount --bind "$D/etc" /etc
exec sh "$@"`
				cmd := exec.Command("unshare", append([]string{"--mount", "--propagation", "private", "sh", "-c", setup, "sh",
					filepath.Join(scripts, step[0])}, step[1:]...)...)
				cmd.Env = append([]string{"D=" + dir, "STUB_LOG=" + log, "DPKG_MAINTSCRIPT_PACKAGE=edgelb",
					"DPKG_MAINTSCRIPT_NAME=" + step[0], "PATH=" + stubs + ":/usr/sbin:/usr/bin:/sbin:/bin"}, tc.env...)
				b, err := cmd.CombinedOutput()
				out.Write(b)
				if err != nil {
					t.Fatalf("%s: %v\n%s", strings.Join(step, " "), err, b)
				}
			}
			b, _ := os.ReadFile(log)
			calls := string(b)
			t.Logf("calls:\n%soutput:\n%s", calls, out.String())
			for _, w := range tc.want {
				if !strings.Contains(calls, w+"\n") {
					t.Errorf("no call %q", w)
				}
			}
			for _, nw := range tc.notWant {
				if strings.Contains(calls, nw) {
					t.Errorf("a call contains %q", nw)
				}
			}
			purged := tc.steps[len(tc.steps)-1][1] == "purge"
			for _, f := range []string{key, filepath.Join(dir, "var/lib/edgelb")} {
				if _, err := os.Stat(f); purged != os.IsNotExist(err) {
					t.Errorf("%s after %v: %v", f, tc.steps, err)
				}
			}
		})
	}
}
