package main

import (
	"fmt"
	"os"
	"slices"
	"time"

	"github.com/thinlayer/thinlayer/cli"
	"github.com/thinlayer/thinlayer/internal/umlboot"
)

// The one piece of the test harness in the shipped command, on purpose:
// `thinlayer demo` on a host without dm-thin boots User-Mode Linux with
// this binary as the guest's init (internal/umlboot), as the tests do.
// Nothing else reaches it: the guest side runs only as PID 1 with the
// harness's job on the kernel command line, and the host side only for
// `demo` when the host kernel cannot do it.

// demoTimeout bounds a demo run inside User-Mode Linux.
const demoTimeout = 10 * time.Minute

// initIfDemoGuest never returns when this process is the guest's init.
func initIfDemoGuest() { umlboot.InitIfGuest() }

// demoInKernel runs the demo inside User-Mode Linux when it is asked for
// and the host kernel cannot run it; ok is false otherwise.
func demoInKernel(args []string) (code int, ok bool) {
	if cli.CommandName(args) != "demo" || wantsHelp(args) || umlboot.InGuest() || cli.KernelUsable() == nil {
		return 0, false
	}
	kernel, err := umlboot.Kernel()
	if err != nil {
		fmt.Fprintf(os.Stderr, "thinlayer demo: %v, and no User-Mode Linux to boot instead: %v\n  what to do: run `make demo`, which installs it\n", cli.KernelUsable(), err)
		return cli.ExitProblems, true
	}
	fmt.Fprintf(os.Stderr, "thinlayer demo: %v; booting User-Mode Linux (%s)\n", cli.KernelUsable(), kernel)
	return umlboot.Run(kernel, args, demoTimeout), true
}

func wantsHelp(args []string) bool {
	return slices.ContainsFunc(args, func(a string) bool { return a == "-h" || a == "--help" || a == "-help" })
}
