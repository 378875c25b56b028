package cli_test

import (
	"errors"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/thinlayer/thinlayer/cli"
)

// mountDir is an empty directory that is unmounted at test end, should the
// test fail with something mounted on it.
func mountDir(t *testing.T) string {
	dir := t.TempDir()
	t.Cleanup(func() { _ = unix.Unmount(dir, unix.MNT_DETACH) })
	return dir
}

func wantMod() map[string]string {
	m := expectedFiles(imgFiles, modFiles)
	delete(m, modGone)
	return m
}

// A read-only mount shows the layer's files and refuses writes; it
// outlives the command; a writer is kept out while it is up; umount takes
// the device down, and the pool with the last one.
func TestMountReadOnly(t *testing.T) {
	h := newHome(t)
	dir1, dir2 := mountDir(t), mountDir(t)
	rc, out, errOut := run(t, nil, "mount", "mod", dir1, "--home", h.Dir)
	if rc != 0 || !strings.Contains(out, "read-only") {
		t.Fatalf("mount: rc %d, %s %s", rc, out, errOut)
	}
	if got := readFiles(t, dir1); !maps.Equal(got, wantMod()) {
		t.Fatalf("mounted files %v, want %v", got, wantMod())
	}
	if err := os.WriteFile(filepath.Join(dir1, "x"), nil, 0o644); !errors.Is(err, unix.EROFS) {
		t.Fatalf("write to a read-only mount: %v", err)
	}
	l, err := h.List()
	must(t, err)
	for _, x := range l.Layers {
		if mounted := len(x.Mounts) == 1 && x.Mounts[0] == dir1; mounted != (x.ID == "mod") {
			t.Errorf("ls: layer %s mounts %v", x.ID, x.Mounts)
		}
	}
	if _, err := h.Import("new", "", strings.NewReader(""), 0); !errors.Is(err, cli.ErrHomeBusy) {
		t.Fatalf("import while a layer is mounted: %v", err)
	}
	_, err = h.Mount("ctr", dir2, false)
	must(t, err)

	r, err := h.Unmount(dir1)
	must(t, err)
	if !r.Deactivated || r.PoolRemoved != "" || !strings.Contains(r.Note, "other layers are active") {
		t.Fatalf("first umount: %+v", r)
	}
	if m, _ := isMounted(dir1); m {
		t.Fatal("still mounted")
	}
	r, err = h.Unmount(dir2)
	must(t, err)
	if !r.Deactivated || r.PoolRemoved == "" {
		t.Fatalf("last umount: %+v", r)
	}
	if left := activeDevices(t, h.Dir); len(left) > 0 {
		t.Fatalf("left active after the last umount: %v", left)
	}
	if rc, _, errOut := run(t, nil, "umount", dir2, "--home", h.Dir); rc != cli.ExitProblems || !strings.Contains(errOut, "not a mount point") {
		t.Fatalf("umount of a plain directory: rc %d, %s", rc, errOut)
	}
}

// A read-write mount takes writes that the layer keeps; export reads a
// mounted layer where it is mounted.
func TestMountReadWrite(t *testing.T) {
	h := newHome(t)
	dir := mountDir(t)
	r, err := h.Mount("ctr", dir, true)
	must(t, err)
	if r.ReadOnly || r.Subdir != "rootfs" {
		t.Fatalf("mount --rw: %+v", r)
	}
	must(t, os.WriteFile(filepath.Join(dir, "written"), []byte("by hand\n"), 0o644))
	unix.Sync()
	tarFile := filepath.Join(t.TempDir(), "ctr.tar")
	if rc, _, errOut := run(t, nil, "export", "ctr", "--parent", "mod", "-o", tarFile, "--home", h.Dir); rc != 0 {
		t.Fatalf("export of a mounted layer: rc %d: %s", rc, errOut)
	}
	if names := tarEntries(t, tarFile); !equalSet(names, "data.bin", "written") {
		t.Fatalf("diff of the mounted layer: %v", names)
	}
	_, err = h.Unmount(dir)
	must(t, err)
	if got := layerFiles(t, h, "ctr")["written"]; got != "by hand\n" {
		t.Fatalf("after umount the layer has %q", got)
	}
}

// umount leaves alone what it did not mount: an engine's own mount of a
// layer under <home>/mnt.
func TestUmountLeavesEngineMounts(t *testing.T) {
	h := newHome(t)
	d := openDriver(t, h)
	root, err := d.Get("img", "")
	must(t, err)
	mp := filepath.Dir(root)
	rc, _, errOut := run(t, nil, "umount", mp, "--home", h.Dir)
	if rc != cli.ExitProblems || !strings.Contains(errOut, "engine's own mount") {
		t.Fatalf("umount of the engine's mount: rc %d, %s", rc, errOut)
	}
	if m, _ := isMounted(mp); !m {
		t.Fatal("the engine's mount is gone")
	}
	must(t, d.Put("img"))
	closeDriver(t, d)
}
