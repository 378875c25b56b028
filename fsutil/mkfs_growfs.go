package fsutil

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"

	"golang.org/x/sys/unix"
)

// GrowFS grows the fsType ("xfs" or "ext4") filesystem on dev to fill the
// device after the device itself has grown, as Moby's devmapper growFS
// does: it mounts dev on mountpoint (with nouuid for xfs), runs
// xfs_growfs on the mount point or resize2fs on dev (an online resize),
// and lazily unmounts again.
//
// If mountpoint is "", a private temporary directory is used. A
// mountpoint that does not exist is created and removed afterwards; an
// existing one is left in place. Errors carry the tool's output.
func GrowFS(ctx context.Context, fsType, dev, mountpoint string) (err error) {
	if fsType != FSTypeXFS && fsType != FSTypeExt4 {
		return fmt.Errorf("grow filesystem on %s: unsupported filesystem type %q", dev, fsType)
	}
	dir, cleanup, err := growMountpoint(mountpoint)
	if err != nil {
		return fmt.Errorf("grow %s filesystem on %s: %w", fsType, dev, err)
	}
	defer cleanup()
	if err := MountLayer(dev, dir, fsType, "", ""); err != nil {
		return fmt.Errorf("grow %s filesystem on %s: %w", fsType, dev, err)
	}
	defer func() {
		err = errors.Join(err, Unmount(dir, unix.MNT_DETACH))
	}()
	if fsType == FSTypeXFS {
		return runTool(ctx, "xfs_growfs", dir)
	}
	return runTool(ctx, "resize2fs", dev)
}

// growMountpoint returns the directory to mount on and a function that
// removes it if GrowFS created it.
func growMountpoint(mountpoint string) (string, func(), error) {
	if mountpoint == "" {
		dir, err := os.MkdirTemp("", "thinlayer-growfs-")
		if err != nil {
			return "", nil, err
		}
		return dir, func() { os.Remove(dir) }, nil
	}
	if _, err := os.Stat(mountpoint); !errors.Is(err, fs.ErrNotExist) {
		return mountpoint, func() {}, err
	}
	if err := os.MkdirAll(mountpoint, 0o700); err != nil {
		return "", nil, err
	}
	return mountpoint, func() { os.Remove(mountpoint) }, nil
}
