package cli

import (
	"bytes"
	"regexp"
	"strings"
	"testing"
)

// The man page names every subcommand of the usage and every flag that the
// subcommand's own --help lists; neither prints a token from the environment.
func TestManPageCoversTheHelp(t *testing.T) {
	t.Setenv("EDGELB_TOKEN", "secret-token-from-the-environment")
	var b bytes.Buffer
	if err := WriteManPage(&b, "1.2.3", "2026-01-02"); err != nil {
		t.Fatal(err)
	}
	man := b.String()
	if !strings.HasPrefix(strings.SplitN(man, "\n", 2)[1], `.TH EDGELB 8 "2026-01-02" "edgelb 1.2.3"`) {
		t.Errorf("title line:\n%s", man)
	}
	if strings.Contains(man, "secret-token") {
		t.Error("the man page shows $EDGELB_TOKEN's value")
	}

	code, usage, _ := runMain("--help")
	if code != 0 {
		t.Fatalf("--help: exit %d", code)
	}
	cmds := regexp.MustCompile(`(?m)^  edgelb (\w+)`).FindAllStringSubmatch(usage, -1)
	if len(cmds) < 5 {
		t.Fatalf("found only %v in the usage:\n%s", cmds, usage)
	}
	flagLine := regexp.MustCompile(`(?m)^  -([a-z-]+)`)
	for _, m := range cmds {
		name := m[1]
		if !strings.Contains(man, `.TP`+"\n"+`\fBedgelb `+name+`\fR`) {
			t.Errorf("no entry for %q in COMMANDS:\n%s", name, man)
		}
		if name == "version" {
			continue // version prints the version whatever follows it
		}
		code, _, help := runMain(name, "--help")
		if code != 0 || !strings.HasPrefix(help, "Usage: edgelb "+name) {
			t.Errorf("%s --help: exit %d\n%s", name, code, help)
		}
		if strings.Contains(help, "secret-token") {
			t.Errorf("%s --help shows $EDGELB_TOKEN's value", name)
		}
		// The synopsis is the help's first line.
		first, _, _ := strings.Cut(strings.TrimPrefix(help, "Usage: "), "\n")
		if !strings.Contains(roffPlain(man), "\n"+first+"\n") {
			t.Errorf("the man page lacks the synopsis %q", first)
		}
		for _, f := range flagLine.FindAllStringSubmatch(help, -1) {
			flag := strings.ReplaceAll(f[1], "-", `\-`)
			if !regexp.MustCompile(`(?m)^\.BI? \\-\\-` + regexp.QuoteMeta(flag) + `( |$)`).MatchString(man) {
				t.Errorf("the man page lacks %s --%s", name, f[1])
			}
		}
	}
}

// roffPlain strips font changes and minus escapes, to compare with --help.
func roffPlain(s string) string {
	return strings.NewReplacer(`\fB`, "", `\fI`, "", `\fR`, "", `\-`, "-").Replace(s)
}

func TestRoffEscape(t *testing.T) {
	for in, want := range map[string]string{
		"--config FILE":          `\-\-config FILE`,
		"load-balancer":          "load-balancer",
		"--log-level info":       `\-\-log\-level info`,
		"(-config or --config)":  `(\-config or \-\-config)`,
		`a\b`:                    `a\eb`,
		"[--output text|json]":   `[\-\-output text|json]`,
		"sub-second, 32-byte -x": `sub-second, 32-byte \-x`,
	} {
		if got := roffEscape(in); got != want {
			t.Errorf("roffEscape(%q) = %q, want %q", in, got, want)
		}
	}
	if got := roffText(".hidden"); got != `\&.hidden` {
		t.Errorf("roffText: %q", got)
	}
}
