package deviceset

import (
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
)

// Fault injection for crash tests. Each step of a mutating operation calls
// faultPoint with its name (listed in FaultPoints) just before it acts; a
// test can make the step fail there, or kill the process there (a re-exec'd
// child, so no deferred cleanup runs). Disarmed, a point costs a lock and a
// nil check.

// EnvFault arms a point in a child process: "point=fail", "point=kill", or
// with the hit to act on, "point#3=kill" (the first hit when left out).
const EnvFault = "THINLAYER_FAULT"

// ErrInjected is returned by an armed point set to fail.
var ErrInjected = fmt.Errorf("injected fault")

// faultPoints names every point, in the order an operation meets them.
var faultPoints = []string{
	// base device setup (first Init) and its growth (a larger dm.basesize)
	"base.mkfs", "base.initialized", "base.uuid", "basesize.grow",
	// a layer's filesystem grown to a size larger than its parent's
	"grow.start", "grow.fs", "grow.done",
	// snapshot of an active origin
	"snapshot.suspend", "snapshot.resume",
	// create and delete transactions
	"create.intent", "create.message", "tx.metadata", "tx.commit",
	"delete.intent", "delete.discard", "delete.discarding", "delete.message",
	"delete.withdraw", "delete.mark",
	// activation and mounts
	"activate", "mount", "unmount", "deactivate",
	// the graph driver's own steps (FaultPoint)
	"get.prepare", "applydiff.untar", "applydiff.midstream",
}

// FaultPoints returns the names of all fault points.
func FaultPoints() []string { return slices.Clone(faultPoints) }

var (
	faultMu   sync.Mutex
	faultHook func(point string) error
)

func init() {
	if spec := os.Getenv(EnvFault); spec != "" {
		point, action, _ := strings.Cut(spec, "=")
		point, nth, _ := strings.Cut(point, "#")
		n, err := strconv.Atoi(nth)
		if err != nil {
			n = 1
		}
		ArmFault(point, n, action == "kill")
	}
}

// SetFaultHook installs f to be called at every fault point (nil removes it).
// For tests only.
func SetFaultHook(f func(point string) error) {
	faultMu.Lock()
	faultHook = f
	faultMu.Unlock()
}

// ArmFault makes the nth hit (from 1) of point fail with ErrInjected, or
// SIGKILL the process when kill is set. Other points and hits pass. For
// tests only; SetFaultHook(nil) disarms.
func ArmFault(point string, nth int, kill bool) {
	var hits atomic.Int64
	SetFaultHook(func(p string) error {
		if p != point || hits.Add(1) != int64(nth) {
			return nil
		}
		if kill {
			_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
			select {} // SIGKILL is not delivered synchronously
		}
		return fmt.Errorf("%w at %s#%d", ErrInjected, p, nth)
	})
}

// FaultPoint is faultPoint for the layers built on a DeviceSet (the graph
// driver), so their steps can be walked too.
func FaultPoint(name string) error { return faultPoint(name) }

func faultPoint(name string) error {
	faultMu.Lock()
	f := faultHook
	faultMu.Unlock()
	if f == nil {
		return nil
	}
	return f(name)
}
