package devmapper_test

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"

	dm "github.com/thinlayer/thinlayer/devmapper"
	"github.com/thinlayer/thinlayer/testutil"
)

// With udevd running, Open picks udev sync: udev's rules make and remove the
// /dev/mapper links and complete our cookies, and our calls return only then.
func TestUdevSync(t *testing.T) {
	testutil.RequireKernel(t)
	testutil.StartUdevd(t)
	c := open(t)
	if c.UdevMode() != dm.UdevSync {
		t.Fatalf("udev mode %v with udevd running", c.UdevMode())
	}
	name := fmt.Sprintf("tltest-%d-udev", os.Getpid())
	info, err := c.CreateAndLoad(name, "", []dm.TableLine{dm.Line(0, 2048, dm.ErrorTarget{})}, 0)
	if err != nil {
		t.Fatal(err)
	}
	target, err := filepath.EvalSymlinks(info.Path())
	if err != nil {
		t.Fatalf("udev made no node for %s by the time resume returned: %v", name, err)
	}
	if want := fmt.Sprintf("/dev/dm-%d", info.Minor); target != want {
		t.Fatalf("%s -> %s, want %s", info.Path(), target, want)
	}
	if err := c.Remove(name, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(info.Path()); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("udev left %s after remove returned: %v", info.Path(), err)
	}
}

// Without udev, we make and remove the nodes ourselves.
func TestNoUdevNodes(t *testing.T) {
	testutil.RequireKernel(t)
	c, err := dm.OpenWith(dm.Options{Udev: dm.UdevOff})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	name := fmt.Sprintf("tltest-%d-nodes", os.Getpid())
	info, err := c.CreateAndLoad(name, "", []dm.TableLine{dm.Line(0, 2048, dm.ErrorTarget{})}, 0)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(info.Path())
	if err != nil || fi.Mode()&os.ModeDevice == 0 {
		t.Fatalf("node %s: %v %v", info.Path(), fi, err)
	}
	if err := c.Remove(name, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(info.Path()); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("node left after remove: %v", err)
	}
}

// A node left with the wrong device number (its device went away behind our
// back) is replaced by Create; closing a Control twice is harmless.
func TestNoUdevStaleNode(t *testing.T) {
	testutil.RequireKernel(t)
	c, err := dm.OpenWith(dm.Options{Udev: dm.UdevOff})
	if err != nil {
		t.Fatal(err)
	}
	name := fmt.Sprintf("tltest-%d-stale", os.Getpid())
	if err := os.MkdirAll(dm.MapperDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mknod(dm.DevicePath(name), unix.S_IFBLK|0o600, int(unix.Mkdev(1, 3))); err != nil {
		t.Fatal(err)
	}
	info, err := c.CreateAndLoad(name, "", []dm.TableLine{dm.Line(0, 2048, dm.ErrorTarget{})}, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Remove(name, 0)
	var st unix.Stat_t
	if err := unix.Stat(info.Path(), &st); err != nil || uint64(st.Rdev) != info.Dev() {
		t.Fatalf("node %s: rdev %#x err %v, want %#x", info.Path(), st.Rdev, err, info.Dev())
	}
	if err := c.EnsureNode(info); err != nil {
		t.Fatal(err)
	}
	if err := c.Remove(name, 0); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatalf("second close: %v", err)
	}
	if _, err := c.Info(name); !errors.Is(err, unix.EBADF) {
		t.Fatalf("info on a closed control: %v, want EBADF", err)
	}
}
