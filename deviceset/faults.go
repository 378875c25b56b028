package deviceset

import (
	"fmt"
	"os"
	"strings"
	"sync"
	"syscall"
)

// Fault injection for crash tests. Each mutating step calls faultPoint with
// a name like "create.message"; a test can make it fail there, or kill the
// process there (a re-exec'd child, so no deferred cleanup runs). Disarmed,
// a point costs one nil check.

// EnvFault arms a point in a child process: "point=fail" or "point=kill".
const EnvFault = "THINLAYER_FAULT"

// ErrInjected is returned by an armed point set to fail.
var ErrInjected = fmt.Errorf("injected fault")

var (
	faultMu   sync.Mutex
	faultHook func(point string) error
)

func init() {
	if spec := os.Getenv(EnvFault); spec != "" {
		point, action, _ := strings.Cut(spec, "=")
		SetFaultHook(func(p string) error {
			if p != point {
				return nil
			}
			if action == "kill" {
				_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
				select {} // SIGKILL is not delivered synchronously
			}
			return fmt.Errorf("%w at %s", ErrInjected, p)
		})
	}
}

// SetFaultHook installs f to be called at every fault point (nil removes it).
// For tests only.
func SetFaultHook(f func(point string) error) {
	faultMu.Lock()
	faultHook = f
	faultMu.Unlock()
}

func faultPoint(name string) error {
	faultMu.Lock()
	f := faultHook
	faultMu.Unlock()
	if f == nil {
		return nil
	}
	return f(name)
}
