package graphdriver_test

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"

	gd "github.com/thinlayer/thinlayer/graphdriver"
	"github.com/thinlayer/thinlayer/testutil"
)

func TestMain(m *testing.M) {
	if home := os.Getenv(envCrashHome); home != "" {
		crashChild(home)
	}
	testutil.Main(m)
}

// makeBase fills a layer with entries of several kinds, modes and owners.
func makeBase(t *testing.T, root string) {
	writeFile(t, root+"/etc/passwd", "root:x:0:0::/root:/bin/sh\n", 0o644, 0, 0)
	writeFile(t, root+"/etc/shadow", "root:*::0:::::\n", 0o600, 0, 42)
	writeFile(t, root+"/usr/bin/tool", "#!/bin/sh\necho tool\n", 0o4755, 0, 0)
	writeFile(t, root+"/home/user/notes", "user data", 0o640, 1000, 1000)
	must(t, os.Symlink("../usr/bin/tool", root+"/etc/tool-link"))
	must(t, os.Link(root+"/etc/passwd", root+"/etc/passwd.hard"))
	must(t, unix.Mkfifo(root+"/etc/fifo", 0o600))
	must(t, unix.Mknod(root+"/etc/null", unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3))))
	must(t, os.MkdirAll(root+"/var/empty", 0o700))
	must(t, os.Chmod(root+"/var/empty", 0o1777))
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// The lifecycle on xfs with deferred removal and deletion off, and on ext4
// with Moby's defaults (both on).
func TestLayerLifecycle(t *testing.T) {
	t.Run("xfs", func(t *testing.T) {
		testLifecycle(t, testOptions("xfs", "dm.use_deferred_removal=false", "dm.use_deferred_deletion=false"), false)
	})
	t.Run("ext4-deferred", func(t *testing.T) { testLifecycle(t, testOptions("ext4"), true) })
}

func testLifecycle(t *testing.T, opts []string, deferred bool) {
	home := t.TempDir()
	d := newDriver(t, home, opts)
	if d.String() != "devicemapper" {
		t.Fatalf("String() = %q", d.String())
	}
	mustCreate(t, d, "l0", "")
	root := get(t, d, "l0")
	if root != filepath.Join(home, "mnt", "l0", "rootfs") {
		t.Fatalf("Get returned %s", root)
	}
	if id, err := os.ReadFile(filepath.Join(home, "mnt", "l0", "id")); err != nil || string(id) != "l0" {
		t.Fatalf("id file: %q %v", id, err)
	}
	makeBase(t, root)
	put(t, d, "l0")

	// A chain 10 deep; each layer adds a file and changes one of its parent's.
	parent := "l0"
	for i := 1; i <= 10; i++ {
		id := "l" + strconv.Itoa(i)
		mustCreate(t, d, id, parent)
		r := get(t, d, id)
		writeFile(t, r+"/layers/"+id, "layer "+id, 0o644, 0, 0)
		writeFile(t, r+"/etc/passwd", "root:x:0:0::/root:/bin/sh\n# "+id+"\n", 0o644, 0, 0)
		put(t, d, id)
		parent = id
	}
	top := get(t, d, "l10")
	for i := 1; i <= 10; i++ {
		b, err := os.ReadFile(top + "/layers/l" + strconv.Itoa(i))
		if err != nil || string(b) != "layer l"+strconv.Itoa(i) {
			t.Fatalf("l10 does not see l%d's file: %q %v", i, b, err)
		}
	}
	if b, _ := os.ReadFile(top + "/home/user/notes"); string(b) != "user data" {
		t.Fatalf("l10 does not see the base's files: %q", b)
	}
	put(t, d, "l10")

	checkChangesAndDiff(t, d)
	checkNestedGetPut(t, d, home)
	checkRemove(t, d, home, deferred)

	// Restart: every layer and its data come back.
	before := map[string]map[string]string{}
	for _, id := range []string{"l0", "l5", "l10", "copy"} {
		before[id] = treeOf(t, get(t, d, id))
		put(t, d, id)
	}
	must(t, d.Cleanup())
	d2 := newDriver(t, home, opts)
	for id, tree := range before {
		if !d2.Exists(id) {
			t.Fatalf("%s gone after restart", id)
		}
		if diff := diffTrees(tree, treeOf(t, get(t, d2, id))); len(diff) > 0 {
			t.Fatalf("%s changed across restart: %v", id, diff)
		}
		put(t, d2, id)
	}
}

func checkChangesAndDiff(t *testing.T, d gd.Driver) {
	r := get(t, d, "l10")
	must(t, os.Remove(r+"/home/user/notes"))
	must(t, os.Chmod(r+"/etc/shadow", 0o400))
	put(t, d, "l10")

	changes, err := d.Changes("l10", "l9")
	must(t, err)
	got := map[string]gd.ChangeKind{}
	for _, c := range changes {
		got[c.Path] = c.Kind
	}
	// As Moby's: the directories above a change are listed as modified,
	// and a hard link to a rewritten file is modified with it.
	want := map[string]gd.ChangeKind{
		"/layers/l10": gd.ChangeAdd, "/etc/passwd": gd.ChangeModify, "/etc/passwd.hard": gd.ChangeModify,
		"/etc/shadow": gd.ChangeModify, "/home/user/notes": gd.ChangeDelete, "/layers": gd.ChangeModify,
		"/etc": gd.ChangeModify, "/home/user": gd.ChangeModify, "/home": gd.ChangeModify,
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("Changes(l10, l9):\n got %v\nwant %v", got, want)
	}
	size, err := d.DiffSize("l10", "l9")
	must(t, err)
	wantSize := int64(len("layer l10") + len("root:x:0:0::/root:/bin/sh\n# l10\n") + len("root:*::0:::::\n"))
	if size != wantSize {
		t.Fatalf("DiffSize = %d, want %d", size, wantSize)
	}

	// Diff -> ApplyDiff into a sibling gives l10's tree.
	rc, err := d.Diff("l10", "l9")
	must(t, err)
	mustCreate(t, d, "copy", "l9")
	n, err := d.ApplyDiff("copy", "l9", rc)
	must(t, err)
	must(t, rc.Close())
	if n != wantSize {
		t.Fatalf("ApplyDiff wrote %d bytes, want %d", n, wantSize)
	}
	a, b := treeOf(t, get(t, d, "l10")), treeOf(t, get(t, d, "copy"))
	put(t, d, "l10")
	put(t, d, "copy")
	if diff := diffTrees(a, b); len(diff) > 0 {
		t.Fatalf("copy differs from l10 after Diff/ApplyDiff:\n%s", strings.Join(diff, "\n"))
	}

	// The full Diff of a base layer is its whole tree.
	rc, err = d.Diff("l0", "")
	must(t, err)
	mustCreate(t, d, "full", "")
	_, err = d.ApplyDiff("full", "", rc)
	must(t, err)
	rc.Close()
	a, b = treeOf(t, get(t, d, "l0")), treeOf(t, get(t, d, "full"))
	put(t, d, "l0")
	put(t, d, "full")
	if diff := diffTrees(a, b); len(diff) > 0 {
		t.Fatalf("full copy differs from l0:\n%s", strings.Join(diff, "\n"))
	}
}

func checkNestedGetPut(t *testing.T, d gd.Driver, home string) {
	mp := filepath.Join(home, "mnt", "l3")
	p1, p2 := get(t, d, "l3"), get(t, d, "l3")
	if p1 != p2 || !isMounted(t, mp) {
		t.Fatalf("nested Get: %s %s mounted=%v", p1, p2, isMounted(t, mp))
	}
	put(t, d, "l3")
	if !isMounted(t, mp) {
		t.Fatal("unmounted after the first of two Puts")
	}
	put(t, d, "l3")
	if isMounted(t, mp) {
		t.Fatal("still mounted after the last Put")
	}
	if err := d.Put("l3"); err == nil {
		t.Fatal("Put of an unmounted layer succeeded")
	}
}

func checkRemove(t *testing.T, d gd.Driver, home string, deferred bool) {
	mustCreate(t, d, "gone", "l2")
	get(t, d, "gone")
	err := d.Remove("gone")
	if deferred {
		// Marked deleted, counted, and deleted by the worker once the
		// device is closed.
		if err != nil || !d.Exists("gone") || statusRow(d, "Deferred Deleted Device Count") != "1" {
			t.Fatalf("deferred Remove of a mounted layer: %v exists=%v count=%s", err, d.Exists("gone"), statusRow(d, "Deferred Deleted Device Count"))
		}
		put(t, d, "gone")
		for deadline := time.Now().Add(20 * time.Second); d.Exists("gone"); time.Sleep(50 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatal("deferred deletion did not complete after the device was closed")
			}
		}
		if statusRow(d, "Deferred Deleted Device Count") != "0" {
			t.Fatalf("count %s after deletion", statusRow(d, "Deferred Deleted Device Count"))
		}
	} else {
		if !errors.Is(err, unix.EBUSY) || !strings.Contains(err.Error(), "busy") {
			t.Fatalf("Remove of a mounted layer: %v, want EBUSY", err)
		}
		put(t, d, "gone")
		must(t, d.Remove("gone"))
	}
	if d.Exists("gone") {
		t.Fatal("exists after Remove")
	}
	if _, err := os.Stat(filepath.Join(home, "metadata", "gone")); !os.IsNotExist(err) {
		t.Fatalf("DevInfo left after Remove: %v", err)
	}
	must(t, d.Remove("never-existed"))
}

func statusRow(d gd.Driver, name string) string {
	for _, r := range d.Status() {
		if r[0] == name {
			return r[1]
		}
	}
	return ""
}

func TestStatusAndMetadata(t *testing.T) {
	home := t.TempDir()
	d := newDriver(t, home, testOptions("ext4"))
	var names []string
	for _, r := range d.Status() {
		names = append(names, r[0])
	}
	want := []string{"Pool Name", "Pool Blocksize", "Base Device Size", "Backing Filesystem",
		"Udev Sync Supported", "Data file", "Metadata file", "Data loop file", "Metadata loop file",
		"Data Space Used", "Data Space Total", "Data Space Available", "Metadata Space Used",
		"Metadata Space Total", "Metadata Space Available", "Thin Pool Minimum Free Space",
		"Deferred Removal Enabled", "Deferred Deletion Enabled", "Deferred Deleted Device Count",
		"Idle Active Device Count", "Library Version"}
	if !reflect.DeepEqual(names, want) {
		t.Fatalf("Status rows:\n got %v\nwant %v", names, want)
	}
	rows := map[string]string{}
	for _, r := range d.Status() {
		rows[r[0]] = r[1]
	}
	if rows["Backing Filesystem"] != "ext4" || rows["Base Device Size"] != "536.9MB" || rows["Pool Blocksize"] != "65.54kB" ||
		rows["Data loop file"] != filepath.Join(home, "devicemapper", "data") {
		t.Fatalf("Status values: %v", rows)
	}
	mustCreate(t, d, "a", "")
	must(t, d.Create("b", "a", &gd.CreateOpts{StorageOpt: map[string]string{"size": "1GB"}}))
	m, err := d.GetMetadata("b")
	must(t, err)
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	if !reflect.DeepEqual(keys, []string{"DeviceId", "DeviceName", "DeviceSize"}) || m["DeviceSize"] != "1073741824" ||
		!strings.HasSuffix(m["DeviceName"], "-b") || !strings.HasPrefix(m["DeviceName"], "docker-") {
		t.Fatalf("GetMetadata(b) = %v", m)
	}
	// The grown layer's filesystem is really larger.
	var st unix.Statfs_t
	must(t, unix.Statfs(get(t, d, "b"), &st))
	put(t, d, "b")
	if total := st.Blocks * uint64(st.Bsize); total < 800<<20 {
		t.Fatalf("layer b created with size=1GB has a %d-byte filesystem", total)
	}
}

func TestInitRejectsBadOptions(t *testing.T) {
	for _, opt := range []string{"dm.nosuch=1", "dm.basesize=lots", "dm.min_free_space=150%", "dm.fs=ntfs"} {
		_, err := gd.Init(t.TempDir(), []string{opt}, gd.IdentityMapping{})
		name, _, _ := strings.Cut(opt, "=")
		if err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("Init with %s: %v, want an error naming %s", opt, err, name)
		}
	}
}

func TestInvalidIDs(t *testing.T) {
	home := t.TempDir()
	d := newDriver(t, home, testOptions("ext4"))
	for _, id := range []string{"", ".", "..", "a/b", "a\x00b", strings.Repeat("x", 256)} {
		if err := d.Create(id, "", nil); !errors.Is(err, gd.ErrInvalidID) {
			t.Errorf("Create(%q): %v, want ErrInvalidID", id, err)
		}
	}
	if err := d.Create("x", "nosuchparent", nil); err == nil {
		t.Error("Create on an unknown parent succeeded")
	}
	mustCreate(t, d, "x", "")
	if err := d.Create("x", "", nil); err == nil {
		t.Error("Create of an existing id succeeded")
	}
	if err := d.Create("y", "y", nil); err == nil {
		t.Error("Create with parent == id succeeded")
	}
	var _ io.Reader
}

// With udevd running the /dev/mapper links are udev's. The driver hands
// udev its events with the flags that spare a layer device the disk rules,
// but waits for none: it mounts the kernel's own /dev/dm-N node.
func TestLifecycleUnderUdev(t *testing.T) {
	testutil.RequireKernel(t)
	testutil.StartUdevd(t)
	home := t.TempDir()
	d := newDriver(t, home, testOptions("ext4"))
	if statusRow(d, "Udev Sync Supported") != "true" {
		t.Fatalf("Udev Sync Supported = %s with udevd running", statusRow(d, "Udev Sync Supported"))
	}
	mustCreate(t, d, "u1", "")
	root := get(t, d, "u1")
	writeFile(t, root+"/f", "under udev", 0o644, 0, 0)
	m, err := d.GetMetadata("u1")
	must(t, err)
	info, err := deviceInfo(t, d, "u1")
	must(t, err)
	if src := mountSource(t, filepath.Dir(root)); src != fmt.Sprintf("/dev/dm-%d", info.Minor) {
		t.Fatalf("u1 mounted from %q, want the kernel's node /dev/dm-%d", src, info.Minor)
	}
	link := "/dev/mapper/" + m["DeviceName"]
	eventually(t, "udev's link "+link, 30*time.Second, func() bool {
		l, err := os.Readlink(link)
		return err == nil && l == fmt.Sprintf("../dm-%d", info.Minor)
	})
	put(t, d, "u1")
	mustCreate(t, d, "u2", "u1")
	if b, err := os.ReadFile(get(t, d, "u2") + "/f"); err != nil || string(b) != "under udev" {
		t.Fatalf("snapshot reads %q %v", b, err)
	}
	put(t, d, "u2")
	must(t, d.Remove("u2"))
	must(t, d.Remove("u1"))
	eventually(t, "udev removing "+link, 30*time.Second, func() bool {
		_, err := os.Lstat(link)
		return os.IsNotExist(err)
	})
}

// mountSource is the device mounted on dir, as /proc/self/mountinfo says.
func mountSource(t *testing.T, dir string) string {
	t.Helper()
	ms, err := mountinfo.GetMounts(mountinfo.SingleEntryFilter(dir))
	must(t, err)
	if len(ms) != 1 {
		t.Fatalf("%d mounts on %s", len(ms), dir)
	}
	return ms[0].Source
}
