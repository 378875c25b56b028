package deviceset

import (
	"context"
	"errors"
	"fmt"

	units "github.com/docker/go-units"
	"github.com/sirupsen/logrus"

	dm "github.com/thinlayer/thinlayer/devmapper"
	"github.com/thinlayer/thinlayer/fsutil"
	"github.com/thinlayer/thinlayer/internal/faults"
)

// setupBase checks the base device (hash "") or creates it: a thin device
// with a fresh filesystem, from which every layer without a parent is a
// snapshot.
func (ds *DeviceSet) setupBase() error {
	ds.layers.Lock("")
	defer ds.layers.Unlock("")
	info, err := ds.lookup("")
	if err != nil && !errors.Is(err, ErrNotFound) {
		// A damaged record costs the base (new layers without a parent),
		// not the home: every other layer goes on.
		ds.log.WithError(err).Error("base device unusable: layers without a parent cannot be created")
		return nil
	}
	if errors.Is(err, ErrNotFound) && ds.recordedBaseUUID() != "" {
		ds.log.Errorf("base device metadata %s is missing, but the home had a base device (UUID %s): layers without a parent cannot be created",
			ds.store.path(baseFileName), ds.recordedBaseUUID())
		return nil
	}
	if err == nil && info.Initialized && !info.Deleted {
		if err := ds.verifyBase(info); err != nil {
			return err
		}
		if err := ds.settleBaseGrow(info); err != nil {
			return err
		}
		return ds.growBase(info)
	}
	if err == nil {
		// Left half-made by a crash during the first Init: start over.
		ds.log.Info("removing uninitialized base device")
		if err := ds.deactivate(""); err != nil {
			return err
		}
		ds.txMu.Lock()
		err = ds.deleteTx(info, false)
		ds.txMu.Unlock()
		if err != nil {
			return fmt.Errorf("remove uninitialized base device: %w", err)
		}
		ds.forget("")
	}
	if ds.cfg.ThinPoolDevice != "" {
		if err := ds.checkPoolEmpty(); err != nil {
			return err
		}
	}
	if err := ds.store.removeBaseGrow(); err != nil { // an old base's
		return err
	}
	return ds.createBase()
}

func (ds *DeviceSet) recordedBaseUUID() string {
	ds.mu.Lock()
	defer ds.mu.Unlock()
	return ds.meta.BaseDeviceUUID
}

// checkPoolEmpty refuses to take over a user's pool that already holds data.
func (ds *DeviceSet) checkPoolEmpty() error {
	st, err := ds.poolStatus(false)
	if err != nil {
		return err
	}
	if st.UsedDataBlocks != 0 || st.TransactionID != 0 {
		return fmt.Errorf("thin pool %s is not empty (transaction id %d, %d data blocks used): give thinlayer a pool of its own",
			ds.pool.name, st.TransactionID, st.UsedDataBlocks)
	}
	return nil
}

func (ds *DeviceSet) createBase() error {
	fs := ds.cfg.Filesystem
	if fs == "" {
		fs = fsutil.DefaultFilesystem()
	}
	info := &DevInfo{Hash: "", Size: ds.cfg.BaseSize}
	ds.txMu.Lock()
	err := ds.createTx(info, func(id dm.ThinID) error { return ds.dm.CreateThin(ds.pool.name, id) })
	ds.txMu.Unlock()
	if err != nil {
		return fmt.Errorf("create base device: %w", err)
	}
	ds.cache(info)
	dev, err := ds.activate(info)
	if err != nil {
		return err
	}
	defer func() { _ = ds.deactivate("") }()
	if err := faults.Point("base.mkfs"); err != nil {
		return err
	}
	if err := fsutil.Mkfs(context.Background(), dev, fs, ds.cfg.MkfsArgs); err != nil {
		return fmt.Errorf("create base device: %w", err)
	}
	probe, err := fsutil.ProbeDevice(dev)
	if err != nil {
		return fmt.Errorf("create base device: read back filesystem: %w", err)
	}
	if err := faults.Point("base.initialized"); err != nil {
		return err
	}
	info.Initialized = true
	if err := ds.store.saveDevice(info); err != nil {
		return err
	}
	if err := faults.Point("base.uuid"); err != nil {
		return err
	}
	ds.log.WithFields(logrus.Fields{"fs": probe.Type, "uuid": probe.UUID, "size": info.Size}).Info("created base device")
	return ds.updateMeta(func(m *setMetadata) error {
		m.BaseDeviceUUID, m.BaseDeviceFilesystem = probe.UUID, mountType(probe.Type)
		return nil
	})
}

// verifyBase checks that the base device is the one this home made: its
// filesystem UUID, read from the superblock, must match the record. A
// mismatch means a different pool than last time.
func (ds *DeviceSet) verifyBase(info *DevInfo) error {
	dev, err := ds.activate(info)
	if err != nil {
		return fmt.Errorf("base device (thin id %d in pool %s): %w: is this home's pool the one it was made on?", info.DeviceID, ds.pool.name, err)
	}
	defer func() { _ = ds.deactivate("") }()
	probe, err := fsutil.ProbeDevice(dev)
	if err != nil {
		return fmt.Errorf("base device: %w", err)
	}
	var recorded string
	err = ds.updateMeta(func(m *setMetadata) error {
		if m.BaseDeviceUUID == "" { // a home from before UUIDs were kept
			m.BaseDeviceUUID = probe.UUID
		} else if m.BaseDeviceUUID != probe.UUID {
			return fmt.Errorf("base device UUID %s does not match the recorded %s: this home is being opened on a different thin pool than last time",
				probe.UUID, m.BaseDeviceUUID)
		}
		fs, err := ds.checkFilesystem(m.BaseDeviceFilesystem, probe.Type)
		if err != nil {
			return fmt.Errorf("base device: %w", err)
		}
		m.BaseDeviceFilesystem, ds.mountFS, recorded = fs, fs, fs // mountFS is mu's too
		return nil
	})
	if err == nil && ds.cfg.Filesystem != "" && ds.cfg.Filesystem != recorded {
		ds.log.Warnf("base device has %s; dm.fs=%s is ignored", recorded, ds.cfg.Filesystem)
	}
	return err
}

// growBase grows the base device to a larger dm.basesize; it never
// shrinks. The intent record comes first (see runBaseGrow).
func (ds *DeviceSet) growBase(info *DevInfo) error {
	if !ds.cfg.BaseSizeSet || ds.cfg.BaseSize == info.Size {
		return nil
	}
	if ds.cfg.BaseSize < info.Size {
		return fmt.Errorf("dm.basesize %s is smaller than the base device's %s: it can only grow",
			units.HumanSize(float64(ds.cfg.BaseSize)), units.HumanSize(float64(info.Size)))
	}
	if err := faults.Point("basesize.grow"); err != nil {
		return err
	}
	g := growRecord{From: info.Size, To: ds.cfg.BaseSize}
	if err := ds.store.saveBaseGrow(g); err != nil {
		return fmt.Errorf("grow base device: %w", err)
	}
	return ds.runBaseGrow(info, g)
}
