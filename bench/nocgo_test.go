//go:build !cgo

package bench_test

import "testing"

// Without cgo the peer (Moby's driver over libdevmapper) is not built: say
// so rather than measure nothing.
func TestNeedsCgo(t *testing.T) {
	t.Fatal("the bench module needs CGO_ENABLED=1 (and libdevmapper-dev) to build Moby's devicemapper driver")
}
