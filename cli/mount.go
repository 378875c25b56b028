package cli

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"

	"github.com/thinlayer/thinlayer/deviceset"
	"github.com/thinlayer/thinlayer/fsutil"
)

// A graph driver layer's filesystem holds rootfs/ (the files a container
// sees) and the driver's id file; a snapshotter layer's is the container's
// "/" (see layerFiles). mount shows the files on DIR by a bind mount of
// their directory, made from a private staging mount that is detached
// again at once; the layer's device stays active, and the mount outlives
// the command. umount finds the device from the mount again.

// MountResult says what mount did.
type MountResult struct {
	ID       string `json:"id"`
	Dir      string `json:"dir"`
	Device   string `json:"device"`
	ReadOnly bool   `json:"read_only"`
	// Subdir is the directory of the layer's filesystem shown on Dir:
	// "rootfs" (a graph driver layer), or "" for a snapshotter layer or a
	// layer never mounted by a driver (no rootfs/).
	Subdir string `json:"subdir"`
	// Snapshot: a containerd snapshotter's layer, its files at the
	// filesystem's root.
	Snapshot bool `json:"snapshot"`
}

// hashOf turns a layer name into its DevInfo hash: "base" is "".
func hashOf(id string) string {
	if id == "base" {
		return ""
	}
	return id
}

// Mount mounts layer id on dir, read-only unless rw, and leaves it
// mounted. A read-only mount goes through a read-only open of the home:
// if the pool was not active it stays up read-only until umount.
func (h Home) Mount(id, dir string, rw bool) (*MountResult, error) {
	dir, err := mountTarget(dir)
	if err != nil {
		return nil, err
	}
	var ds *deviceset.DeviceSet
	if rw {
		// No idle devices: a mount that fails takes its device down
		// at once, and Leave, unlike Release, drops no idle ones.
		ds, err = h.openWritable(allowActive, func(c *deviceset.Config) { c.IdleDevices = 0 })
	} else {
		ds, err = h.openReadOnly()
	}
	if err != nil {
		return nil, err
	}
	res, err := mountLayer(ds, hashOf(id), dir, rw)
	if err != nil {
		return nil, errors.Join(err, ds.Leave())
	}
	res.ID = id
	ds.Release() // the mount, its device and pool stay
	return res, nil
}

// mountTarget checks dir: an existing directory, not a mount point yet.
func mountTarget(dir string) (string, error) {
	abs, err := filepath.Abs(dir)
	if err == nil {
		abs, err = filepath.EvalSymlinks(abs)
	}
	if err != nil {
		return "", fmt.Errorf("mount point %s: %w", dir, err)
	}
	if fi, err := os.Stat(abs); err != nil || !fi.IsDir() {
		return "", fmt.Errorf("mount point %s is not a directory", dir)
	}
	if m, err := fsutil.IsMounted(abs); err != nil || m {
		return "", fmt.Errorf("mount point %s is already a mount point (err %v)", abs, err)
	}
	return abs, nil
}

func mountLayer(ds *deviceset.DeviceSet, hash, dir string, rw bool) (_ *MountResult, err error) {
	info, err := ds.Info(hash)
	if err != nil {
		return nil, err
	}
	if info.Deleted {
		return nil, fmt.Errorf("mount layer %q: %w", hash, deviceset.ErrDeleted)
	}
	staging, err := os.MkdirTemp("", "thinlayer-mount-")
	if err != nil {
		return nil, err
	}
	defer os.Remove(staging)
	f, err := mountFiles(ds, hash, staging)
	if err != nil {
		return nil, fmt.Errorf("mount layer %q: %w", hash, err)
	}
	res := &MountResult{Dir: dir, Device: ds.DevicePath(hash), ReadOnly: !rw, Subdir: f.subdir, Snapshot: isSnapshotLayer(hash)}
	flags := uintptr(unix.MS_BIND)
	if !rw {
		flags |= unix.MS_RDONLY
	}
	err = fsutil.Mount(f.path(), dir, "", flags, "")
	f.close() // the bind holds the filesystem now
	if uerr := fsutil.Unmount(staging, unix.MNT_DETACH); uerr != nil {
		err = errors.Join(err, uerr, fsutil.Unmount(dir, unix.MNT_DETACH))
	}
	if err != nil {
		return nil, errors.Join(fmt.Errorf("mount layer %q on %s: %w", hash, dir, err), ds.UnmountDevice(hash, staging))
	}
	return res, nil
}

// mountPointsOf lists where the block device major:minor is mounted.
func mountPointsOf(major, minor uint32) []string {
	mounts, err := fsutil.MountsOfDevice(major, minor)
	if err != nil {
		return nil
	}
	var mps []string
	for _, m := range mounts {
		mps = append(mps, m.Mountpoint)
	}
	return mps
}
