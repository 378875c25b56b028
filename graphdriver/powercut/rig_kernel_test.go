package powercut

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/thinlayer/thinlayer/graphdriver/internal/gdtest"
	"github.com/thinlayer/thinlayer/testutil"
	pc "github.com/thinlayer/thinlayer/testutil/powercut"
)

func TestMain(m *testing.M) {
	if home := os.Getenv(envChildHome); home != "" {
		childCreate(home)
	}
	testutil.Main(m)
}

// TestReplayMatchesDevice: the log the kernel kept, replayed to its end,
// is the device it logged, byte for byte; and the image as it stood at
// the mark after an fsync'd file holds the file.
func TestReplayMatchesDevice(t *testing.T) {
	testutil.RequireKernel(t)
	r := pc.NewRig(t)
	want := bytes.Repeat([]byte("power "), 10000)
	f, err := os.Create(filepath.Join(r.Mnt, "file"))
	gdtest.Must(t, err)
	_, err = f.Write(want)
	gdtest.Must(t, err)
	gdtest.Must(t, f.Sync())
	gdtest.Must(t, f.Close())
	syncDir(t, r.Mnt)
	t0 := time.Now()
	r.Mark(t, "synced")
	r.Stop(t)
	l := r.Parse(t)
	at, err := l.Mark("synced")
	gdtest.Must(t, err)
	if len(l.Flushes(0, at)) == 0 {
		t.Fatalf("no flush logged before the mark (%d entries)", len(l.Entries))
	}
	t.Logf("recorded %v", time.Since(t0))
	p := pc.NewReplayer(t, l)
	dir := p.At(t, at)
	t.Logf("replayed %v", time.Since(t0))
	got, err := os.ReadFile(filepath.Join(pc.Mounted(t, dir), "file"))
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("the file at the mark: %d bytes, %v", len(got), err)
	}
	t.Logf("checked %v", time.Since(t0))
	p.At(t, len(l.Entries)-1)
	if !sameData(t, p.Image(), r.DeviceFile()) {
		t.Fatalf("the log replayed to its end differs from the device it logged (%d entries)", len(l.Entries))
	}
	t.Logf("compared %v", time.Since(t0))
	t.Logf("%d entries, %d flush points", len(l.Entries), len(l.Flushes(0, len(l.Entries))))
}

func syncDir(t *testing.T, dir string) {
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY, 0)
	gdtest.Must(t, err)
	defer unix.Close(fd)
	gdtest.Must(t, unix.Fsync(fd))
}

// sameData compares two files chunk by chunk, skipping what is a hole in
// both.
func sameData(t *testing.T, a, b string) bool {
	fa, err := os.Open(a)
	gdtest.Must(t, err)
	defer fa.Close()
	fb, err := os.Open(b)
	gdtest.Must(t, err)
	defer fb.Close()
	ba, bb := make([]byte, 1<<20), make([]byte, 1<<20)
	for off := int64(0); off < pc.ImageSize; off += 1 << 20 {
		da, _ := unix.Seek(int(fa.Fd()), off, unix.SEEK_DATA)
		db, _ := unix.Seek(int(fb.Fd()), off, unix.SEEK_DATA)
		if da >= off+1<<20 && db >= off+1<<20 {
			continue
		}
		na, _ := fa.ReadAt(ba, off)
		nb, _ := fb.ReadAt(bb, off)
		if na != nb || !bytes.Equal(ba[:na], bb[:nb]) {
			t.Logf("first difference in the MiB at %d", off)
			return false
		}
	}
	return true
}
