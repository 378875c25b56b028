package deviceset

import (
	"errors"
	"sort"

	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"

	dm "github.com/thinlayer/thinlayer/devmapper"
)

// recoverDevices undoes, at startup, what a process killed mid-operation
// left in the kernel for this home: a device suspended for a snapshot is
// resumed (before anything could wait on it), a device created without a
// live table is removed, and whatever is still mounted under <home>/mnt is
// unmounted — the home is locked, so no mount there is anyone else's.
// Failures are logged: each costs one layer at most.
func (ds *DeviceSet) recoverDevices() {
	devs, err := ds.dm.List()
	if err != nil {
		ds.log.WithError(err).Warn("list devices to recover")
	}
	for _, d := range devs {
		if ds.isLayerDevice(d.Name) {
			ds.recoverDevice(d.Name)
		}
	}
	ds.unmountStale()
}

func (ds *DeviceSet) recoverDevice(name string) {
	info, err := ds.dm.Info(name)
	switch {
	case err != nil:
		return
	case !info.LiveTable:
		ds.log.WithField("device", name).Info("removing half-made device")
		err = ds.dm.Remove(name, udevFlags)
	case info.Suspended:
		ds.log.WithField("device", name).Info("resuming device left suspended")
		err = ds.dm.Resume(name, udevFlags)
	}
	if err != nil && !errors.Is(err, dm.ErrNotFound) {
		ds.log.WithError(err).WithField("device", name).Error("recover device")
	}
}

// unmountStale lazily unmounts everything under <home>/mnt, deepest first.
func (ds *DeviceSet) unmountStale() {
	mounts, err := mountinfo.GetMounts(mountinfo.PrefixFilter(ds.mntDir()))
	if err != nil {
		ds.log.WithError(err).Warn("read mounts to recover")
		return
	}
	sort.Slice(mounts, func(i, j int) bool { return len(mounts[i].Mountpoint) > len(mounts[j].Mountpoint) })
	for _, m := range mounts {
		ds.log.WithField("mountpoint", m.Mountpoint).Info("unmounting what a previous run left mounted")
		if err := unix.Unmount(m.Mountpoint, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) {
			ds.log.WithError(err).WithField("mountpoint", m.Mountpoint).Error("unmount stale mount")
		}
	}
}
