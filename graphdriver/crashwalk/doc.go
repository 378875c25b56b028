// Package crashwalk holds the graph driver's crash walk (a test only): every
// mutating operation killed, and failed, at each of its steps, and the home
// checked after each (docs/reliability.md). It is a package of its own so
// that go test runs it beside the graph driver's other kernel tests, in a
// second User-Mode Linux kernel.
package crashwalk
