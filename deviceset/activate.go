package deviceset

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/moby/sys/mountinfo"
	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"

	dm "github.com/thinlayer/thinlayer/devmapper"
	"github.com/thinlayer/thinlayer/fsutil"
	"github.com/thinlayer/thinlayer/internal/faults"
)

// udevFlags spare udev the rules a layer's device doesn't need: no disk
// rules (blkid scans, by-uuid links — snapshots share one UUID) and no
// other-subsystem rules; the /dev/mapper link is still made.
const udevFlags = dm.UdevDisableDiskRulesFlag | dm.UdevDisableOtherRulesFlag

// activate makes the layer's thin device active (if it isn't) and returns
// its node. A scheduled deferred removal is cancelled instead. A thin id
// another layer's DevInfo names too is not activated: two devices on one
// thin id would be one filesystem mounted twice.
func (ds *DeviceSet) activate(info *DevInfo) (string, error) {
	if other, shared := ds.sharedThinID(info); shared {
		return "", fmt.Errorf("activate layer %q: %w: thin id %d is also named by layer %q; remove one of them",
			info.Hash, ErrCorruptMetadata, info.DeviceID, other)
	}
	idle := ds.idle != nil && ds.idle.take(info.Hash) // in use again
	info.pristine = false                             // from here on it may own blocks of its own
	if !idle {
		// Most likely not active: make it, and look only if it is.
		// (The kernel refuses a name in use with EBUSY.)
		dev, err := ds.createDevice(info)
		if !errors.Is(err, unix.EBUSY) && !errors.Is(err, dm.ErrExists) {
			return dev, err
		}
	}
	cur, err := ds.dm.Info(ds.deviceName(info.Hash))
	if err == nil {
		if reused, err := ds.reuse(cur, info); reused || err != nil {
			if err != nil {
				return "", err
			}
			return ds.nodeOf(cur)
		}
	} else if !errors.Is(err, dm.ErrNotFound) {
		return "", err
	}
	return ds.createDevice(info)
}

// createDevice creates, loads and resumes the layer's device; an error
// matching unix.EBUSY when one of its name is there already.
func (ds *DeviceSet) createDevice(info *DevInfo) (string, error) {
	if err := faults.Point("activate"); err != nil {
		return "", err
	}
	create := ds.dm.CreateAndLoad
	if ds.ro {
		// A read-only open's mounts cannot write the pool then (ext4
		// refuses to replay a dirty journal onto a read-only device).
		create = ds.dm.CreateAndLoadReadOnly
	}
	cur, err := create(ds.deviceName(info.Hash), "", ds.thinTable(info), udevFlags)
	if err != nil {
		return "", fmt.Errorf("activate layer %q (thin id %d in pool %s): %w", info.Hash, info.DeviceID, ds.pool.name, err)
	}
	info.loadedSize = info.Size
	ds.log.WithFields(logrus.Fields{"hash": info.Hash, "device_id": info.DeviceID}).Debug("activated")
	return ds.nodeOf(cur)
}

// nodeOf is the node to open an active device by: the kernel's own
// /dev/dm-<minor>, which devtmpfs makes when the first table is loaded,
// before the call that loads it returns — so nothing waits for udev to
// make /dev/mapper/<name>. Where /dev is no devtmpfs, the /dev/mapper
// node is made if missing (EnsureNode checks the device number: a node
// left by someone else's deferred removal may name another device).
func (ds *DeviceSet) nodeOf(cur dm.Info) (string, error) {
	if ds.devtmpfs {
		return cur.KernelPath(), nil
	}
	return dm.DevicePath(cur.Name), ds.dm.EnsureNode(cur)
}

// devIsDevtmpfs reports whether /dev is the kernel's devtmpfs, where
// /dev/dm-N is there as soon as the device has a table (a container's
// tmpfs /dev has no such nodes).
func devIsDevtmpfs() bool {
	ms, err := mountinfo.GetMounts(mountinfo.SingleEntryFilter("/dev"))
	return err == nil && len(ms) > 0 && ms[len(ms)-1].FSType == "devtmpfs"
}

func (ds *DeviceSet) thinTable(info *DevInfo) []dm.TableLine {
	thin := dm.Thin{PoolDev: ds.pool.dev, DeviceID: info.DeviceID}
	return []dm.TableLine{dm.Line(0, dm.BytesToSectors(info.Size), thin)}
}

// reuse takes over a device that is already active, cancelling its
// deferred removal; it reports false when the device went meanwhile (at
// its last close) or was never finished, and must be made anew.
func (ds *DeviceSet) reuse(cur dm.Info, info *DevInfo) (bool, error) {
	if !cur.LiveTable { // a create killed before its table went live
		if err := ds.dm.Remove(cur.Name, udevFlags); err != nil && !errors.Is(err, dm.ErrNotFound) {
			return false, err
		}
		return false, nil
	}
	if ds.ro && !cur.ReadOnly {
		if err := ds.makeReadOnly(cur, info); err != nil {
			return false, err
		}
	}
	if cur.DeferredRemove {
		err := ds.dm.CancelDeferredRemove(cur.Name)
		if errors.Is(err, dm.ErrNotFound) {
			return false, nil
		}
		if err != nil {
			return false, err
		}
	}
	return true, ds.fitTable(cur.Name, info)
}

// makeReadOnly reloads a device a read-write open left active with a
// read-only table, for a read-only open to mount it. One still open
// (mounted read-write elsewhere) is refused: reloading it would fail that
// mount's writes, and mounting it from its rw table would let ext4 write
// the pool.
func (ds *DeviceSet) makeReadOnly(cur dm.Info, info *DevInfo) error {
	if cur.OpenCount > 0 {
		return fmt.Errorf("activate layer %q: device %s is active read-write and open (mounted elsewhere?): %w",
			info.Hash, cur.Name, ErrReadOnly)
	}
	if err := ds.dm.Load(cur.Name, ds.thinTable(info), true); err != nil {
		return err
	}
	if err := ds.dm.Resume(cur.Name, udevFlags); err != nil {
		return err
	}
	info.loadedSize = info.Size
	return nil
}

// fitTable reloads an active device whose table is not the layer's size:
// one left active (a failed deactivate) from before the layer grew would
// otherwise hide the growth.
func (ds *DeviceSet) fitTable(name string, info *DevInfo) error {
	if info.loadedSize == info.Size {
		return nil // ours, loaded at this size (an idle device)
	}
	t, err := ds.dm.Table(name)
	if err != nil {
		return err
	}
	if len(t) != 1 || t[0].Length != dm.BytesToSectors(info.Size) {
		ds.log.WithFields(logrus.Fields{"hash": info.Hash, "size": info.Size}).Info("reloading active device at the layer's size")
		if err := ds.dm.Load(name, ds.thinTable(info), ds.ro); err != nil {
			return err
		}
		if err := ds.dm.Resume(name, udevFlags); err != nil {
			return err
		}
	}
	info.loadedSize = info.Size
	return nil
}

// deactivate removes the layer's thin device if active. With deferred
// removal a device still open elsewhere is left to go at its last close.
func (ds *DeviceSet) deactivate(hash string) error {
	return ds.deactivateMode(hash, ds.cfg.DeferredRemove)
}

func (ds *DeviceSet) deactivateMode(hash string, deferred bool) error {
	name := ds.deviceName(hash)
	if err := faults.Point("deactivate"); err != nil {
		return err
	}
	var err error
	if deferred {
		_, err = ds.dm.RemoveDeferred(name, udevFlags)
	} else {
		err = ds.dm.Remove(name, udevFlags)
	}
	if errors.Is(err, dm.ErrNotFound) {
		return nil
	}
	return err
}

// MountDevice activates the layer's device and mounts it on path.
func (ds *DeviceSet) MountDevice(hash, path, mountLabel string) error {
	ds.layers.Lock(hash)
	defer ds.layers.Unlock(hash)
	info, err := ds.lookup(hash)
	if err != nil {
		return err
	}
	if info.Deleted {
		return fmt.Errorf("mount %q: %w", hash, ErrDeleted)
	}
	dev, err := ds.activate(info)
	if err != nil {
		return err
	}
	fsType, err := ds.filesystemOf(dev)
	if err == nil {
		err = faults.Point("mount")
	}
	if err == nil {
		mount := fsutil.MountLayer
		if ds.ro { // a flag to mount(2): no dm.mountopt text can undo it
			mount = fsutil.MountLayerReadOnly
		}
		err = mount(dev, path, fsType, ds.cfg.MountOptions, mountLabel)
	}
	if err == nil && fsType == "xfs" && ds.cfg.XFSNoSpaceMaxRetries != "" {
		if err = ds.setXFSNoSpaceRetries(dev); err != nil {
			_ = fsutil.Unmount(path, unix.MNT_DETACH)
		}
	}
	if err != nil {
		_ = ds.deactivate(hash)
		return fmt.Errorf("mount layer %q on %s: %w", hash, path, err)
	}
	return nil
}

// filesystemOf is the filesystem to mount a layer's device dev as: what
// its superblock holds, checked against the home record once per
// DeviceSet (every layer shares the base's filesystem). The record is
// input: it is never itself the mount type.
func (ds *DeviceSet) filesystemOf(dev string) (string, error) {
	ds.mu.Lock()
	fs, recorded := ds.mountFS, ds.meta.BaseDeviceFilesystem
	ds.mu.Unlock()
	if fs != "" {
		return fs, nil
	}
	probe, err := fsutil.ProbeDevice(dev)
	if err != nil {
		return "", err
	}
	if fs, err = ds.checkFilesystem(recorded, probe.Type); err != nil {
		return "", err
	}
	ds.mu.Lock()
	ds.mountFS = fs
	ds.mu.Unlock()
	return fs, nil
}

// checkFilesystem refuses a device whose superblock is not a filesystem
// the driver makes (xfs, ext4), and a home record naming another one. It
// returns the type to mount the device as.
func (ds *DeviceSet) checkFilesystem(recorded, probed string) (string, error) {
	record := ds.store.path(deviceSetFile)
	fs := mountType(probed)
	switch {
	case recorded != "" && mountType(recorded) != recorded:
		return "", fmt.Errorf("%w: home record %s: BaseDeviceFilesystem %q is not a filesystem layers are made with (xfs, ext4)",
			ErrCorruptMetadata, record, recorded)
	case fs == "":
		return "", fmt.Errorf("%w: the device holds %s, not xfs or ext4 (home record %s: BaseDeviceFilesystem %q)",
			ErrCorruptMetadata, probed, record, recorded)
	case recorded != "" && recorded != fs:
		return "", fmt.Errorf("%w: home record %s: BaseDeviceFilesystem %q, but the device holds %s",
			ErrCorruptMetadata, record, recorded, probed)
	}
	return fs, nil
}

// mountType is the type to mount a probed filesystem as, "" for one the
// driver does not make. An ext filesystem whose features make it look
// like ext2 or ext3 (dm.mkfsarg) is ext4's, as Moby mounts any ext.
func mountType(probed string) string {
	switch probed {
	case fsutil.FSTypeXFS:
		return fsutil.FSTypeXFS
	case fsutil.FSTypeExt4, "ext3", "ext2":
		return fsutil.FSTypeExt4
	}
	return ""
}

// UnmountDevice unmounts path, removes the (now empty) mount point as Moby
// does, and leaves the layer's device active in the idle set (or
// deactivates it: with the set off, or when it is open elsewhere).
func (ds *DeviceSet) UnmountDevice(hash, path string) error {
	if err := ds.CheckLayerID(hash); err != nil {
		return err
	}
	evicted, err := ds.unmountDevice(hash, path)
	ds.evictIdle(evicted) // after letting go of hash's lock: no lock order to keep
	return err
}

func (ds *DeviceSet) unmountDevice(hash, path string) ([]string, error) {
	ds.layers.Lock(hash)
	defer ds.layers.Unlock(hash)
	if err := faults.Point("unmount"); err != nil {
		return nil, err
	}
	if err := fsutil.Unmount(path, unix.MNT_DETACH); err != nil {
		return nil, fmt.Errorf("layer %q: %w", hash, err)
	}
	_ = unix.Rmdir(path)
	return ds.keepIdle(hash)
}

// setXFSNoSpaceRetries bounds how often xfs retries metadata writes when the
// pool is out of space (dm.xfs_nospace_max_retries), instead of forever.
func (ds *DeviceSet) setXFSNoSpaceRetries(dev string) error {
	real, err := filepath.EvalSymlinks(dev)
	if err != nil {
		return err
	}
	var st unix.Stat_t
	if err := unix.Stat(real, &st); err != nil {
		return err
	}
	p := fmt.Sprintf("/sys/fs/xfs/dm-%d/error/metadata/ENOSPC/max_retries", unix.Minor(st.Rdev))
	if err := os.WriteFile(p, []byte(ds.cfg.XFSNoSpaceMaxRetries), 0); err != nil {
		return fmt.Errorf("dm.xfs_nospace_max_retries: %w", err)
	}
	return nil
}

// deactivateAll unmounts whatever is mounted under <home>/mnt and removes
// every active device of this home's layers (Shutdown).
func (ds *DeviceSet) deactivateAll() error {
	mnt := filepath.Join(ds.home, "mnt")
	entries, _ := os.ReadDir(mnt)
	var errs []error
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		p := filepath.Join(mnt, e.Name())
		if err := fsutil.Unmount(p, unix.MNT_DETACH); err != nil {
			errs = append(errs, err)
		}
	}
	devs, err := ds.dm.List()
	if err != nil {
		return errors.Join(append(errs, err)...)
	}
	for _, d := range devs {
		if ds.isLayerDevice(d.Name) {
			// Waiting for udev here (ctl): Shutdown is rare, and a home
			// shut down should leave no /dev/mapper link behind.
			if err := ds.ctl.Remove(d.Name, udevFlags); err != nil && !errors.Is(err, dm.ErrNotFound) {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

// ActivateDevice (for snapshotters, which hand out block devices instead of
// mounting them) makes the layer's thin device active without mounting it
// and returns its node and the filesystem on it.
func (ds *DeviceSet) ActivateDevice(hash string) (dev, fsType string, err error) {
	ds.layers.Lock(hash)
	defer ds.layers.Unlock(hash)
	info, err := ds.lookup(hash)
	if err != nil {
		return "", "", fmt.Errorf("activate layer %q: %w", hash, err)
	}
	if info.Deleted {
		return "", "", fmt.Errorf("activate layer %q: %w", hash, ErrDeleted)
	}
	if dev, err = ds.activate(info); err != nil {
		return "", "", err
	}
	if fsType, err = ds.filesystemOf(dev); err != nil {
		return "", "", fmt.Errorf("activate layer %q: filesystem of %s: %w", hash, dev, err)
	}
	return dev, fsType, nil
}

// DeactivateDevice removes the layer's thin device if it is active (with
// deferred removal, at its last close when it is still open).
func (ds *DeviceSet) DeactivateDevice(hash string) error {
	if err := ds.CheckLayerID(hash); err != nil {
		return err
	}
	ds.layers.Lock(hash)
	defer ds.layers.Unlock(hash)
	if err := ds.deactivate(hash); err != nil {
		return fmt.Errorf("deactivate layer %q (%s): %w", hash, ds.deviceName(hash), err)
	}
	return nil
}
