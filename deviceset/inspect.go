package deviceset

import (
	"errors"
	"fmt"
	"os"

	"github.com/sirupsen/logrus"

	dm "github.com/thinlayer/thinlayer/devmapper"
	"github.com/thinlayer/thinlayer/fsutil"
)

// Views of a home for tools (the thinlayer command): read-only, except
// DeleteOrphanThin, the one pool change garbage collection needs that only
// the DeviceSet can make safely (it holds txMu, which serialises thin id
// allocation).

// ErrIDInUse: a thin id a caller took for an orphan is named by a layer.
var ErrIDInUse = errors.New("thin id belongs to a layer")

// HomeRecord is the home-wide record, <home>/metadata/deviceset-metadata.
type HomeRecord struct {
	NextDeviceID         int
	BaseDeviceUUID       string
	BaseDeviceFilesystem string
}

// HomeRecord returns the home-wide record as loaded at Open.
func (ds *DeviceSet) HomeRecord() HomeRecord {
	ds.mu.Lock()
	defer ds.mu.Unlock()
	return HomeRecord{ds.meta.NextDeviceID, ds.meta.BaseDeviceUUID, ds.meta.BaseDeviceFilesystem}
}

// Home is the directory the DeviceSet was opened on.
func (ds *DeviceSet) Home() string { return ds.home }

// DevicePrefix is the prefix of the device-mapper names of home's devices
// ("docker-<major>:<minor>-<inode>"), as Moby derives it.
func DevicePrefix(home string) (string, error) { return devicePrefix(home) }

// Leave lets go of the home — its lock, the control node — and takes down
// only what this open brought up: the pool, when it made it and no device
// is active on it. Unlike Shutdown it unmounts nothing and deactivates no
// layer, so a read-only look leaves a home in use (by an engine that takes
// no home lock, or a `thinlayer mount`) as it found it. Later calls, and
// Shutdown or Release after it, do nothing.
func (ds *DeviceSet) Leave() error {
	var err error
	ds.shutdown.Do(func() {
		if ds.deleter != nil {
			ds.deleter.close()
		}
		if ds.pool.created {
			err = ds.removePool()
			if errors.Is(err, dm.ErrBusy) {
				err = nil // a layer is active on it: it stays for that
			}
		}
		ds.close()
	})
	return err
}

// ProbeBase reads the filesystem superblock of the base device. A base
// device that is not active is activated for the look and deactivated
// after (under the look lock: another reader's probe may be under way);
// on a read-only home its pool refuses writes throughout.
func (ds *DeviceSet) ProbeBase() (fsutil.FSInfo, error) {
	ds.layers.Lock("")
	defer ds.layers.Unlock("")
	unlock, err := LockLook(ds.home)
	if err != nil {
		return fsutil.FSInfo{}, fmt.Errorf("base device: %w", err)
	}
	defer unlock()
	info, err := ds.lookup("")
	if err != nil {
		return fsutil.FSInfo{}, fmt.Errorf("base device: %w", err)
	}
	name := ds.deviceName("")
	_, err = ds.dm.Info(name)
	wasActive := err == nil
	if err != nil && !errors.Is(err, dm.ErrNotFound) {
		return fsutil.FSInfo{}, err
	}
	dev, err := ds.activate(info)
	if err != nil {
		return fsutil.FSInfo{}, err
	}
	probe, err := fsutil.ProbeDevice(dev)
	if !wasActive {
		if rerr := ds.dm.Remove(name, udevFlags); rerr != nil && !errors.Is(rerr, dm.ErrNotFound) {
			err = errors.Join(err, rerr)
		}
	}
	if err != nil {
		return probe, fmt.Errorf("base device %s: %w", name, err)
	}
	return probe, nil
}

// DeleteOrphanThin deletes thin device id from the pool, refusing with
// ErrIDInUse when a DevInfo names it. Every DevInfo is read first; one
// that cannot be read stops it, since its id is unknown. The device must
// not be active (the pool answers EBUSY). txMu is held from the read to
// the delete: a create between its pool message and its DevInfo has a
// thin device no DevInfo names yet, which must not be taken for an orphan.
func (ds *DeviceSet) DeleteOrphanThin(id dm.ThinID) error {
	if ds.ro {
		return fmt.Errorf("delete thin id %d: %w", id, ErrReadOnly)
	}
	if err := id.Check(); err != nil {
		return fmt.Errorf("delete thin id %d: %w", id, err)
	}
	ds.txMu.Lock()
	defer ds.txMu.Unlock()
	owner, owned, err := ds.strictIDOwner(id)
	if err != nil {
		return fmt.Errorf("delete thin id %d: %w", id, err)
	}
	if owned {
		return fmt.Errorf("delete thin id %d: %w %q", id, ErrIDInUse, owner)
	}
	if err := ds.pc.DeleteThin(ds.pool.name, id); err != nil {
		return fmt.Errorf("delete thin id %d from pool %s: %w", id, ds.pool.name, err)
	}
	ds.log.WithFields(logrus.Fields{"device_id": id, "pool": ds.pool.name}).Debug("deleted orphan thin device")
	return nil
}

// strictIDOwner is idOwner that fails on a DevInfo it cannot read.
func (ds *DeviceSet) strictIDOwner(id dm.ThinID) (string, bool, error) {
	hashes, err := ds.store.listDevices()
	if err != nil {
		return "", false, err
	}
	for _, h := range hashes {
		info, err := ds.store.loadDevice(h)
		if errors.Is(err, os.ErrNotExist) {
			continue // removed meanwhile
		}
		if err != nil {
			return "", false, err
		}
		if info.DeviceID == id {
			return h, true, nil
		}
	}
	return "", false, nil
}
