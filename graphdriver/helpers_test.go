package graphdriver_test

import (
	"crypto/sha256"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"syscall"
	"testing"

	"github.com/moby/sys/mountinfo"

	gd "github.com/thinlayer/thinlayer/graphdriver"
	"github.com/thinlayer/thinlayer/testutil"
)

// testOptions keep a test home small: sparse files on the guest's tmpfs.
func testOptions(fs string, extra ...string) []string {
	return append([]string{
		"dm.loopdatasize=3GB", "dm.loopmetadatasize=128MB", "dm.basesize=512MB",
		"dm.fs=" + fs, "dm.min_free_space=1%",
	}, extra...)
}

// newDriver opens a driver on home, cleaned up at test end.
func newDriver(t testing.TB, home string, opts []string) gd.Driver {
	t.Helper()
	testutil.RequireKernel(t)
	d, err := gd.Init(home, opts, gd.IdentityMapping{})
	if err != nil {
		t.Fatalf("Init %s: %v", home, err)
	}
	t.Cleanup(func() { _ = d.Cleanup() })
	return d
}

func get(t testing.TB, d gd.Driver, id string) string {
	t.Helper()
	root, err := d.Get(id, "")
	if err != nil {
		t.Fatalf("Get %s: %v", id, err)
	}
	return root
}

func put(t testing.TB, d gd.Driver, id string) {
	t.Helper()
	if err := d.Put(id); err != nil {
		t.Fatalf("Put %s: %v", id, err)
	}
}

func mustCreate(t testing.TB, d gd.Driver, id, parent string) {
	t.Helper()
	if err := d.Create(id, parent, nil); err != nil {
		t.Fatalf("Create %s on %q: %v", id, parent, err)
	}
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
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Lchown(path, uid, gid); err != nil {
		t.Fatal(err)
	}
}

// treeOf describes every entry below root: type, mode, owner, size,
// content digest, link target, and mtime for non-directories.
func treeOf(t testing.TB, root string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(root, func(p string, e fs.DirEntry, err error) error {
		if err != nil || p == root {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		st := fi.Sys().(*syscall.Stat_t)
		desc := fmt.Sprintf("%v uid=%d gid=%d", fi.Mode(), st.Uid, st.Gid)
		switch {
		case fi.Mode().IsRegular():
			b, _ := os.ReadFile(p)
			desc += fmt.Sprintf(" size=%d sha=%x mtime=%d nlink=%d", fi.Size(), sha256.Sum256(b), fi.ModTime().Unix(), st.Nlink)
		case fi.Mode()&os.ModeSymlink != 0:
			target, _ := os.Readlink(p)
			desc += " -> " + target
		case fi.Mode()&os.ModeDevice != 0:
			desc += fmt.Sprintf(" rdev=%d", st.Rdev)
		}
		out[rel] = desc
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func diffTrees(a, b map[string]string) []string {
	var d []string
	for k, v := range a {
		if b[k] != v {
			d = append(d, fmt.Sprintf("%s: %q vs %q", k, v, b[k]))
		}
	}
	for k := range b {
		if _, ok := a[k]; !ok {
			d = append(d, fmt.Sprintf("%s: only in second", k))
		}
	}
	sort.Strings(d)
	return d
}
