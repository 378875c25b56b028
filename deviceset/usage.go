package deviceset

import (
	"errors"
	"fmt"

	dm "github.com/thinlayer/thinlayer/devmapper"
	"github.com/thinlayer/thinlayer/thinmeta"
)

// BytesOverParent is how much data the layer's thin device maps that the
// thin device of layer parent ("": the base device) does not map at the
// same place to the same data block: the blocks it changed or added over
// parent, as thin_delta counts them. For a snapshot of parent that is the
// space it takes beyond its parent's, which is containerd's Usage. The
// mappings are read through a metadata snapshot of the pool (which the
// kernel commits first, so writes that reached the device count).
func (ds *DeviceSet) BytesOverParent(hash, parent string) (uint64, error) {
	info, err := ds.Info(hash)
	if err != nil {
		return 0, fmt.Errorf("usage of layer %q: %w", hash, err)
	}
	pinfo, err := ds.Info(parent)
	if err != nil {
		return 0, fmt.Errorf("usage of layer %q: parent %q: %w", hash, parent, err)
	}
	var d thinmeta.Delta
	err = ds.readPoolMetadata(func(m *thinmeta.Metadata) (err error) {
		d, err = m.Delta(pinfo.DeviceID, info.DeviceID)
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("usage of layer %q (thin id %d) over %q (thin id %d): %w",
			hash, info.DeviceID, parent, pinfo.DeviceID, err)
	}
	return d.Added() * ds.pool.blockBytes, nil
}

// readPoolMetadata calls fn with the pool's metadata, read through its one
// metadata snapshot, under the look lock: it keeps every other reader
// out, in this process as in others (see LockLook). No DeviceSet lock is
// held: transactions go on meanwhile, the snapshot does not change.
func (ds *DeviceSet) readPoolMetadata(fn func(m *thinmeta.Metadata) error) error {
	unlock, err := LockLook(ds.home)
	if err != nil {
		return err
	}
	defer unlock()
	m, release, err := thinmeta.OpenLive(ds.dm, ds.pool.name, "")
	if err != nil {
		return err
	}
	err = fn(m)
	_ = m.Close()
	if rerr := release(); err == nil {
		err = rerr
	}
	return err
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
