package graphdriver_test

import (
	"archive/tar"
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/thinlayer/thinlayer/deviceset"
	gd "github.com/thinlayer/thinlayer/graphdriver"
	"github.com/thinlayer/thinlayer/loopback"
	"github.com/thinlayer/thinlayer/testutil"
)

// attachSparse gives a test a loop device over a fresh sparse file.
func attachSparse(t *testing.T, size int64) string {
	t.Helper()
	f := filepath.Join(t.TempDir(), "backing")
	must(t, loopback.CreateSparse(f, size))
	d, err := loopback.Attach(f, loopback.Options{})
	must(t, err)
	t.Cleanup(func() { _ = d.Detach() })
	return d.Path
}

func TestDataAndMetadataDevices(t *testing.T) {
	testutil.RequireKernel(t)
	data, meta := attachSparse(t, 2<<30), attachSparse(t, 128<<20)
	d := newDriver(t, t.TempDir(), testOptions("ext4", "dm.datadev="+data, "dm.metadatadev="+meta))
	if statusRow(d, "Data file") != data || statusRow(d, "Metadata file") != meta || statusRow(d, "Data loop file") != "" {
		t.Fatalf("status: %v", d.Status())
	}
	mustCreate(t, d, "a", "")
	writeFile(t, get(t, d, "a")+"/f", "on the user's devices", 0o644, 0, 0)
	put(t, d, "a")
}

func TestThinPoolDevice(t *testing.T) {
	pool := testutil.NewLoopPool(t, testutil.PoolOptions{})
	home := t.TempDir()
	d := newDriver(t, home, testOptions("ext4", "dm.thinpooldev="+pool.Name))
	if statusRow(d, "Pool Name") != pool.Name {
		t.Fatalf("Pool Name = %s", statusRow(d, "Pool Name"))
	}
	mustCreate(t, d, "a", "")
	writeFile(t, get(t, d, "a")+"/f", "in the user's pool", 0o644, 0, 0)
	put(t, d, "a")
	must(t, d.Cleanup())
	if ok, err := pool.Control.Exists(pool.Name); !ok || err != nil {
		t.Fatalf("Cleanup took down the user's pool (exists=%v err=%v)", ok, err)
	}
	d = newDriver(t, home, testOptions("ext4", "dm.thinpooldev="+pool.Name))
	if b, err := os.ReadFile(get(t, d, "a") + "/f"); err != nil || string(b) != "in the user's pool" {
		t.Fatalf("after reopen: %q %v", b, err)
	}
	put(t, d, "a")

	// A pool that already holds someone else's data is not taken over.
	other := testutil.NewLoopPool(t, testutil.PoolOptions{})
	must(t, other.Control.SetTransactionID(other.Name, 0, 1))
	if _, err := gd.Init(t.TempDir(), testOptions("ext4", "dm.thinpooldev="+other.Name), gd.IdentityMapping{}); err == nil ||
		!strings.Contains(err.Error(), "not empty") {
		t.Fatalf("Init on a used pool: %v", err)
	}
}

func TestBaseSizeGrowsOnly(t *testing.T) {
	home := t.TempDir()
	opts := func(size string) []string { return testOptions("ext4", "dm.basesize="+size) }
	d := newDriver(t, home, opts("512MB"))
	mustCreate(t, d, "old", "")
	must(t, d.Cleanup())

	d = newDriver(t, home, opts("1GB"))
	if statusRow(d, "Base Device Size") != "1.074GB" {
		t.Fatalf("Base Device Size = %s after growing to 1GB", statusRow(d, "Base Device Size"))
	}
	mustCreate(t, d, "new", "")
	if size := testutil.FSSize(t, get(t, d, "new")); size < 900<<20 {
		t.Fatalf("a layer of the grown base has a %d-byte filesystem", size)
	}
	put(t, d, "new")
	if size := testutil.FSSize(t, get(t, d, "old")); size > 600<<20 {
		t.Fatalf("a layer from before grew too: %d bytes", size)
	}
	put(t, d, "old")
	must(t, d.Cleanup())

	_, err := gd.Init(home, opts("256MB"), gd.IdentityMapping{})
	if err == nil || !strings.Contains(err.Error(), "only grow") {
		t.Fatalf("Init with a smaller basesize: %v", err)
	}
}

func TestMinFreeSpace(t *testing.T) {
	home := t.TempDir()
	d := newDriver(t, home, []string{"dm.loopdatasize=512MB", "dm.loopmetadatasize=64MB", "dm.basesize=256MB",
		"dm.fs=ext4", "dm.min_free_space=70%"})
	mustCreate(t, d, "a", "")
	f, err := os.Create(get(t, d, "a") + "/big")
	must(t, err)
	chunk := bytes.Repeat([]byte{0xa5}, 1<<20)
	for i := 0; i < 200; i++ {
		_, err = f.Write(chunk)
		must(t, err)
	}
	must(t, f.Sync())
	f.Close()
	put(t, d, "a")
	err = d.Create("b", "a", nil)
	if !errors.Is(err, deviceset.ErrNoSpace) || !strings.Contains(err.Error(), "dm.min_free_space") ||
		!strings.Contains(err.Error(), "free") {
		t.Fatalf("Create in a pool below min_free_space: %v", err)
	}
	if d.Exists("b") {
		t.Fatal("refused layer exists")
	}
}

// A snapshot of a mounted layer sees what was written to it, flushed or not:
// the origin is suspended (its filesystem frozen) around create_snap.
func TestSnapshotOfMountedLayer(t *testing.T) {
	d := newDriver(t, t.TempDir(), testOptions("xfs"))
	mustCreate(t, d, "origin", "")
	root := get(t, d, "origin")
	must(t, os.WriteFile(root+"/unsynced", []byte("still in the page cache"), 0o644))
	mustCreate(t, d, "snap", "origin")
	if b, err := os.ReadFile(get(t, d, "snap") + "/unsynced"); err != nil || string(b) != "still in the page cache" {
		t.Fatalf("snapshot of a mounted layer reads %q %v", b, err)
	}
	must(t, os.WriteFile(root+"/after", []byte("x"), 0o644)) // the origin works on
	put(t, d, "snap")
	put(t, d, "origin")
}

func TestXFSNoSpaceMaxRetries(t *testing.T) {
	d := newDriver(t, t.TempDir(), testOptions("xfs", "dm.xfs_nospace_max_retries=7"))
	mustCreate(t, d, "a", "")
	root := get(t, d, "a")
	defer put(t, d, "a")
	var st unix.Stat_t
	must(t, unix.Stat(root, &st))
	p := fmt.Sprintf("/sys/fs/xfs/dm-%d/error/metadata/ENOSPC/max_retries", unix.Minor(st.Dev))
	if b, err := os.ReadFile(p); err != nil || strings.TrimSpace(string(b)) != "7" {
		t.Fatalf("%s: %q %v", p, b, err)
	}
}

func tarOf(t *testing.T, name string) *bytes.Buffer {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	must(t, tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: 3, Typeflag: tar.TypeReg}))
	_, _ = tw.Write([]byte("bad"))
	must(t, tw.Close())
	return &buf
}

// ApplyDiff refuses a tar that climbs out of the layer, and writes nothing
// outside it. An absolute name is taken from the layer's root, as Moby does.
func TestApplyDiffRejectsEscapes(t *testing.T) {
	home := t.TempDir()
	d := newDriver(t, home, testOptions("ext4"))
	mustCreate(t, d, "a", "")
	for _, name := range []string{"../escaped", "../../escaped", "x/../../escaped"} {
		_, err := d.ApplyDiff("a", "", tarOf(t, name))
		if err == nil || !strings.Contains(err.Error(), "escapes") {
			t.Fatalf("ApplyDiff of %q: %v", name, err)
		}
	}
	_, err := d.ApplyDiff("a", "", tarOf(t, "/../../../escaped"))
	must(t, err)
	if _, err := os.Stat(get(t, d, "a") + "/escaped"); err != nil {
		t.Fatalf("absolute name not applied inside the layer: %v", err)
	}
	put(t, d, "a")
	for _, p := range []string{home + "/mnt/escaped", home + "/escaped", filepath.Dir(home) + "/escaped", "/escaped"} {
		if _, err := os.Lstat(p); !os.IsNotExist(err) {
			t.Fatalf("%s written by a hostile tar", p)
		}
	}
}

// Two drivers on one home would be two writers of one pool: the second Init
// is refused while the first holds the home.
func TestHomeLock(t *testing.T) {
	home := t.TempDir()
	d := newDriver(t, home, testOptions("ext4"))
	_, err := gd.Init(home, testOptions("ext4"), gd.IdentityMapping{})
	if !errors.Is(err, deviceset.ErrHomeLocked) {
		t.Fatalf("second Init on a home in use: %v, want ErrHomeLocked", err)
	}
	must(t, d.Cleanup())
	d2 := newDriver(t, home, testOptions("ext4"))
	must(t, d2.Cleanup())
}
