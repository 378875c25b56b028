//go:build !cgo

package compat_test

import "testing"

// Without cgo Moby's devicemapper driver is not built and the compatibility
// tests cannot run: say so rather than pass with nothing tested.
func TestNeedsCgo(t *testing.T) {
	t.Fatal("the compat module needs CGO_ENABLED=1 (and libdevmapper-dev) to build Moby's devicemapper driver")
}
