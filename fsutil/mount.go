package fsutil

import (
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/moby/sys/mountinfo"
	"github.com/opencontainers/selinux/go-selinux/label"
	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"
)

const (
	// propagationFlags are the mount(2) flags that change propagation and
	// must be applied in a call of their own.
	propagationFlags = unix.MS_SHARED | unix.MS_PRIVATE | unix.MS_SLAVE | unix.MS_UNBINDABLE
	// propagationMask is what a propagation-change call may carry.
	propagationMask = propagationFlags | unix.MS_REC | unix.MS_SILENT
	// bindReadOnly needs a remount after the bind to take effect.
	bindReadOnly = unix.MS_BIND | unix.MS_RDONLY
)

// Mount mounts dev on target with mount(2). Like moby/sys/mount it
// applies propagation flags in a call of their own (skipping the first
// call for a pure propagation change or remount of dev "" or "none"
// without data) and remounts read-only bind mounts so that "ro" takes
// effect. Errors name the device, target, filesystem type, flags and
// data, and wrap the unix.Errno.
func Mount(dev, target, fsType string, flags uintptr, data string) error {
	base := flags &^ propagationFlags
	if !isRemount(dev, flags) || data != "" {
		if err := unix.Mount(dev, target, fsType, base, data); err != nil {
			return mountError(dev, target, fsType, base, data, err)
		}
	}
	if flags&propagationFlags != 0 {
		if err := unix.Mount("", target, "", flags&propagationMask, ""); err != nil {
			return mountError("", target, "", flags&propagationMask, "", err)
		}
	}
	if base&bindReadOnly == bindReadOnly {
		if err := unix.Mount("", target, "", base|unix.MS_REMOUNT, ""); err != nil {
			return mountError("", target, "", base|unix.MS_REMOUNT, "", err)
		}
	}
	logrus.WithFields(logrus.Fields{"device": dev, "target": target, "fs": fsType,
		"flags": fmt.Sprintf("%#x", flags), "data": data}).Debug("fsutil: mounted")
	return nil
}

// isRemount reports whether a Mount call only changes an existing mount.
func isRemount(dev string, flags uintptr) bool {
	return flags&unix.MS_REMOUNT != 0 || dev == "" || dev == "none"
}

// mountError describes a failed mount(2) call, keeping its errno.
func mountError(dev, target, fsType string, flags uintptr, data string, err error) error {
	return fmt.Errorf("mount %q on %q (type %q, flags %#x, data %q): %w",
		dev, target, fsType, flags, data, err)
}

// LayerMountOptions builds the option string Moby's devmapper MountDevice
// uses: "nouuid" first for xfs (thin snapshots share their origin's
// UUID), then options (e.g. "discard,noatime"), then the SELinux
// context for mountLabel, if any.
func LayerMountOptions(fsType, options, mountLabel string) string {
	opts := ""
	if fsType == FSTypeXFS {
		opts = joinMountOptions(opts, "nouuid")
	}
	opts = joinMountOptions(opts, options)
	return label.FormatMountLabel(opts, mountLabel)
}

// MountLayer mounts a layer's thin device dev on target with Moby's
// devmapper semantics (see LayerMountOptions). options must pass
// ValidateMountOptions.
func MountLayer(dev, target, fsType, options, mountLabel string) error {
	return mountLayer(dev, target, fsType, options, mountLabel, 0)
}

// MountLayerReadOnly is MountLayer read-only: MS_RDONLY goes to mount(2)
// as a flag, which no option text can undo.
func MountLayerReadOnly(dev, target, fsType, options, mountLabel string) error {
	return mountLayer(dev, target, fsType, options, mountLabel, unix.MS_RDONLY)
}

// maxMountData is what the kernel reads of mount data: one page, less
// its terminating NUL.
const maxMountData = 4095

func mountLayer(dev, target, fsType, options, mountLabel string, extra uintptr) error {
	if err := ValidateMountOptions(options); err != nil {
		return err
	}
	if strings.ContainsAny(mountLabel, "\"\x00\n") {
		return fmt.Errorf("%w: mount label %q", ErrMountOption, mountLabel)
	}
	flags, data := ParseMountOptions(LayerMountOptions(fsType, options, mountLabel))
	if len(data) > maxMountData {
		return fmt.Errorf("%w: %d bytes of mount data, the kernel reads %d", ErrMountOption, len(data), maxMountData)
	}
	return Mount(dev, target, fsType, flags|extra, data)
}

// joinMountOptions joins two comma-separated option lists.
func joinMountOptions(a, b string) string {
	switch {
	case a == "":
		return b
	case b == "":
		return a
	default:
		return a + "," + b
	}
}

// Unmount unmounts target with umount2(2) and flags (e.g.
// unix.MNT_DETACH), once, without retrying. EINVAL counts as success
// only when target is verifiably not a mount point; every other error
// wraps the unix.Errno.
func Unmount(target string, flags int) error {
	err := unix.Unmount(target, flags)
	if err == nil {
		logrus.WithField("target", target).Debug("fsutil: unmounted")
		return nil
	}
	if errors.Is(err, unix.EINVAL) {
		if mounted, merr := mountinfo.Mounted(target); merr == nil && !mounted {
			return nil
		}
	}
	return fmt.Errorf("unmount %q (flags %#x): %w", target, flags, err)
}

// IsMounted reports whether path is a mount point.
func IsMounted(path string) (bool, error) {
	mounted, err := mountinfo.Mounted(path)
	if err != nil {
		return false, fmt.Errorf("check mount point %q: %w", path, err)
	}
	return mounted, nil
}

// MountsOfDevice returns every mount, in this mount namespace, of the
// block device major:minor, e.g. to find mounts leaked by a crash.
func MountsOfDevice(major, minor uint32) ([]*mountinfo.Info, error) {
	mounts, err := mountinfo.GetMounts(func(m *mountinfo.Info) (skip, stop bool) {
		return m.Major != int(major) || m.Minor != int(minor), false
	})
	if err != nil {
		return nil, fmt.Errorf("list mounts of device %d:%d: %w", major, minor, err)
	}
	return mounts, nil
}

// UnmountUnder lazily unmounts every mount at or below dir, deepest first
// (a parent's detach would otherwise hide its children from the next
// lookup), and returns the mount points it unmounted.
func UnmountUnder(dir string) ([]string, error) {
	mounts, err := mountinfo.GetMounts(mountinfo.PrefixFilter(dir))
	if err != nil {
		return nil, fmt.Errorf("read mounts under %q: %w", dir, err)
	}
	sort.Slice(mounts, func(i, j int) bool { return len(mounts[i].Mountpoint) > len(mounts[j].Mountpoint) })
	var done []string
	var errs []error
	for _, m := range mounts {
		if err := Unmount(m.Mountpoint, unix.MNT_DETACH); err != nil {
			errs = append(errs, err)
			continue
		}
		done = append(done, m.Mountpoint)
	}
	return done, errors.Join(errs...)
}
