package loopback

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

const mib = 1 << 20

func requireRoot(tb testing.TB) {
	tb.Helper()
	if os.Geteuid() != 0 {
		if os.Getenv("THINLAYER_REQUIRE_KERNEL") == "1" {
			tb.Fatal("loop devices need root (THINLAYER_REQUIRE_KERNEL=1 forbids skipping)")
		}
		tb.Skip("loop devices need root")
	}
}

// sparseFile creates a sparse file of size bytes in a fresh temp directory.
func sparseFile(tb testing.TB, size int64) string {
	tb.Helper()
	path := filepath.Join(tb.TempDir(), "backing.img")
	if err := CreateSparse(path, size); err != nil {
		tb.Fatal(err)
	}
	return path
}

// attach attaches file and registers cleanups for the device.
func attach(tb testing.TB, file string, opts Options) *Device {
	tb.Helper()
	detachOnCleanup(tb, file)
	d, err := Attach(file, opts)
	if err != nil {
		tb.Fatalf("Attach(%s, %+v): %v", file, opts, err)
	}
	tb.Cleanup(func() { _ = d.Close() })
	return d
}

// detachOnCleanup registers a cleanup that detaches every device still
// bound to file's current inode. Matching by inode, not by device number,
// keeps it from detaching a number that some other process reused.
func detachOnCleanup(tb testing.TB, file string) {
	tb.Helper()
	var st unix.Stat_t
	if err := unix.Stat(file, &st); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		for _, n := range loopNumbers() {
			if m, _ := match(n, uint64(st.Dev), uint64(st.Ino)); m != nil {
				if err := m.Detach(); err != nil && !errors.Is(err, unix.ENXIO) {
					tb.Errorf("cleanup: %v", err)
				}
			}
		}
	})
}

func pattern(seed byte, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = seed + byte(i%251)
	}
	return b
}

// writeDevice writes data at off through the block device and flushes it.
func writeDevice(path string, off int64, data []byte) error {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	if _, err := f.WriteAt(data, off); err != nil {
		return err
	}
	return f.Sync()
}

func readFileAt(path string, off int64, n int) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b := make([]byte, n)
	_, err = f.ReadAt(b, off)
	return b, err
}

// checkRoundTrip writes through the device and reads back via the file.
func checkRoundTrip(tb testing.TB, d *Device, file string, off int64, seed byte) {
	tb.Helper()
	want := pattern(seed, 64*1024)
	if err := writeDevice(d.Path, off, want); err != nil {
		tb.Fatalf("write %s: %v", d.Path, err)
	}
	got, err := readFileAt(file, off, len(want))
	if err != nil {
		tb.Fatalf("read %s: %v", file, err)
	}
	if !bytes.Equal(got, want) {
		tb.Fatalf("%s at %d: data written via %s not in file", file, off, d.Path)
	}
}

func sysfs(tb testing.TB, d *Device, rel string) string {
	tb.Helper()
	b, err := os.ReadFile("/sys/block/loop" + strconv.Itoa(d.Number) + "/" + rel)
	if err != nil {
		tb.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

// eventually polls cond for up to 5s: the kernel may finish an autoclear or
// deferred detach only when the last opener (possibly udev) closes.
func eventually(tb testing.TB, what string, cond func() bool) {
	tb.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out waiting: %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func notFound(file string) func() bool {
	return func() bool {
		_, err := FindByFile(file)
		return errors.Is(err, ErrNotFound)
	}
}
