// Package compat holds thinlayer's compatibility tests against Moby's own
// devicemapper graphdriver (the cgo one, over libdevmapper): homes written
// by one must open and read back with the other. It is a separate module so
// that thinlayer itself stays pure Go and free of Moby's dependencies. See
// README.md.
package compat
