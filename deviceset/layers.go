package deviceset

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"unsafe"

	units "github.com/docker/go-units"
	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"

	dm "github.com/thinlayer/thinlayer/devmapper"
	"github.com/thinlayer/thinlayer/fsutil"
)

// AddDevice creates layer hash as a snapshot of baseHash ("" is the base
// device). storageOpt may hold "size" to make it larger than its parent.
func (ds *DeviceSet) AddDevice(hash, baseHash string, storageOpt map[string]string) error {
	if ds.ro {
		return fmt.Errorf("create layer %q: %w", hash, ErrReadOnly)
	}
	if hash == baseHash {
		return fmt.Errorf("create layer %q: parent is the layer itself", hash)
	}
	size, err := parseStorageOpt(storageOpt)
	if err != nil {
		return fmt.Errorf("create layer %q: %w", hash, err)
	}
	// Parent before child (the documented lock order).
	ds.layers.Lock(baseHash)
	defer ds.layers.Unlock(baseHash)
	ds.layers.Lock(hash)
	defer ds.layers.Unlock(hash)

	parent, err := ds.lookup(baseHash)
	if err != nil {
		return fmt.Errorf("create layer %q: parent: %w", hash, err)
	}
	if parent.Deleted {
		return fmt.Errorf("create layer %q: parent %q: %w", hash, baseHash, ErrDeleted)
	}
	if ds.HasDevice(hash) {
		return fmt.Errorf("create layer %q: %w", hash, ErrExists)
	}
	if size == 0 {
		size = parent.Size
	}
	if size < parent.Size {
		return fmt.Errorf("create layer %q: size %s is smaller than its parent's %s", hash,
			units.HumanSize(float64(size)), units.HumanSize(float64(parent.Size)))
	}
	if err := ds.poolHasFreeSpace(); err != nil {
		return fmt.Errorf("create layer %q: %w", hash, err)
	}
	// Moby marks only the base initialized (it carries the mkfs); match it.
	info := &DevInfo{Hash: hash, Size: size}
	if err := ds.snapshot(info, parent); err != nil {
		return fmt.Errorf("create layer %q: %w", hash, err)
	}
	ds.cache(info)
	if size > parent.Size {
		return ds.growFS(info)
	}
	return nil
}

func parseStorageOpt(opts map[string]string) (uint64, error) {
	var size uint64
	for k, v := range opts {
		if strings.ToLower(k) != "size" {
			return 0, fmt.Errorf("unknown storage option %q", k)
		}
		n, err := units.RAMInBytes(v)
		if err != nil || n <= 0 {
			return 0, fmt.Errorf("storage option size: invalid size %q", v)
		}
		size = uint64(n)
	}
	return size, nil
}

// snapshot runs the create_snap transaction. An active origin is suspended
// around the message (so its in-flight writes are in the snapshot) and
// always resumed.
func (ds *DeviceSet) snapshot(info, parent *DevInfo) error {
	origin := ds.deviceName(parent.Hash)
	cur, err := ds.dm.Info(origin)
	active := err == nil && !cur.DeferredRemove
	if err != nil && !errors.Is(err, dm.ErrNotFound) {
		return err
	}
	if cur.DeferredRemove {
		// A deferred removal pending on the origin: take it back so the
		// device can't vanish mid-suspend, and let it go again after.
		if err := ds.dm.CancelDeferredRemove(origin); err == nil {
			active = true
			defer func() { _ = ds.deactivate(parent.Hash) }()
		}
	}
	if active {
		if err := ds.dm.Suspend(origin, 0); err != nil {
			return err
		}
		defer func() {
			if err := ds.dm.Resume(origin, udevFlags); err != nil {
				ds.log.WithError(err).WithField("hash", parent.Hash).Error("resume origin after snapshot")
			}
		}()
	}
	ds.txMu.Lock()
	defer ds.txMu.Unlock()
	return ds.createTx(info, func(id uint32) error {
		return ds.dm.CreateSnap(ds.pool.name, id, uint32(parent.DeviceID))
	})
}

// DeleteDevice removes a layer: its device is deactivated (EBUSY if still
// mounted or open), then its thin device and DevInfo go in one transaction.
// With deferred deletion (and not syncDelete) a device still open elsewhere
// is marked deleted instead, and removed by the worker once closed.
func (ds *DeviceSet) DeleteDevice(hash string, syncDelete bool) error {
	if ds.ro {
		return fmt.Errorf("remove layer %q: %w", hash, ErrReadOnly)
	}
	ds.layers.Lock(hash)
	defer ds.layers.Unlock(hash)
	info, err := ds.lookup(hash)
	if err != nil {
		return err
	}
	// Deferred removal only pays off together with deferred deletion;
	// otherwise the pool's delete would just find the device still open.
	if err := ds.deactivateMode(hash, ds.cfg.DeferredRemove && ds.cfg.DeferredDelete); err != nil {
		return fmt.Errorf("remove layer %q: device %s is busy: %w", hash, ds.deviceName(hash), err)
	}
	ds.txMu.Lock()
	err = ds.deleteTx(info, ds.cfg.DoBlkDiscard)
	ds.txMu.Unlock()
	if ds.deferDelete(err, syncDelete) {
		ds.log.WithField("hash", hash).Debug("device busy: deletion deferred")
		return ds.markDeleted(info)
	}
	if err != nil {
		return fmt.Errorf("remove layer %q: %w", hash, err)
	}
	ds.forget(hash)
	ds.log.WithFields(logrus.Fields{"hash": hash, "device_id": info.DeviceID}).Debug("deleted")
	return nil
}

// discard issues BLKDISCARD over the whole (inactive) device, so that a
// loopback data file gets its space back: deleting a thin device frees its
// blocks in the pool but tells the data device nothing (dm.blkdiscard).
// A device that is still active is open somewhere — a mount elsewhere would
// lose its data — and is left alone. It reports whether it discarded.
func (ds *DeviceSet) discard(info *DevInfo) (bool, error) {
	name := ds.deviceName(info.Hash)
	if _, err := ds.dm.Info(name); err == nil {
		return false, nil
	}
	dev, err := ds.activate(info)
	if err != nil {
		return false, err
	}
	discarded, err := blkDiscard(dev, info.Size)
	if rerr := ds.dm.Remove(name, udevFlags); rerr != nil {
		err = errors.Join(err, rerr)
	}
	return discarded, err
}

func blkDiscard(dev string, size uint64) (bool, error) {
	// O_EXCL: a mount that races us in gets EBUSY, and so do we.
	f, err := os.OpenFile(dev, os.O_WRONLY|unix.O_CLOEXEC|unix.O_EXCL, 0)
	if errors.Is(err, unix.EBUSY) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	defer f.Close()
	rng := [2]uint64{0, size}
	_, _, errno := unix.Syscall(unix.SYS_IOCTL, f.Fd(), unix.BLKDISCARD, uintptr(unsafe.Pointer(&rng)))
	if errno != 0 && errno != unix.EOPNOTSUPP {
		return true, fmt.Errorf("discard %s: %w", dev, errno)
	}
	return errno == 0, nil
}

// poolHasFreeSpace refuses new layers while the pool has less free data or
// metadata space than dm.min_free_space says.
func (ds *DeviceSet) poolHasFreeSpace() error {
	pct := uint64(ds.cfg.MinFreeSpacePercent)
	if pct == 0 {
		return nil
	}
	st, err := ds.poolStatus(true)
	if err != nil {
		return err
	}
	blockBytes := uint64(ds.cfg.BlockSize)
	if t, err := ds.dm.Table(ds.pool.name); err == nil && len(t) == 1 {
		if p, err := dm.ParseThinPool(t[0].Params); err == nil {
			blockBytes = p.DataBlockSize.Bytes()
		}
	}
	needData := max(uint64(st.TotalDataBlocks)*pct/100, 1)
	if free := uint64(st.TotalDataBlocks - st.UsedDataBlocks); free < needData {
		return fmt.Errorf("%w: thin pool %s has %s of data space free, less than the %s (%d%%) dm.min_free_space requires: free space in the pool (remove unused layers), grow it, or lower dm.min_free_space",
			ErrNoSpace, ds.pool.name, units.HumanSize(float64(free*blockBytes)), units.HumanSize(float64(needData*blockBytes)), pct)
	}
	needMeta := max(uint64(st.TotalMetaBlocks)*pct/100, 1)
	if free := uint64(st.TotalMetaBlocks - st.UsedMetaBlocks); free < needMeta {
		return fmt.Errorf("%w: thin pool %s has %s of metadata space free, less than the %s (%d%%) dm.min_free_space requires: remove unused layers, grow the metadata device, or lower dm.min_free_space",
			ErrNoSpace, ds.pool.name, units.HumanSize(float64(free*dm.MetaBlockSize)), units.HumanSize(float64(needMeta*dm.MetaBlockSize)), pct)
	}
	return nil
}

// ErrNoSpace: the pool is (nearly) full.
var ErrNoSpace = errors.New("not enough free space in thin pool")

// growFS grows a layer's filesystem to its (larger) device size.
func (ds *DeviceSet) growFS(info *DevInfo) error {
	dev, err := ds.activate(info)
	if err != nil {
		return err
	}
	defer func() { _ = ds.deactivate(info.Hash) }()
	fsType, err := ds.filesystemOf(dev)
	if err != nil {
		return err
	}
	mnt, err := os.MkdirTemp("", "thinlayer-grow-")
	if err != nil {
		return err
	}
	defer os.Remove(mnt)
	if err := fsutil.GrowFS(context.Background(), fsType, dev, mnt); err != nil {
		return fmt.Errorf("grow filesystem of layer %q: %w", info.Hash, err)
	}
	return nil
}
