package graphdriver_test

import (
	"fmt"
	"os"
	"testing"

	dm "github.com/thinlayer/thinlayer/devmapper"
	"github.com/thinlayer/thinlayer/graphdriver/internal/gdtest"
)

// The crash walk itself is in package crashwalk (a second UML kernel runs
// it beside these tests); what stays here is the child side of the tests
// that need a second process, and crash leftovers made by hand.

const (
	envCrashHome = "THINLAYER_CRASH_HOME"
	envCrashOp   = "THINLAYER_CRASH_OP"
)

// crashChild is a child process's side, run from TestMain instead of the
// tests (the name is TestMain's).
func crashChild(home string) {
	lockChild(home, os.Getenv(envCrashOp))
	fmt.Fprintf(os.Stderr, "child: unknown operation %q\n", os.Getenv(envCrashOp))
	os.Exit(3)
}

func walkOptions(extra ...string) []string  { return gdtest.WalkOptions(extra...) }
func crashOptions(extra ...string) []string { return gdtest.CrashOptions(extra...) }

// A device a crash left half-made (created, its table never loaded: a
// kill inside activation) is not taken for an active one: Get makes it
// anew, at Init or later.
func TestHalfMadeDeviceIsRemade(t *testing.T) {
	d := newDriver(t, t.TempDir(), walkOptions())
	mustCreate(t, d, "a", "")
	writeFile(t, get(t, d, "a")+"/f", "whole", 0o644, 0, 0)
	put(t, d, "a")
	m, err := d.GetMetadata("a")
	must(t, err)
	c, err := dm.Open()
	must(t, err)
	defer c.Close()
	// Put left the device active (idle, for a quick next mount): take it
	// down, and make the half-made one in its place.
	must(t, c.Remove(m["DeviceName"], 0))
	_, err = c.Create(m["DeviceName"], "")
	must(t, err)
	if b, err := os.ReadFile(get(t, d, "a") + "/f"); err != nil || string(b) != "whole" {
		t.Fatalf("Get over a half-made device: %q %v", b, err)
	}
	put(t, d, "a")
}
