package deviceset

import (
	"errors"
	"fmt"
	"strings"

	units "github.com/docker/go-units"

	dm "github.com/thinlayer/thinlayer/devmapper"
	"github.com/thinlayer/thinlayer/dmopts"
	"github.com/thinlayer/thinlayer/internal/faults"
)

// AddDevice creates layer hash as a snapshot of baseHash ("" is the base
// device). storageOpt may hold "size" to make it larger than its parent.
// When it fails, the layer does not exist.
func (ds *DeviceSet) AddDevice(hash, baseHash string, storageOpt map[string]string) error {
	if err := ds.checkNewLayer(hash, baseHash); err != nil {
		return fmt.Errorf("create layer %q: %w", hash, err)
	}
	size, err := parseStorageOpt(storageOpt)
	if err != nil {
		return fmt.Errorf("create layer %q: %w", hash, err)
	}
	defer ds.lockPair(hash, baseHash)()
	parent, err := ds.lookup(baseHash)
	if err != nil {
		return fmt.Errorf("create layer %q: parent %q: %w", hash, baseHash, err)
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
	if err := ds.createLayer(info, parent); err != nil {
		return fmt.Errorf("create layer %q: %w", hash, err)
	}
	return nil
}

// checkNewLayer refuses ids that cannot name a layer here: not a file
// name, the parent itself, or too long for a device-mapper name.
func (ds *DeviceSet) checkNewLayer(hash, baseHash string) error {
	switch {
	case ds.ro:
		return ErrReadOnly
	case hash == "":
		return fmt.Errorf("%w: empty", ErrInvalidHash)
	case hash == baseHash:
		return fmt.Errorf("%w: parent is the layer itself", ErrInvalidHash)
	}
	if err := ds.CheckLayerID(hash); err != nil {
		return err
	}
	if err := ds.CheckLayerID(baseHash); err != nil {
		return fmt.Errorf("parent: %w", err)
	}
	return nil
}

// lockPair takes two layer locks in byte order of their ids, whatever
// their roles: two creates naming each other as parent cannot deadlock.
func (ds *DeviceSet) lockPair(a, b string) (unlock func()) {
	if b < a {
		a, b = b, a
	}
	ds.layers.Lock(a)
	ds.layers.Lock(b)
	return func() {
		ds.layers.Unlock(b)
		ds.layers.Unlock(a)
	}
}

// createLayer snapshots parent and, for a layer larger than its parent,
// grows its filesystem. The grow is marked before the snapshot commits,
// so a crash before it finished is completed at the next start; any
// failure after the commit deletes the new layer again.
func (ds *DeviceSet) createLayer(info, parent *DevInfo) error {
	grow := info.Size > parent.Size
	if grow {
		if err := ds.markGrow(info.Hash); err != nil {
			return err
		}
	}
	created, err := ds.snapshot(info, parent)
	if err == nil && grow {
		err = ds.growFS(info)
	}
	if err == nil {
		ds.cache(info)
		return nil
	}
	if created {
		err = ds.undoCreate(info, parent.Hash, err)
	}
	if grow {
		ds.unmarkGrow(info.Hash)
	}
	return err
}

// undoCreate deletes a layer whose create failed after its commit. Called
// with the layer locks of info and its parent held.
func (ds *DeviceSet) undoCreate(info *DevInfo, parent string, cause error) error {
	ds.txMu.Lock()
	err := ds.deleteTx(info, false, parent)
	ds.txMu.Unlock()
	if err != nil {
		ds.cache(info) // it stays, whole but for the failed step
		return errors.Join(cause, fmt.Errorf("undo create: %w", err))
	}
	return cause
}

func parseStorageOpt(opts map[string]string) (uint64, error) {
	var size uint64
	for k, v := range opts {
		if strings.ToLower(k) != "size" {
			return 0, fmt.Errorf("unknown storage option %q", k)
		}
		n, err := dmopts.DeviceSize(v)
		if err != nil {
			return 0, fmt.Errorf("storage option size: %w", err)
		}
		size = n
	}
	return size, nil
}

// snapshot runs the create_snap transaction and reports whether it
// committed. An active origin is suspended across the message alone (so
// its in-flight writes are in the snapshot) and always resumed: not while
// the transaction waits for txMu, builds the id index or writes its
// records, or a container's I/O would stall behind another transaction.
func (ds *DeviceSet) snapshot(info, parent *DevInfo) (created bool, err error) {
	origin := ds.deviceName(parent.Hash)
	active, redefer, err := ds.prepareOrigin(parent.Hash, origin)
	if err != nil {
		return false, err
	}
	if redefer {
		defer func() { _ = ds.deactivate(parent.Hash) }()
	}
	snap := func(id dm.ThinID) error { return ds.dm.CreateSnap(ds.pool.name, id, parent.DeviceID) }
	if active {
		snap = ds.suspendedAround(origin, snap)
	}
	ds.txMu.Lock()
	defer ds.txMu.Unlock()
	err = ds.createTx(info, snap, parent.Hash)
	info.pristine = err == nil
	return err == nil, err
}

// prepareOrigin reports whether the origin is active, to be suspended for
// the snapshot. An idle origin is deactivated instead. A deferred removal
// pending on it is taken back, so that it can't vanish mid-suspend;
// redefer says the caller must let it go again after.
func (ds *DeviceSet) prepareOrigin(hash, origin string) (active, redefer bool, err error) {
	cur, err := ds.dm.Info(origin)
	if errors.Is(err, dm.ErrNotFound) {
		return false, false, nil
	}
	if err != nil || ds.dropIdleOrigin(hash, cur) {
		return false, false, err
	}
	if !cur.DeferredRemove {
		return true, false, nil
	}
	if err := ds.dm.CancelDeferredRemove(origin); err != nil {
		return false, false, nil // it went meanwhile
	}
	return true, true, nil
}

// suspendedAround wraps a pool message so that origin is suspended just
// across it (the caller holds txMu by then). An origin gone meanwhile has
// nothing in flight: the message goes out without.
func (ds *DeviceSet) suspendedAround(origin string, op poolOp) poolOp {
	return func(id dm.ThinID) error {
		if err := faults.Point("snapshot.suspend"); err != nil {
			return err
		}
		err := ds.dm.Suspend(origin, 0)
		if errors.Is(err, dm.ErrNotFound) {
			return op(id)
		}
		if err != nil {
			return err
		}
		return errors.Join(op(id), ds.resumeOrigin(origin))
	}
}

// dropIdleOrigin deactivates an idle origin instead of suspending it for a
// snapshot: one ioctl instead of two and a flush, and the next snapshot of
// it needs neither. It reports whether the origin is inactive now.
func (ds *DeviceSet) dropIdleOrigin(hash string, cur dm.Info) bool {
	if ds.idle == nil || cur.OpenCount > 0 || !ds.idle.take(hash) {
		return false
	}
	err := ds.dm.Remove(cur.Name, udevFlags)
	if err == nil || errors.Is(err, dm.ErrNotFound) {
		return true
	}
	ds.idle.putBack(hash) // opened meanwhile: snapshot it suspended, like any active origin
	return false
}

// resumeOrigin resumes a suspended origin. An injected fault there still
// resumes it (a fault must not leave a mounted filesystem frozen); a kill
// leaves it suspended, for the next start to resume.
func (ds *DeviceSet) resumeOrigin(origin string) error {
	ferr := faults.Point("snapshot.resume")
	if err := ds.dm.Resume(origin, udevFlags); err != nil {
		return errors.Join(ferr, fmt.Errorf("resume origin %s: %w", origin, err))
	}
	return ferr
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
	blockBytes := ds.pool.blockBytes
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
