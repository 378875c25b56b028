package loopback

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"

	"golang.org/x/sys/unix"
)

// These tests run in the host's kernel: loop devices need no
// device-mapper, and testutil (which boots UML) imports this package.
func TestMain(m *testing.M) {
	os.Exit(m.Run())
}

func TestCreateSparse(t *testing.T) {
	path := filepath.Join(t.TempDir(), "f")
	if err := CreateSparse(path, 64*mib); err != nil {
		t.Fatal(err)
	}
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	if st.Size != 64*mib || st.Mode&0o777 != 0o600 || st.Blocks > 8 {
		t.Fatalf("size %d mode %o blocks %d", st.Size, st.Mode&0o777, st.Blocks)
	}
	if err := os.WriteFile(path, []byte("keep"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := CreateSparse(path, 2*mib); err != nil {
		t.Fatal(err)
	}
	if b, _ := readFileAt(path, 0, 4); string(b) != "keep" {
		t.Fatalf("CreateSparse on existing file lost data: %q", b)
	}
}

func TestAttachWriteRead(t *testing.T) {
	requireRoot(t)
	file := sparseFile(t, 8*mib)
	d := attach(t, file, Options{})
	if d.Path != "/dev/loop"+strconv.Itoa(d.Number) || d.BackingFile != file {
		t.Fatalf("device %+v", d)
	}
	if got := sysfs(t, d, "loop/backing_file"); got != file {
		t.Fatalf("sysfs backing_file %q, want %q", got, file)
	}
	if size, err := d.Size(); err != nil || size != 8*mib {
		t.Fatalf("Size() = %d, %v", size, err)
	}
	checkRoundTrip(t, d, file, 3*mib, 1)
}

func TestFindByFileMatchesInode(t *testing.T) {
	requireRoot(t)
	file := sparseFile(t, 4*mib)
	d := attach(t, file, Options{})
	f, err := FindByFile(file)
	if err != nil || f.Number != d.Number || f.Path != d.Path || f.BackingFile != file {
		t.Fatalf("FindByFile = %+v, %v; attached %+v", f, err, d)
	}
	old := file + ".old"
	if err := os.Rename(file, old); err != nil {
		t.Fatal(err)
	}
	if err := CreateSparse(file, 4*mib); err != nil {
		t.Fatal(err)
	}
	if f, err := FindByFile(file); !errors.Is(err, ErrNotFound) {
		t.Fatalf("replacement file matched: %+v, %v", f, err)
	}
	if f, err := FindByFile(old); err != nil || f.Number != d.Number || f.BackingFile != old {
		t.Fatalf("FindByFile(renamed) = %+v, %v", f, err)
	}
	if _, err := FindByFile(file + ".missing"); !errors.Is(err, unix.ENOENT) {
		t.Fatalf("missing file: %v", err)
	}
}

func TestSetCapacity(t *testing.T) {
	requireRoot(t)
	file := sparseFile(t, 4*mib)
	d := attach(t, file, Options{})
	if err := CreateSparse(file, 16*mib); err != nil {
		t.Fatal(err)
	}
	if size, err := d.Size(); err != nil || size != 4*mib {
		t.Fatalf("before SetCapacity: Size() = %d, %v", size, err)
	}
	if err := d.SetCapacity(); err != nil {
		t.Fatal(err)
	}
	if size, err := d.Size(); err != nil || size != 16*mib {
		t.Fatalf("after SetCapacity: Size() = %d, %v", size, err)
	}
	checkRoundTrip(t, d, file, 15*mib, 7)
}

func TestDetach(t *testing.T) {
	requireRoot(t)
	file := sparseFile(t, 4*mib)
	d := attach(t, file, Options{})
	if err := d.Detach(); err != nil {
		t.Fatal(err)
	}
	eventually(t, "FindByFile after Detach gives ErrNotFound", notFound(file))
	missing := filepath.Join(t.TempDir(), "loop99")
	if err := Detach(missing); !errors.Is(err, unix.ENOENT) || !strings.Contains(err.Error(), missing) {
		t.Fatalf("Detach(%s): %v", missing, err)
	}
	d2 := attach(t, file, Options{})
	if err := Detach(d2.Path); err != nil {
		t.Fatal(err)
	}
	eventually(t, "FindByFile after Detach(path) gives ErrNotFound", notFound(file))
}

func TestReadOnly(t *testing.T) {
	requireRoot(t)
	file := sparseFile(t, 4*mib)
	d := attach(t, file, Options{ReadOnly: true})
	if ro := sysfs(t, d, "ro"); ro != "1" {
		t.Fatalf("sysfs ro = %q", ro)
	}
	err := writeDevice(d.Path, 0, pattern(3, 4096))
	if !errors.Is(err, unix.EPERM) && !errors.Is(err, unix.EROFS) && !errors.Is(err, unix.EACCES) {
		t.Fatalf("write to read-only device: %v", err)
	}
	if got, _ := readFileAt(file, 0, 4096); !bytes.Equal(got, make([]byte, 4096)) {
		t.Fatal("read-only device modified its backing file")
	}
}

func TestConcurrentAttach(t *testing.T) {
	requireRoot(t)
	for i := range 20 {
		files := [2]string{sparseFile(t, 2*mib), sparseFile(t, 2*mib)}
		detachOnCleanup(t, files[0])
		detachOnCleanup(t, files[1])
		var devs [2]*Device
		var errs [2]error
		var wg sync.WaitGroup
		for j := range 2 {
			wg.Go(func() { devs[j], errs[j] = Attach(files[j], Options{}) })
		}
		wg.Wait()
		for j := range 2 {
			if errs[j] != nil {
				t.Fatalf("pair %d: %v", i, errs[j])
			}
		}
		if devs[0].Number == devs[1].Number {
			t.Fatalf("pair %d: both got %s", i, devs[0].Path)
		}
		for j := range 2 {
			checkRoundTrip(t, devs[j], files[j], 1*mib, byte(10*i+j))
			if err := devs[j].Detach(); err != nil {
				t.Fatal(err)
			}
		}
	}
}

func TestAutoClear(t *testing.T) {
	requireRoot(t)
	file := sparseFile(t, 4*mib)
	d := attach(t, file, Options{AutoClear: true})
	checkRoundTrip(t, d, file, 0, 5)
	if flags := sysfs(t, d, "loop/autoclear"); flags != "1" {
		t.Fatalf("sysfs autoclear = %q", flags)
	}
	extra, err := os.Open(d.Path)
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	if f, err := FindByFile(file); err != nil || f.Number != d.Number {
		t.Fatalf("detached while still open: %+v, %v", f, err)
	}
	if err := extra.Close(); err != nil {
		t.Fatal(err)
	}
	eventually(t, "autoclear detaches after last close", notFound(file))
}

func TestDirectIO(t *testing.T) {
	requireRoot(t)
	file := sparseFile(t, 4*mib)
	d := attach(t, file, Options{DirectIO: true})
	if dio := sysfs(t, d, "loop/dio"); dio != map[bool]string{true: "1", false: "0"}[d.DirectIO] {
		t.Fatalf("Device.DirectIO = %v, sysfs dio = %s", d.DirectIO, dio)
	}
	t.Logf("direct I/O on %s: %v", filepath.Dir(file), d.DirectIO)
	checkRoundTrip(t, d, file, 2*mib, 9)
}

func TestBlockSize(t *testing.T) {
	requireRoot(t)
	file := sparseFile(t, 4*mib)
	d := attach(t, file, Options{BlockSize: 4096})
	if bs := sysfs(t, d, "queue/logical_block_size"); bs != "4096" {
		t.Fatalf("logical_block_size = %s", bs)
	}
	checkRoundTrip(t, d, file, 1*mib, 11)
	if _, err := Attach(file, Options{BlockSize: 1000}); !errors.Is(err, unix.EINVAL) {
		t.Fatalf("block size 1000: %v", err)
	}
}

func TestAttachErrors(t *testing.T) {
	requireRoot(t)
	missing := filepath.Join(t.TempDir(), "missing")
	if _, err := Attach(missing, Options{}); !errors.Is(err, unix.ENOENT) || !strings.Contains(err.Error(), missing) {
		t.Fatalf("missing file: %v", err)
	}
	if _, err := Attach(t.TempDir(), Options{}); !errors.Is(err, unix.EISDIR) {
		t.Fatalf("directory: %v", err)
	}
	if _, err := Attach(t.TempDir(), Options{ReadOnly: true}); !errors.Is(err, unix.EINVAL) {
		t.Fatalf("directory, read-only: %v", err)
	}
}

func BenchmarkAttachDetach(b *testing.B) {
	requireRoot(b)
	file := sparseFile(b, 4*mib)
	for b.Loop() {
		d, err := Attach(file, Options{})
		if err != nil {
			b.Fatal(err)
		}
		if err := d.Detach(); err != nil {
			b.Fatal(err)
		}
	}
}

func TestBindBusyDevice(t *testing.T) {
	requireRoot(t)
	d := attach(t, sparseFile(t, 4*mib), Options{})
	loop, err := os.OpenFile(d.Path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer loop.Close()
	other, err := os.OpenFile(sparseFile(t, 4*mib), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	err = bind(loop, other, Options{})
	if !errors.Is(err, unix.EBUSY) || !strings.Contains(err.Error(), d.Path) {
		t.Fatalf("binding an already bound device: %v", err)
	}
}

// TestBindLegacy covers the LOOP_SET_FD + LOOP_SET_STATUS64 path used on
// kernels without LOOP_CONFIGURE.
func TestBindLegacy(t *testing.T) {
	requireRoot(t)
	file := sparseFile(t, 4*mib)
	backing, err := os.OpenFile(file, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer backing.Close()
	ctl, err := os.OpenFile("/dev/loop-control", os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer ctl.Close()
	opts := Options{AutoClear: true, BlockSize: 4096}
	n, err := unix.IoctlRetInt(int(ctl.Fd()), unix.LOOP_CTL_GET_FREE)
	if err != nil {
		t.Fatal(err)
	}
	path, err := deviceNode(n)
	if err != nil {
		t.Fatal(err)
	}
	loop, err := openLoop(path, false)
	if err != nil {
		t.Fatal(err)
	}
	defer loop.Close() // autoclear: closing detaches
	if err := bindLegacy(loop, backing, opts); err != nil {
		t.Fatal(err)
	}
	d := &Device{Path: path, Number: n}
	if got := sysfs(t, d, "loop/autoclear") + sysfs(t, d, "queue/logical_block_size"); got != "14096" {
		t.Fatalf("autoclear+block size = %s", got)
	}
	checkRoundTrip(t, d, file, 0, 13)
	loop.Close()
	eventually(t, "autoclear after legacy bind", notFound(file))
}
