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

// A layer's filesystem holds rootfs/ (the files a container sees) and the
// driver's id file. mount shows rootfs/ on DIR by a bind mount of it, made
// from a private staging mount that is detached again at once; the layer's
// device stays active, and the mount outlives the command. umount finds
// the device from the mount again.

// MountResult says what mount did.
type MountResult struct {
	ID       string `json:"id"`
	Dir      string `json:"dir"`
	Device   string `json:"device"`
	ReadOnly bool   `json:"read_only"`
	// Subdir is the directory of the layer's filesystem shown on Dir:
	// "rootfs", or "" for a layer never mounted by a driver (no rootfs/).
	Subdir string `json:"subdir"`
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
		ds, err = h.openWritable(allowActive, nil)
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
	if err := ds.MountDevice(hash, staging, ""); err != nil {
		return nil, err
	}
	res := &MountResult{Dir: dir, Device: ds.DevicePath(hash), ReadOnly: !rw, Subdir: "rootfs"}
	src := filepath.Join(staging, "rootfs")
	if _, err := os.Lstat(src); err != nil {
		res.Subdir, src = "", staging
	}
	flags := uintptr(unix.MS_BIND)
	if !rw {
		flags |= unix.MS_RDONLY
	}
	err = fsutil.Mount(src, dir, "", flags, "")
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
