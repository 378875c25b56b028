package testutil

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/thinlayer/thinlayer/internal/umlboot"
)

// UML settings, overridable from the environment.
const (
	EnvUMLKernel = umlboot.EnvKernel // path of linux.uml
	EnvUMLMem    = umlboot.EnvMem    // guest memory, e.g. "3G"
)

// GuestTmpDir is the tmpfs that holds scratch files inside the guest.
const GuestTmpDir = umlboot.GuestTmpDir

// Main runs the tests in m where a kernel with dm-thin can be had, booting
// UML when the host's kernel can't, and exits with their status.
func Main(m *testing.M) {
	umlboot.InitIfGuest()
	if InUML() || os.Getenv(EnvNoUML) == "1" || hostOnlyRun() || KernelUsable() == nil {
		os.Exit(m.Run())
	}
	kernel, err := umlboot.Kernel()
	if err == nil && raceEnabled {
		err = errors.New("a -race binary cannot run in UML (ThreadSanitizer needs a 47-bit address space): run kernel tests without -race")
	}
	if err != nil {
		umlUnavailable = err
		fmt.Fprintf(os.Stderr, "testutil: no dm-thin here (%v) and no UML (%v): kernel tests will skip\n", KernelUsable(), err)
		os.Exit(m.Run())
	}
	os.Exit(umlboot.Run(kernel, os.Args[1:], testTimeout()+2*time.Minute))
}

// umlUnavailable says why Main did not boot UML, for RequireKernel's message.
var umlUnavailable error

// hostOnlyRun is true for runs that need no kernel: listing tests, and the
// fuzzing engine with its workers.
func hostOnlyRun() bool {
	for _, a := range os.Args[1:] {
		if strings.HasPrefix(a, "-test.list") || strings.HasPrefix(a, "-test.fuzz") {
			return true
		}
	}
	return false
}

// testTimeout is -test.timeout from our arguments, or go test's default.
func testTimeout() time.Duration {
	for i, a := range os.Args {
		v, ok := strings.CutPrefix(a, "-test.timeout=")
		if !ok && a == "-test.timeout" && i+1 < len(os.Args) {
			v, ok = os.Args[i+1], true
		}
		if d, err := time.ParseDuration(v); ok && err == nil && d > 0 {
			return d
		}
	}
	return 10 * time.Minute
}
