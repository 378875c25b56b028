package fsutil

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// fsTotalBytes mounts dev read-only and returns its statfs size.
func fsTotalBytes(t *testing.T, dev, fsType string) uint64 {
	t.Helper()
	target := mkdirTarget(t, "statfs")
	if err := MountLayer(dev, target, fsType, "ro", ""); err != nil {
		t.Fatalf("MountLayer: %v", err)
	}
	defer func() {
		if err := Unmount(target, 0); err != nil {
			t.Errorf("Unmount: %v", err)
		}
	}()
	var st unix.Statfs_t
	if err := unix.Statfs(target, &st); err != nil {
		t.Fatal(err)
	}
	return st.Blocks * uint64(st.Bsize)
}

// growLoop enlarges the loop device's backing file and the device.
func growLoop(t *testing.T, loop *testLoop, size int64) {
	t.Helper()
	if err := os.Truncate(loop.backing, size); err != nil {
		t.Fatal(err)
	}
	loop.setCapacity(t)
}

// hasCapability reports whether the test process has capability c in its
// effective set.
func hasCapability(t *testing.T, c int) bool {
	t.Helper()
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		t.Fatalf("capget: %v", err)
	}
	return data[c/32].Effective&(1<<(c%32)) != 0
}

func TestGrowFS(t *testing.T) {
	tests := []struct {
		fs           string
		before, grow int64
		mountpoint   string
	}{
		{FSTypeExt4, 64 << 20, 192 << 20, ""},
		{FSTypeXFS, xfsMinImage, xfsMinImage + 256<<20, "create"},
	}
	for _, tt := range tests {
		t.Run(tt.fs, func(t *testing.T) {
			toolOrSkip(t, map[string]string{FSTypeExt4: "resize2fs", FSTypeXFS: "xfs_growfs"}[tt.fs],
				map[string]string{FSTypeExt4: "e2fsprogs", FSTypeXFS: "xfsprogs"}[tt.fs])
			loop := newFSOnLoop(t, tt.fs, tt.before)
			sizeBefore := fsTotalBytes(t, loop.Path, tt.fs)
			growLoop(t, loop, tt.grow)
			mnt := ""
			if tt.mountpoint != "" {
				mnt = filepath.Join(t.TempDir(), "grow", "mnt")
			}
			err := GrowFS(context.Background(), tt.fs, loop.Path, mnt)
			if tt.fs == FSTypeExt4 && !hasCapability(t, unix.CAP_SYS_RESOURCE) {
				// ext4 online resize needs CAP_SYS_RESOURCE; without it
				// GrowFS must fail cleanly with resize2fs's explanation.
				t.Log("no CAP_SYS_RESOURCE: checking the failure path only")
				if err == nil || !strings.Contains(err.Error(), "Permission denied") {
					t.Fatalf("GrowFS without CAP_SYS_RESOURCE: got %v", err)
				}
			} else if err != nil {
				t.Fatalf("GrowFS: %v", err)
			}
			if mnt != "" {
				if _, err := os.Stat(mnt); !errors.Is(err, fs.ErrNotExist) {
					t.Errorf("GrowFS left its mount point %s behind: %v", mnt, err)
				}
			}
			if mounts, err := MountsOfDevice(loop.Major, loop.Minor); err != nil || len(mounts) != 0 {
				t.Fatalf("GrowFS left mounts behind: %v, %v", mounts, err)
			}
			if err != nil {
				return
			}
			sizeAfter := fsTotalBytes(t, loop.Path, tt.fs)
			if sizeAfter < sizeBefore+uint64(tt.grow-tt.before)/2 {
				t.Fatalf("filesystem size %d -> %d; want it to grow by about %d",
					sizeBefore, sizeAfter, tt.grow-tt.before)
			}
		})
	}
}

func TestGrowFSErrors(t *testing.T) {
	if err := GrowFS(context.Background(), "btrfs", "/dev/null", ""); err == nil ||
		!strings.Contains(err.Error(), `"btrfs"`) {
		t.Fatalf("unsupported type: got %v", err)
	}
	rootLoopOrSkip(t)
	mnt := mkdirTarget(t, "kept")
	dev := filepath.Join(t.TempDir(), "missing")
	err := GrowFS(context.Background(), FSTypeExt4, dev, mnt)
	if !errors.Is(err, unix.ENOENT) {
		t.Fatalf("missing device: got %v, want ENOENT", err)
	}
	if _, err := os.Stat(mnt); err != nil {
		t.Fatalf("existing mount point removed: %v", err)
	}
}
