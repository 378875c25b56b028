package deviceset

import (
	"errors"
	"fmt"

	dm "github.com/thinlayer/thinlayer/devmapper"
	"github.com/thinlayer/thinlayer/thinmeta"
)

// The methods here serve snapshotters (package snapshotter), which hand
// out block devices for their clients to mount instead of mounting them.

// ActivateDevice makes the layer's thin device active without mounting it
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

// MappedBytes is how much data the layer's thin device really holds: the
// mapped blocks the thin target reports for an active device, or those the
// pool's metadata records (read through a metadata snapshot) otherwise.
func (ds *DeviceSet) MappedBytes(hash string) (uint64, error) {
	info, err := ds.Info(hash)
	if err != nil {
		return 0, err
	}
	if st, err := ds.dm.ThinDeviceStatus(ds.deviceName(hash)); err == nil {
		return uint64(st.MappedSectors) * dm.SectorSize, nil
	} else if !errors.Is(err, dm.ErrNotFound) {
		return 0, fmt.Errorf("usage of layer %q: %w", hash, err)
	}
	blocks, err := ds.mappedBlocksOffline(info.DeviceID)
	if err != nil {
		return 0, fmt.Errorf("usage of layer %q (thin id %d): %w", hash, info.DeviceID, err)
	}
	return blocks * ds.pool.blockBytes, nil
}

// mappedBlocksOffline reads a thin device's mapped blocks from the pool's
// metadata (readPoolMetadata).
func (ds *DeviceSet) mappedBlocksOffline(id dm.ThinID) (uint64, error) {
	var devs []thinmeta.Device
	err := ds.readPoolMetadata(func(m *thinmeta.Metadata) (err error) {
		devs, err = m.Devices()
		return err
	})
	if err != nil {
		return 0, err
	}
	for _, d := range devs {
		if d.ID == id {
			return d.MappedBlocks, nil
		}
	}
	return 0, fmt.Errorf("%w: thin id %d is not in pool %s", ErrNotFound, id, ds.pool.name)
}
