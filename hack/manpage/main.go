// Command manpage writes the edgelb(8) manual page in roff to stdout,
// generated from edgelb's own flag definitions; `make deb` installs it.
package main

import (
	"flag"
	"fmt"
	"os"
	"regexp"

	"github.com/edgelb/edgelb/cmd/edgelb/cli"
)

func main() {
	version := flag.String("version", "dev", "the package version, for the title line")
	date := flag.String("date", "", "the page's date, YYYY-MM-DD (from SOURCE_DATE_EPOCH in make deb)")
	flag.Parse()
	if !regexp.MustCompile(`^\d{4}-\d{2}-\d{2}$`).MatchString(*date) || flag.NArg() > 0 {
		fmt.Fprintln(os.Stderr, "usage: manpage -version VERSION -date YYYY-MM-DD")
		os.Exit(2)
	}
	if err := cli.WriteManPage(os.Stdout, *version, *date); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
