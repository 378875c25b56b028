// Package powercut holds the graph driver's power-cut walk (a test only):
// the whole home lives on a filesystem over a device-mapper log-writes
// device, each mutating operation runs once between two marks, and the
// device is then rebuilt as it stood at every flush inside the operation
// — what a power cut there would have left on stable storage — and the
// home opened and checked on each (docs/reliability.md). The crash walk
// (graphdriver/crashwalk) kills the process; the page cache survives
// that, not a power cut.
package powercut
