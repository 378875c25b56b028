package deviceset

import (
	"errors"

	dm "github.com/thinlayer/thinlayer/devmapper"
	"github.com/thinlayer/thinlayer/fsutil"
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
	done, err := fsutil.UnmountUnder(ds.mntDir())
	for _, m := range done {
		ds.log.WithField("mountpoint", m).Info("unmounted what a previous run left mounted")
	}
	if err != nil {
		ds.log.WithError(err).Error("unmount stale mounts")
	}
}
