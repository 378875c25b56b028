//go:build linux && cgo

package compat_test

import (
	"maps"
	"path/filepath"
	"testing"

	"github.com/thinlayer/thinlayer/compat/mobyhome"
	"github.com/thinlayer/thinlayer/testutil"
)

// added is the layer thinlayer adds to a home Moby wrote.
var added = mobyhome.Layer{ID: "thin-added", Parent: "img-delete", Files: map[string]string{
	"etc/hostname":     "written by thinlayer\n",
	"opt/thin/payload": "payload from thinlayer\n",
}}

// TestInteropBothWays: Moby's driver writes a home; thinlayer opens it,
// reads every file of every layer, and adds a layer; Moby's driver opens
// the home again and reads that layer, and its own, back.
func TestInteropBothWays(t *testing.T) {
	testutil.RequireKernel(t)
	for _, fs := range []string{"ext4", "xfs"} {
		t.Run(fs, func(t *testing.T) { testInterop(t, []string{"dm.fs=" + fs}) })
	}
}

func testInterop(t *testing.T, opts []string) {
	spec := append(append([]mobyhome.Layer(nil), chain...), added)
	want, err := mobyhome.Expected(spec)
	if err != nil {
		t.Fatal(err)
	}
	home := filepath.Join(t.TempDir(), "devicemapper")

	moby := openMoby(t, home, opts, false)
	if err := mobyhome.WriteLayers(moby, chain); err != nil {
		t.Fatalf("Moby writes layers: %v", err)
	}
	moby.close(t)

	thin, err := mobyhome.OpenThinlayer(home, opts)
	if err != nil {
		t.Fatalf("thinlayer opens Moby's home: %v", err)
	}
	checkLayers(t, thin, want)
	if err := mobyhome.WriteLayers(thin, []mobyhome.Layer{added}); err != nil {
		t.Fatalf("thinlayer adds a layer: %v", err)
	}
	if err := thin.Cleanup(); err != nil {
		t.Fatalf("thinlayer cleanup: %v", err)
	}
	checkNoLeftovers(t, home)
	layout, _ := mobyhome.Describe(home)
	t.Logf("home after thinlayer:\n%s", layout)

	moby = openMoby(t, home, opts, false)
	checkLayers(t, moby, want)
	got, err := mobyhome.ReadFiles(moby, added.ID)
	if err != nil {
		t.Fatalf("Moby reads thinlayer's layer: %v", err)
	}
	if !maps.Equal(got, want[added.ID]) {
		t.Fatalf("Moby reads thinlayer's layer as\n%s\nwant\n%s", short(got), short(want[added.ID]))
	}
	moby.close(t)
}
