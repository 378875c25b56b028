package graphdriver_test

import (
	"os"
	"testing"

	"github.com/moby/sys/mountinfo"

	gd "github.com/thinlayer/thinlayer/graphdriver"
	"github.com/thinlayer/thinlayer/graphdriver/internal/gdtest"
	"github.com/thinlayer/thinlayer/testutil"
)

// testOptions keep a test home small: sparse files on the guest's tmpfs.
func testOptions(fs string, extra ...string) []string {
	return append([]string{
		"dm.loopdatasize=3GB", "dm.loopmetadatasize=128MB", "dm.basesize=512MB",
		"dm.fs=" + fs, "dm.min_free_space=1%",
	}, extra...)
}

func newDriver(t testing.TB, home string, opts []string) gd.Driver {
	return gdtest.NewDriver(t, home, opts)
}

func get(t testing.TB, d gd.Driver, id string) string { return gdtest.Get(t, d, id) }
func put(t testing.TB, d gd.Driver, id string)        { gdtest.Put(t, d, id) }
func mustCreate(t testing.TB, d gd.Driver, id, parent string) {
	gdtest.MustCreate(t, d, id, parent)
}

func isMounted(t testing.TB, dir string) bool {
	t.Helper()
	ok, err := mountinfo.Mounted(dir)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	return ok
}

func writeFile(t testing.TB, path, content string, mode os.FileMode, uid, gid int) {
	t.Helper()
	gdtest.WriteFile(t, path, content, mode)
	gdtest.Must(t, os.Lchown(path, uid, gid))
}

// treeOf describes every entry below root (testutil.TreeOf).
func treeOf(t testing.TB, root string) map[string]string { return testutil.TreeOf(t, root) }

func diffTrees(a, b map[string]string) []string { return testutil.DiffTrees(a, b) }
