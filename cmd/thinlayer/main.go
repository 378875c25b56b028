// Command thinlayer looks after a devicemapper home: Docker ≤ 24's
// /var/lib/docker/devicemapper, which Docker 25 and later cannot read, or
// one thinlayer made. `thinlayer help` lists the commands; docs/cli.md
// describes them.
package main

import (
	"fmt"
	"os"
	"slices"
	"time"

	"golang.org/x/term"

	"github.com/thinlayer/thinlayer/cli"
	"github.com/thinlayer/thinlayer/internal/uml"
)

// demoTimeout bounds a demo run inside User-Mode Linux.
const demoTimeout = 10 * time.Minute

func main() {
	uml.InitIfGuest() // never returns when booted as the UML guest's init
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	if cli.CommandName(args) == "demo" && !wantsHelp(args) && !uml.InGuest() && cli.KernelUsable() != nil {
		kernel, err := uml.Kernel()
		if err != nil {
			fmt.Fprintf(os.Stderr, "thinlayer demo: %v, and no User-Mode Linux to boot instead: %v\n  what to do: run `make demo`, which installs it\n", cli.KernelUsable(), err)
			return cli.ExitProblems
		}
		fmt.Fprintf(os.Stderr, "thinlayer demo: %v; booting User-Mode Linux (%s)\n", cli.KernelUsable(), kernel)
		return uml.Run(kernel, args, demoTimeout)
	}
	return cli.Main(args, cli.Env{
		Stdin:          os.Stdin,
		Stdout:         os.Stdout,
		Stderr:         os.Stderr,
		StdoutTerminal: term.IsTerminal(int(os.Stdout.Fd())),
		StderrTerminal: term.IsTerminal(int(os.Stderr.Fd())),
	})
}

func wantsHelp(args []string) bool {
	return slices.ContainsFunc(args, func(a string) bool { return a == "-h" || a == "--help" || a == "-help" })
}
