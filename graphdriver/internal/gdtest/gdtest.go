// Package gdtest holds the kernel-test helpers the graph driver's
// reliability tests share (graphdriver's own and the crash walk's, in
// graphdriver/crashwalk): a driver per test, layer trees, and the checks of
// a home against its pool. Tests only.
package gdtest

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	gd "github.com/thinlayer/thinlayer/graphdriver"
	"github.com/thinlayer/thinlayer/testutil"
)

// WalkOptions keep a test home small and cheap to copy and check: a
// 128 MB ext4 base with a small journal, 16 MB of metadata, no discard.
func WalkOptions(extra ...string) []string {
	return append([]string{"dm.loopdatasize=1GB", "dm.loopmetadatasize=16MB", "dm.basesize=128MB",
		"dm.fs=ext4", "dm.mkfsarg=-Jsize=4", "dm.min_free_space=1%", "dm.blkdiscard=false"}, extra...)
}

// CrashOptions are WalkOptions without deferred removal and deletion.
func CrashOptions(extra ...string) []string {
	return WalkOptions(append([]string{"dm.use_deferred_removal=false", "dm.use_deferred_deletion=false"}, extra...)...)
}

// Must fails t on err.
func Must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// NewDriver opens a driver on home, cleaned up at test end.
func NewDriver(t testing.TB, home string, opts []string) gd.Driver {
	t.Helper()
	testutil.RequireKernel(t)
	d, err := gd.Init(home, opts, gd.IdentityMapping{})
	if err != nil {
		t.Fatalf("Init %s: %v", home, err)
	}
	t.Cleanup(func() { _ = d.Cleanup() })
	return d
}

// Get mounts a layer and returns its root.
func Get(t testing.TB, d gd.Driver, id string) string {
	t.Helper()
	root, err := d.Get(id, "")
	if err != nil {
		t.Fatalf("Get %s: %v", id, err)
	}
	return root
}

// Put releases a Get.
func Put(t testing.TB, d gd.Driver, id string) {
	t.Helper()
	if err := d.Put(id); err != nil {
		t.Fatalf("Put %s: %v", id, err)
	}
}

// MustCreate creates id on parent.
func MustCreate(t testing.TB, d gd.Driver, id, parent string) {
	t.Helper()
	if err := d.Create(id, parent, nil); err != nil {
		t.Fatalf("Create %s on %q: %v", id, parent, err)
	}
}

// WriteFile writes a file (and its directories) with mode and owner.
func WriteFile(t testing.TB, path, content string, mode os.FileMode) {
	t.Helper()
	Must(t, os.MkdirAll(filepath.Dir(path), 0o755))
	Must(t, os.WriteFile(path, []byte(content), mode))
	Must(t, os.Chmod(path, mode))
}

// StatusRow is one row of the driver's Status.
func StatusRow(d gd.Driver, name string) string {
	for _, r := range d.Status() {
		if r[0] == name {
			return r[1]
		}
	}
	return ""
}

// TreeOfLayer is TreeOf the mounted layer id (Get, then Put).
func TreeOfLayer(t testing.TB, d gd.Driver, id string) (map[string]string, error) {
	t.Helper()
	root, err := d.Get(id, "")
	if err != nil {
		return nil, fmt.Errorf("get %s: %w", id, err)
	}
	defer Put(t, d, id)
	return testutil.TreeOf(t, root), nil
}
