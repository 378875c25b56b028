package graphdriver_test

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/thinlayer/thinlayer/deviceset"
	dm "github.com/thinlayer/thinlayer/devmapper"
	gd "github.com/thinlayer/thinlayer/graphdriver"
	"github.com/thinlayer/thinlayer/graphdriver/internal/gdtest"
)

// fullPoolOptions: a 512 MB base over a 192 MB pool, so one layer can
// fill it; min_free_space off, to fill it for real.
func fullPoolOptions(fs string, extra ...string) []string {
	return append([]string{"dm.loopdatasize=192MB", "dm.loopmetadatasize=16MB", "dm.basesize=512MB",
		"dm.fs=" + fs, "dm.min_free_space=0%"}, extra...)
}

func poolStatus(t *testing.T, d gd.Driver) dm.ThinPoolStatus {
	t.Helper()
	c, err := dm.Open()
	must(t, err)
	defer c.Close()
	st, err := c.PoolStatus(statusRow(d, "Pool Name"), false)
	must(t, err)
	return st
}

// fill writes into dir until a write or fsync fails, or limit bytes went
// in; it returns the error.
func fill(t *testing.T, dir string, limit int) error {
	t.Helper()
	f, err := os.Create(filepath.Join(dir, "big"))
	must(t, err)
	defer f.Close()
	chunk := bytes.Repeat([]byte{0x5a}, 1<<20)
	for n := 0; n < limit; n += len(chunk) {
		if _, err := f.Write(chunk); err != nil {
			return err
		}
		if n%(16<<20) == 0 {
			if err := f.Sync(); err != nil {
				return err
			}
		}
	}
	return f.Sync()
}

// syncfs writes the filesystem's log; the errors of the writes that
// failed for space are not this call's concern.
func syncfs(dir string) {
	if f, err := os.Open(dir); err == nil {
		_ = unix.Syncfs(int(f.Fd()))
		f.Close()
	}
}

// fitrim is fstrim: the filesystem discards its free blocks, and the
// thin pool gets them back.
func fitrim(t *testing.T, dir string) {
	f, err := os.Open(dir)
	must(t, err)
	defer f.Close()
	rng := struct{ start, len, minlen uint64 }{0, ^uint64(0), 0}
	const fiTrim = 0xc0185879 // _IOWR('X', 121, struct fstrim_range)
	if _, _, e := unix.Syscall(unix.SYS_IOCTL, f.Fd(), fiTrim, uintptr(unsafe.Pointer(&rng))); e != 0 {
		t.Fatalf("FITRIM %s: %v", dir, e)
	}
}

// A layer that writes more than the pool holds: the writer gets ENOSPC at
// once (the pool errors writes it cannot place rather than queueing them),
// the pool does not fail, another layer stays readable, and once space is
// given back (the file deleted and trimmed, or the layer removed, which
// discards it) work goes on. XFS hands the pool's ENOSPC to fsync; ext4
// aborts its journal and says EIO there, but a direct write (no journal
// in between) shows the ENOSPC.
func TestPoolRunsOutOfDataSpace(t *testing.T) {
	for _, fs := range []string{"xfs", "ext4"} {
		t.Run(fs, func(t *testing.T) { testPoolRunsOut(t, fs) })
	}
}

func testPoolRunsOut(t *testing.T, fs string) {
	home := t.TempDir()
	d := newDriver(t, home, fullPoolOptions(fs, "dm.xfs_nospace_max_retries=0"))
	mustCreate(t, d, "other", "")
	want := bytes.Repeat([]byte("other layer "), 100000)
	must(t, os.WriteFile(get(t, d, "other")+"/data", want, 0o644))
	put(t, d, "other")
	mustCreate(t, d, "big", "")
	root := get(t, d, "big")
	if fs == "xfs" {
		checkXFSRetries(t, root, "0")
	}

	start := time.Now()
	err := fill(t, root, 400<<20)
	if fs == "ext4" && errors.Is(err, unix.EIO) {
		err = directWrite(root+"/direct", 64<<20)
	}
	if !errors.Is(err, unix.ENOSPC) {
		t.Fatalf("writing past the pool's end: %v, want ENOSPC", err)
	}
	t.Logf("%s: ENOSPC after %v", fs, time.Since(start))
	if st := poolStatus(t, d); st.Mode != dm.PoolModeOutOfDataSpace || st.NeedsCheck {
		t.Fatalf("pool after running out: mode %v, needs_check %v", st.Mode, st.NeedsCheck)
	}
	if b, err := os.ReadFile(get(t, d, "other") + "/data"); err != nil || !bytes.Equal(b, want) {
		t.Fatalf("other layer while the pool is full: %d bytes, %v", len(b), err)
	}
	put(t, d, "other")
	if fs == "xfs" {
		must(t, os.Remove(root+"/big"))
		// XFS frees an unlinked file's blocks in the background, and
		// trims none still busy in its log: trim until the pool has room.
		eventually(t, "pool writable after fstrim", 20*time.Second, func() bool {
			syncfs(root)
			fitrim(t, root)
			return poolStatus(t, d).Mode == dm.PoolModeReadWrite
		})
		must(t, fill(t, root, 32<<20))
		put(t, d, "big")
	} else {
		put(t, d, "big")
		must(t, d.Remove("big"))
		eventually(t, "pool writable after the remove", 10*time.Second, func() bool { return poolStatus(t, d).Mode == dm.PoolModeReadWrite })
	}
	mustCreate(t, d, "after", "other")
	must(t, fill(t, get(t, d, "after"), 32<<20))
	put(t, d, "after")
	must(t, d.Cleanup())
	gdtest.ThinCheck(t, filepath.Join(home, "devicemapper", "metadata"))
}

// checkXFSRetries: dm.xfs_nospace_max_retries reached the mounted layer.
// Without it XFS retries a metadata write that hits a full pool for ever.
func checkXFSRetries(t *testing.T, root, want string) {
	var st unix.Stat_t
	must(t, unix.Stat(root, &st))
	p := fmt.Sprintf("/sys/fs/xfs/dm-%d/error/metadata/ENOSPC/max_retries", unix.Minor(st.Dev))
	if b, err := os.ReadFile(p); err != nil || strings.TrimSpace(string(b)) != want {
		t.Fatalf("%s: %q %v, want %s", p, b, err, want)
	}
}

// directWrite writes n bytes with O_DIRECT and returns the first error.
func directWrite(path string, n int) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|unix.O_DIRECT, 0o644)
	if err != nil {
		return err
	}
	defer f.Close()
	buf := bytes.Repeat([]byte{0xa5}, 1<<20) // page-aligned: a fresh 1 MiB allocation
	for done := 0; done < n; done += len(buf) {
		if _, err := f.Write(buf); err != nil {
			return err
		}
	}
	return nil
}

// dm.min_free_space guards metadata space too: with plenty of data space
// left, creates stop with a clear error before the metadata runs out, and
// the pool never reaches a metadata-full (read-only) state. The limit is
// set just below the free share of a fresh pool's small metadata device,
// so that a few creates pass first.
func TestMinFreeSpaceMetadata(t *testing.T) {
	home := t.TempDir()
	opts := []string{"dm.loopdatasize=1GB", "dm.loopmetadatasize=2MB", "dm.basesize=128MB", "dm.fs=ext4", "dm.mkfsarg=-Jsize=4"}
	d := newDriver(t, home, append(opts, "dm.min_free_space=0%"))
	st := poolStatus(t, d)
	freePct := 100 * (st.TotalMetaBlocks - st.UsedMetaBlocks) / st.TotalMetaBlocks
	must(t, d.Cleanup())
	d = newDriver(t, home, append(opts, fmt.Sprintf("dm.min_free_space=%d%%", freePct-1)))
	var err error
	n := 0
	for ; n < 200 && err == nil; n++ {
		// Writes unshare the snapshot's mapping tree from its parent's:
		// that, more than the create itself, is what takes metadata.
		id := "l" + strconv.Itoa(n)
		if err = d.Create(id, "", nil); err == nil {
			must(t, fill(t, get(t, d, id), 4<<20))
			put(t, d, id)
		}
	}
	if n < 2 || !errors.Is(err, deviceset.ErrNoSpace) || !strings.Contains(err.Error(), "metadata space") ||
		!strings.Contains(err.Error(), "dm.min_free_space") {
		t.Fatalf("after %d creates: %v, want a few creates, then a refusal for metadata space", n, err)
	}
	st = poolStatus(t, d)
	if st.Mode != dm.PoolModeReadWrite || st.UsedMetaBlocks >= st.TotalMetaBlocks {
		t.Fatalf("pool %v with %d/%d metadata blocks", st.Mode, st.UsedMetaBlocks, st.TotalMetaBlocks)
	}
	if used := float64(st.UsedDataBlocks) / float64(st.TotalDataBlocks); used > 0.10 {
		t.Fatalf("data %.0f%% used: the refusal was not for metadata", used*100)
	}
	if d.Exists("l" + strconv.Itoa(n-1)) {
		t.Fatal("the refused layer exists")
	}
	t.Logf("limit %d%%: refused after %d creates: %v", freePct-1, n-1, err)
}
