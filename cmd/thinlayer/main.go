// Command thinlayer looks after a devicemapper home: Docker ≤ 24's
// /var/lib/docker/devicemapper, which Docker 25 and later cannot read, or
// one thinlayer made. `thinlayer help` lists the commands; docs/cli.md
// describes them.
package main

import (
	"fmt"
	"os"
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
	if cli.CommandName(args) == "demo" && !uml.InGuest() && cli.KernelUsable() != nil {
		if kernel, err := uml.Kernel(); err == nil {
			fmt.Fprintf(os.Stderr, "thinlayer demo: this kernel has no dm-thin (%v); booting User-Mode Linux (%s)\n", cli.KernelUsable(), kernel)
			return uml.Run(kernel, args, demoTimeout)
		}
	}
	return cli.Main(args, cli.Env{
		Stdin:          os.Stdin,
		Stdout:         os.Stdout,
		Stderr:         os.Stderr,
		StdoutTerminal: term.IsTerminal(int(os.Stdout.Fd())),
		StderrTerminal: term.IsTerminal(int(os.Stderr.Fd())),
	})
}
