// Command thinlayer looks after a devicemapper home: Docker ≤ 24's
// /var/lib/docker/devicemapper, which Docker 25 and later cannot read, or
// one thinlayer made. `thinlayer help` lists the commands; docs/cli.md
// describes them.
package main

import (
	"os"

	"golang.org/x/term"

	"github.com/thinlayer/thinlayer/cli"
)

func main() {
	initIfDemoGuest() // never returns when booted as the demo's UML guest init
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	if code, ok := demoInKernel(args); ok {
		return code
	}
	return cli.Main(args, cli.Env{
		Stdin:          os.Stdin,
		Stdout:         os.Stdout,
		Stderr:         os.Stderr,
		StdoutTerminal: term.IsTerminal(int(os.Stdout.Fd())),
		StderrTerminal: term.IsTerminal(int(os.Stderr.Fd())),
	})
}
