package cli

import (
	"errors"
	"fmt"
	"os"
	"strconv"

	"golang.org/x/sys/unix"

	"github.com/thinlayer/thinlayer/deviceset"
	dm "github.com/thinlayer/thinlayer/devmapper"
	"github.com/thinlayer/thinlayer/fsutil"
	"github.com/thinlayer/thinlayer/snapshotter"
)

// Where a layer's files are on its filesystem depends on who made the
// layer, and the home records that in the layer's id: the containerd
// snapshotter's layers (snapshotter.IsSnapshotLayer, the rule its own
// reconcile goes by) are a container's "/" at the filesystem's root; every
// other layer is a graph driver's, Moby's layout, with the files under
// rootfs/ beside the driver's id file. What the filesystem holds never
// decides: a container may make a `rootfs` of its own at its "/". Nothing
// in a layer is opened by name with links followed: the directory is held
// as an O_PATH descriptor, checked to be on the layer's device, and used
// through /proc/self/fd so that no rename or link swapped in meanwhile
// changes what is bound.

// ErrRootfsNotDir: a graph driver layer's rootfs is not a directory on the
// layer's own filesystem (a link, a file, or another filesystem mounted
// there). Nothing follows it.
var ErrRootfsNotDir = errors.New("rootfs is not a directory of the layer's filesystem")

const rootfsDir = "rootfs"

// layerFiles is the directory of a layer's files, open as O_PATH.
type layerFiles struct {
	fd     int
	subdir string // where on the layer's filesystem: "rootfs" or "" (its root)
	// none: a graph driver layer no driver ever mounted has no rootfs/, so
	// no files (fd is then the filesystem's root).
	none bool
}

func (f layerFiles) close() {
	if f.fd >= 0 {
		unix.Close(f.fd)
	}
}

// noFiles is the layerFiles of no directory.
var noFiles = layerFiles{fd: -1}

// path names the directory by its descriptor, for mount(2).
func (f layerFiles) path() string { return "/proc/self/fd/" + strconv.Itoa(f.fd) }

// isSnapshotLayer: the layer's files are at its filesystem's root.
func isSnapshotLayer(hash string) bool { return snapshotter.IsSnapshotLayer(hash) }

// openMountRoot opens dir, where the layer's filesystem is mounted, and
// checks that it is on device dev and, when mountID is not 0, that it is
// that mount's root.
func openMountRoot(dir string, dev uint64, mountID int) (int, error) {
	fd, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, &os.PathError{Op: "open", Path: dir, Err: err}
	}
	var stx unix.Statx_t
	err = unix.Statx(fd, "", unix.AT_EMPTY_PATH, unix.STATX_MNT_ID, &stx)
	switch {
	case err != nil:
		err = &os.PathError{Op: "statx", Path: dir, Err: err}
	case unix.Mkdev(stx.Dev_major, stx.Dev_minor) != dev:
		err = fmt.Errorf("%s is not on the layer's device %d:%d", dir, unix.Major(dev), unix.Minor(dev))
	case mountID != 0 && stx.Mask&unix.STATX_MNT_ID != 0 && stx.Mnt_id != uint64(mountID):
		err = fmt.Errorf("%s is not the root of mount %d", dir, mountID)
	}
	if err != nil {
		unix.Close(fd)
		return -1, err
	}
	return fd, nil
}

// filesOf finds layer hash's files on its filesystem whose root rootfd
// holds (and takes rootfd over). A graph driver layer's rootfs that is
// not a directory of the same device is refused with ErrRootfsNotDir.
func filesOf(hash string, rootfd int, dev uint64) (layerFiles, error) {
	if isSnapshotLayer(hash) {
		return layerFiles{fd: rootfd}, nil
	}
	fd, err := unix.Openat(rootfd, rootfsDir, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if errors.Is(err, unix.ENOENT) {
		return layerFiles{fd: rootfd, none: true}, nil
	}
	if errors.Is(err, unix.ENOTDIR) || errors.Is(err, unix.ELOOP) {
		err = fmt.Errorf("layer %q: %w: %s", hash, ErrRootfsNotDir, describeRootfs(rootfd))
	} else if err != nil {
		err = fmt.Errorf("layer %q: open %s: %w", hash, rootfsDir, err)
	}
	if err == nil {
		err = checkOnDevice(hash, fd, dev)
	}
	unix.Close(rootfd)
	if err != nil {
		if fd >= 0 {
			unix.Close(fd)
		}
		return noFiles, err
	}
	return layerFiles{fd: fd, subdir: rootfsDir}, nil
}

// checkOnDevice refuses a rootfs that is another filesystem mounted there.
func checkOnDevice(hash string, fd int, dev uint64) error {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return fmt.Errorf("layer %q: stat %s: %w", hash, rootfsDir, err)
	}
	if st.Dev != dev {
		return fmt.Errorf("layer %q: %w: another filesystem is mounted on it", hash, ErrRootfsNotDir)
	}
	return nil
}

// describeRootfs says what the rootfs entry is, for the refusal.
func describeRootfs(rootfd int) string {
	var st unix.Stat_t
	if err := unix.Fstatat(rootfd, rootfsDir, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return err.Error()
	}
	if st.Mode&unix.S_IFMT != unix.S_IFLNK {
		return fmt.Sprintf("it is a file of mode %#o, refusing it", st.Mode)
	}
	buf := make([]byte, 256)
	n, _ := unix.Readlinkat(rootfd, rootfsDir, buf)
	return fmt.Sprintf("it is a symlink (to %q), not the directory a graph driver makes: refusing to follow it", buf[:max(n, 0)])
}

// deviceNumber is the device number of the active device-mapper device.
func deviceNumber(name string) (uint64, error) {
	ctl, err := dm.Open()
	if err != nil {
		return 0, err
	}
	defer ctl.Close()
	info, err := ctl.Info(name)
	if err != nil {
		return 0, fmt.Errorf("device %s: %w", name, err)
	}
	return info.Dev(), nil
}

// mountedFiles finds layer hash's files where its active device is already
// mounted (an engine's mount of the filesystem, or a `thinlayer mount`):
// ok false when it is not mounted anywhere usable.
func mountedFiles(hash, device string) (layerFiles, bool, error) {
	dev, err := deviceNumber(device)
	if err != nil {
		return noFiles, false, nil // not active, so not mounted
	}
	mounts, err := fsutil.MountsOfDevice(unix.Major(dev), unix.Minor(dev))
	if err != nil {
		return noFiles, false, nil
	}
	for _, m := range mounts {
		whole := m.Root == "/"
		files := !isSnapshotLayer(hash) && m.Root == "/"+rootfsDir
		if !whole && !files {
			continue
		}
		fd, err := openMountRoot(m.Mountpoint, dev, m.ID)
		if err != nil {
			continue // gone, or not what mountinfo said: try the next
		}
		if files {
			return layerFiles{fd: fd, subdir: rootfsDir}, true, nil
		}
		f, err := filesOf(hash, fd, dev)
		return f, true, err
	}
	return noFiles, false, nil
}

// mountFiles mounts layer hash's device on the private directory staging
// and finds its files there; on error the device is unmounted again.
func mountFiles(ds *deviceset.DeviceSet, hash, staging string) (layerFiles, error) {
	if err := ds.MountDevice(hash, staging, ""); err != nil {
		return noFiles, err
	}
	md, err := ds.Metadata(hash)
	var dev uint64
	if err == nil {
		dev, err = deviceNumber(md.DeviceName)
	}
	var fd int
	if err == nil {
		fd, err = openMountRoot(staging, dev, 0)
	}
	var f layerFiles
	if err == nil {
		f, err = filesOf(hash, fd, dev)
	}
	if err != nil {
		return noFiles, errors.Join(err, ds.UnmountDevice(hash, staging))
	}
	return f, nil
}
