//go:build !thinlayer_faults

package faults

// Enabled reports whether the points are compiled in.
const Enabled = false

// Point is a step named for crash tests; without the tag it does nothing.
func Point(string) error { return nil }

// Register records a package's points; without the tag there are none.
func Register(...string) {}

// Points lists the registered points; without the tag there are none.
func Points() []string { return nil }

// SetHook and Arm exist so tests build without the tag; they refuse to run
// (tests check Enabled first, testutil.RequireFaults).
func SetHook(func(point string) error) { panic("faults: built without -tags " + Tag) }

// Arm: see SetHook.
func Arm(string, int, bool) { panic("faults: built without -tags " + Tag) }
