package fsutil

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/thinlayer/thinlayer/testutil"
)

// skipOrFailKernel skips the test, or fails it when
// THINLAYER_REQUIRE_KERNEL=1.
func skipOrFailKernel(t testing.TB, format string, args ...any) {
	t.Helper()
	testutil.SkipOrFail(t, fmt.Sprintf(format, args...))
}

// toolOrSkip returns the path of an external tool the test needs.
func toolOrSkip(t testing.TB, name, pkg string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err != nil {
		skipOrFailKernel(t, "%s not found (apt-get install -y %s): %v", name, pkg, err)
	}
	return path
}

// rootLoopOrSkip makes sure the test can mount and use loop devices.
func rootLoopOrSkip(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		skipOrFailKernel(t, "mount tests need root")
	}
	if _, err := os.Stat("/dev/loop-control"); err != nil {
		skipOrFailKernel(t, "loop devices unavailable: %v", err)
	}
}

// sparseImage creates a sparse file of size bytes under t.TempDir().
func sparseImage(t testing.TB, name string, size int64) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	return path
}

// testLoop is a loop device attached to an image file for one test.
type testLoop struct {
	Path         string
	Major, Minor uint32
	file         *os.File // the open loop device
	backing      string   // the image file
}

// attachLoopDevice attaches image to a free loop device with
// LOOP_CTL_GET_FREE and LOOP_CONFIGURE, and detaches it in t.Cleanup.
// The device has LO_FLAGS_AUTOCLEAR, so it also goes away once the last
// user closes or unmounts it.
func attachLoopDevice(t testing.TB, image string) *testLoop {
	t.Helper()
	rootLoopOrSkip(t)
	backing, err := os.OpenFile(image, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer backing.Close()
	for range 20 {
		loop, err := tryAttachLoop(backing)
		if errors.Is(err, unix.EBUSY) {
			continue // another process took the free device first
		}
		if err != nil {
			t.Fatalf("attach %s: %v", image, err)
		}
		t.Cleanup(loop.detach)
		return loop
	}
	t.Fatalf("attach %s: no free loop device", image)
	return nil
}

// tryAttachLoop configures the currently free loop device to back onto
// backing.
func tryAttachLoop(backing *os.File) (*testLoop, error) {
	ctl, err := os.OpenFile("/dev/loop-control", os.O_RDWR, 0)
	if err != nil {
		return nil, err
	}
	defer ctl.Close()
	n, err := unix.IoctlRetInt(int(ctl.Fd()), unix.LOOP_CTL_GET_FREE)
	if err != nil {
		return nil, fmt.Errorf("LOOP_CTL_GET_FREE: %w", err)
	}
	path := fmt.Sprintf("/dev/loop%d", n)
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return nil, err
	}
	cfg := unix.LoopConfig{Fd: uint32(backing.Fd())}
	cfg.Info.Flags = unix.LO_FLAGS_AUTOCLEAR
	copy(cfg.Info.File_name[:unix.LO_NAME_SIZE-1], backing.Name())
	if err := unix.IoctlLoopConfigure(int(f.Fd()), &cfg); err != nil {
		f.Close()
		return nil, fmt.Errorf("LOOP_CONFIGURE %s: %w", path, err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		f.Close()
		return nil, err
	}
	return &testLoop{Path: path, Major: unix.Major(st.Rdev), Minor: unix.Minor(st.Rdev), file: f, backing: backing.Name()}, nil
}

// setCapacity makes the loop device pick up a new backing-file size.
func (l *testLoop) setCapacity(t testing.TB) {
	t.Helper()
	if err := unix.IoctlSetInt(int(l.file.Fd()), unix.LOOP_SET_CAPACITY, 0); err != nil {
		t.Fatalf("LOOP_SET_CAPACITY %s: %v", l.Path, err)
	}
}

// detach clears the loop device. ENXIO means autoclear already did it.
func (l *testLoop) detach() {
	_ = unix.IoctlSetInt(int(l.file.Fd()), unix.LOOP_CLR_FD, 0)
	l.file.Close()
}

// mkdirTarget creates an empty mount point under t.TempDir().
func mkdirTarget(t testing.TB, name string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), name)
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// mountForTest mounts with MountLayer and unmounts in t.Cleanup.
func mountForTest(t testing.TB, dev, target, fsType, options string) {
	t.Helper()
	if err := MountLayer(dev, target, fsType, options, ""); err != nil {
		t.Fatalf("MountLayer: %v", err)
	}
	t.Cleanup(func() {
		if err := Unmount(target, unix.MNT_DETACH); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
}

// hasOption reports whether the comma-separated list opts holds opt.
func hasOption(opts, opt string) bool {
	for _, o := range strings.Split(opts, ",") {
		if o == opt {
			return true
		}
	}
	return false
}

// blkidValue returns blkid's value of tag for path, or "" with ok=false
// when blkid is not installed; it is only a cross-check.
func blkidValue(t testing.TB, path, tag string) (string, bool) {
	t.Helper()
	if _, err := exec.LookPath("blkid"); err != nil {
		return "", false
	}
	out, err := exec.Command("blkid", "-p", "-o", "value", "-s", tag, path).Output()
	if err != nil {
		t.Fatalf("blkid %s: %v", path, err)
	}
	return strings.TrimSpace(string(out)), true
}
