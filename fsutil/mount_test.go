package fsutil

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"
)

// newFSOnLoop makes a sparse image, attaches it to a loop device and
// creates fsType on it with Mkfs.
func newFSOnLoop(t *testing.T, fsType string, size int64, extraArgs ...string) *testLoop {
	t.Helper()
	rootLoopOrSkip(t)
	if fsType == FSTypeXFS {
		toolOrSkip(t, "mkfs.xfs", "xfsprogs")
	} else {
		toolOrSkip(t, "mkfs.ext4", "e2fsprogs")
	}
	loop := attachLoopDevice(t, sparseImage(t, fsType+".img", size))
	if err := Mkfs(context.Background(), loop.Path, fsType, extraArgs); err != nil {
		t.Fatalf("Mkfs: %v", err)
	}
	return loop
}

// onlyMountOf returns the single mount of loop's device, failing if there
// is not exactly one.
func onlyMountOf(t *testing.T, loop *testLoop) *mountinfo.Info {
	t.Helper()
	mounts, err := MountsOfDevice(loop.Major, loop.Minor)
	if err != nil {
		t.Fatalf("MountsOfDevice: %v", err)
	}
	if len(mounts) != 1 {
		t.Fatalf("MountsOfDevice(%d:%d) found %d mounts, want 1", loop.Major, loop.Minor, len(mounts))
	}
	return mounts[0]
}

func TestMountLayerExt4(t *testing.T) {
	loop := newFSOnLoop(t, FSTypeExt4, 64<<20)
	target := mkdirTarget(t, "mnt")
	mountForTest(t, loop.Path, target, FSTypeExt4, "ro,nodev,noatime,discard")

	if mounted, err := IsMounted(target); err != nil || !mounted {
		t.Fatalf("IsMounted = %v, %v; want true", mounted, err)
	}
	m := onlyMountOf(t, loop)
	if m.Mountpoint != target || m.FSType != FSTypeExt4 || m.Source != loop.Path {
		t.Fatalf("mountinfo: %+v", m)
	}
	for _, opt := range []string{"ro", "nodev", "noatime"} {
		if !hasOption(m.Options, opt) {
			t.Errorf("mount options %q lack %q", m.Options, opt)
		}
	}
	if !hasOption(m.VFSOptions, "discard") {
		t.Errorf("superblock options %q lack discard", m.VFSOptions)
	}
	err := os.WriteFile(filepath.Join(target, "f"), nil, 0o644)
	if !errors.Is(err, unix.EROFS) {
		t.Errorf("write on ro mount: got %v, want EROFS", err)
	}

	if err := Unmount(target, 0); err != nil {
		t.Fatalf("Unmount: %v", err)
	}
	assertNotMounted(t, loop, target)
	if err := Unmount(target, 0); err != nil {
		t.Fatalf("second Unmount of a plain directory: %v", err)
	}
}

// assertNotMounted checks that neither target nor the device is mounted.
func assertNotMounted(t *testing.T, loop *testLoop, target string) {
	t.Helper()
	if mounted, err := IsMounted(target); err != nil || mounted {
		t.Fatalf("IsMounted after unmount = %v, %v", mounted, err)
	}
	if mounts, err := MountsOfDevice(loop.Major, loop.Minor); err != nil || len(mounts) != 0 {
		t.Fatalf("MountsOfDevice after unmount = %v, %v", mounts, err)
	}
}

func TestMountsOfDeviceSeesEveryMount(t *testing.T) {
	loop := newFSOnLoop(t, FSTypeExt4, 64<<20)
	a, b := mkdirTarget(t, "a"), mkdirTarget(t, "b")
	mountForTest(t, loop.Path, a, FSTypeExt4, "")
	mountForTest(t, loop.Path, b, FSTypeExt4, "")
	mounts, err := MountsOfDevice(loop.Major, loop.Minor)
	if err != nil || len(mounts) != 2 {
		t.Fatalf("MountsOfDevice = %d mounts, %v; want 2", len(mounts), err)
	}
	if other, err := MountsOfDevice(loop.Major, loop.Minor+1<<19); err != nil || len(other) != 0 {
		t.Fatalf("MountsOfDevice(unused) = %v, %v", other, err)
	}
}

func TestMountLayerXFSNoUUID(t *testing.T) {
	const uuid = "5ad2c4a3-a16f-42b3-a480-7f6153e2d0c6"
	first := newFSOnLoop(t, FSTypeXFS, xfsMinImage, "-m", "uuid="+uuid)
	second := newFSOnLoop(t, FSTypeXFS, xfsMinImage, "-m", "uuid="+uuid)
	for _, l := range []*testLoop{first, second} {
		info, err := ProbeDevice(l.Path)
		if err != nil || info.Type != FSTypeXFS || info.UUID != uuid {
			t.Fatalf("ProbeDevice(%s) = %+v, %v", l.Path, info, err)
		}
		crossCheckBlkid(t, l.Path, info)
	}
	a, b := mkdirTarget(t, "a"), mkdirTarget(t, "b")
	// Mounted without nouuid, the first filesystem claims its UUID, and
	// the kernel refuses a second one with the same UUID, which is what
	// every thin snapshot of a layer has.
	if err := Mount(first.Path, a, FSTypeXFS, 0, ""); err != nil {
		t.Fatalf("Mount: %v", err)
	}
	t.Cleanup(func() { Unmount(a, unix.MNT_DETACH) })
	err := Mount(second.Path, b, FSTypeXFS, 0, "")
	if !errors.Is(err, unix.EINVAL) {
		if err == nil {
			Unmount(b, unix.MNT_DETACH)
		}
		t.Fatalf("mount of duplicate UUID without nouuid: got %v, want EINVAL", err)
	}
	// MountLayer adds nouuid, so the snapshot mounts.
	mountForTest(t, second.Path, b, FSTypeXFS, "discard")
	m := onlyMountOf(t, second)
	if !hasOption(m.VFSOptions, "nouuid") || !hasOption(m.VFSOptions, "discard") {
		t.Fatalf("superblock options %q lack nouuid/discard", m.VFSOptions)
	}
}

func TestMountErrorKeepsErrno(t *testing.T) {
	target := mkdirTarget(t, "mnt")
	dev := filepath.Join(t.TempDir(), "missing-dev")
	err := Mount(dev, target, FSTypeExt4, unix.MS_RDONLY, "discard")
	var errno unix.Errno
	if err == nil || !errors.As(err, &errno) {
		t.Fatalf("got %v, want an error wrapping an errno", err)
	}
	for _, part := range []string{dev, target, FSTypeExt4, "discard", "0x1"} {
		if !strings.Contains(err.Error(), part) {
			t.Errorf("error %q does not mention %q", err, part)
		}
	}
	if os.Geteuid() == 0 && !errors.Is(err, unix.ENOENT) {
		t.Errorf("as root: got %v, want ENOENT", err)
	}
}

func TestUnmountErrors(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "missing")
	if err := Unmount(missing, 0); !errors.Is(err, unix.ENOENT) {
		t.Fatalf("Unmount(missing) = %v, want ENOENT", err)
	}
	if _, err := IsMounted(missing); err == nil {
		t.Fatal("IsMounted(missing) succeeded")
	}

	// EINVAL from bad flags on a real mount point must not pass for
	// "not mounted".
	loop := newFSOnLoop(t, FSTypeExt4, 64<<20)
	target := mkdirTarget(t, "mnt")
	mountForTest(t, loop.Path, target, FSTypeExt4, "")
	const badFlag = 1 << 10
	err := Unmount(target, badFlag)
	if !errors.Is(err, unix.EINVAL) || !strings.Contains(err.Error(), target) {
		t.Fatalf("Unmount with bad flags = %v, want EINVAL naming the target", err)
	}
	if mounted, _ := IsMounted(target); !mounted {
		t.Fatal("target no longer mounted")
	}
}
