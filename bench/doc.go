// Package bench measures thinlayer side by side with its peer, Moby
// v24.0.9's cgo devicemapper driver, in one kernel and one run, and against
// the floor: the ioctls and mount calls a Get+Put cannot avoid; and
// thinlayer's containerd snapshotter (Snap* scenarios, no peer) next to
// its graph driver. The
// benchmarks live in this package's tests (make bench); benchtable turns
// their output into the table of docs/benchmarks.md.
//
// It is a module of its own, like ../compat, because the peer needs cgo,
// libdevmapper and Moby's dependency tree; thinlayer itself stays pure Go.
package bench
