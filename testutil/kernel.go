// Package testutil gives tests — ours and those of programs that embed
// thinlayer — a real kernel with device-mapper thin provisioning, as root,
// on loop devices.
//
// A test binary calls Main from TestMain. Where the host kernel can do
// dm-thin, tests run directly. Where it can't but User-Mode Linux is
// installed (Debian's user-mode-linux package), the binary boots a UML
// kernel once, re-runs itself inside it as root with the device-mapper and
// loop modules loaded and a tmpfs for scratch files, and passes the output
// and exit status back. Where neither can be had, RequireKernel skips — or
// fails, when THINLAYER_REQUIRE_KERNEL=1 (as CI sets it).
package testutil

import (
	"bytes"
	"fmt"
	"os"
	"sync"
	"testing"

	"github.com/thinlayer/thinlayer/devmapper"
	"github.com/thinlayer/thinlayer/internal/faults"
	"github.com/thinlayer/thinlayer/internal/umlboot"
)

// Environment variables.
const (
	// EnvRequireKernel=1 turns a kernel test's skip into a failure.
	EnvRequireKernel = "THINLAYER_REQUIRE_KERNEL"
	// EnvNoUML=1 stops Main from booting User-Mode Linux.
	EnvNoUML = "THINLAYER_NO_UML"
	// EnvInKernel is set to "uml" inside the UML guest.
	EnvInKernel = umlboot.EnvInKernel
)

var (
	kernelOnce sync.Once
	kernelErr  error
)

// KernelUsable reports why this process cannot use dm-thin, or nil if it can:
// root, a device-mapper control node, and the thin-pool target loaded.
func KernelUsable() error {
	kernelOnce.Do(func() { kernelErr = probeKernel() })
	return kernelErr
}

func probeKernel() error {
	if os.Geteuid() != 0 {
		return fmt.Errorf("not root")
	}
	misc, err := os.ReadFile("/proc/misc")
	if err != nil {
		return fmt.Errorf("read /proc/misc: %w", err)
	}
	if !bytes.Contains(misc, []byte(" device-mapper\n")) {
		return fmt.Errorf("kernel has no device-mapper (not in /proc/misc)")
	}
	c, err := devmapper.Open()
	if err != nil {
		return err
	}
	defer c.Close()
	if _, ok, err := c.HasTarget("thin-pool"); err != nil || !ok {
		return fmt.Errorf("kernel has no thin-pool target (err=%v)", err)
	}
	return nil
}

// InUML reports whether this process runs inside the harness's UML guest.
func InUML() bool { return umlboot.InGuest() }

// RequiresRoot skips (or fails, under THINLAYER_REQUIRE_KERNEL=1) a test
// that needs root.
func RequiresRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		SkipOrFail(t, "test requires root")
	}
}

// RequireKernel skips (or fails, under THINLAYER_REQUIRE_KERNEL=1) a test
// that needs a kernel with device-mapper thin provisioning, saying why.
func RequireKernel(t testing.TB) {
	t.Helper()
	if err := KernelUsable(); err != nil {
		reason := "test requires device-mapper thin provisioning: " + err.Error()
		if umlUnavailable != nil {
			reason += "; no User-Mode Linux either: " + umlUnavailable.Error()
		}
		SkipOrFail(t, reason)
	}
}

// SkipOrFail skips a test that cannot run here, saying why — or fails it
// under THINLAYER_REQUIRE_KERNEL=1 (CI), so CI cannot pass by skipping.
func SkipOrFail(t testing.TB, reason string) {
	t.Helper()
	if os.Getenv(EnvRequireKernel) == "1" {
		t.Fatalf("%s (and %s=1 forbids skipping)", reason, EnvRequireKernel)
	}
	t.Skip(reason)
}

// RequireFaults skips (or fails, under THINLAYER_REQUIRE_KERNEL=1) a test
// that arms crash-test points: they exist only in a build with
// -tags thinlayer_faults (make test sets it).
func RequireFaults(t testing.TB) {
	t.Helper()
	if !faults.Enabled {
		SkipOrFail(t, "test arms fault points: build with -tags "+faults.Tag)
	}
}
