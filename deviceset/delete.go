package deviceset

import (
	"errors"
	"fmt"
	"os"
	"unsafe"

	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"

	dm "github.com/thinlayer/thinlayer/devmapper"
	"github.com/thinlayer/thinlayer/internal/faults"
)

// DeleteDevice removes a layer: its device is deactivated (EBUSY if still
// mounted or open), then its thin device and DevInfo go in one transaction.
// With deferred deletion (and not syncDelete) a device still open elsewhere
// is marked deleted instead, and removed by the worker once closed.
func (ds *DeviceSet) DeleteDevice(hash string, syncDelete bool) error {
	return ds.deleteLayer(hash, syncDelete, false)
}

// deleteMarked is the deferred deletion worker's delete: only of a layer
// still marked deleted. One deleted by a Remove since, and perhaps made
// anew under the same id, is not the worker's any more.
func (ds *DeviceSet) deleteMarked(hash string) error { return ds.deleteLayer(hash, true, true) }

func (ds *DeviceSet) deleteLayer(hash string, syncDelete, onlyMarked bool) error {
	if ds.ro {
		return fmt.Errorf("remove layer %q: %w", hash, ErrReadOnly)
	}
	ds.layers.Lock(hash)
	defer ds.layers.Unlock(hash)
	info, err := ds.lookup(hash)
	if err == nil && onlyMarked && !info.Deleted {
		err = fmt.Errorf("%w: %q is no longer marked deleted", ErrNotFound, hash)
	}
	if err != nil {
		return fmt.Errorf("remove layer %q: %w", hash, err)
	}
	// An idle device that is to be discarded is discarded through, and
	// removed after that: one activation less.
	keep := ds.idle != nil && ds.idle.take(hash) && ds.cfg.DoBlkDiscard && !info.pristine
	// Deferred removal only pays off together with deferred deletion;
	// otherwise the pool's delete would just find the device still open.
	if !keep {
		if err := ds.deactivateMode(hash, ds.cfg.DeferredRemove && ds.cfg.DeferredDelete); err != nil {
			return fmt.Errorf("remove layer %q: deactivate device %s: %w", hash, ds.deviceName(hash), err)
		}
	}
	ds.txMu.Lock()
	err = ds.deleteTx(info, ds.cfg.DoBlkDiscard)
	ds.txMu.Unlock()
	if keep && err != nil {
		_ = ds.deactivateMode(hash, ds.cfg.DeferredRemove && ds.cfg.DeferredDelete)
	}
	if ds.deferDelete(err, syncDelete) {
		ds.log.WithField("hash", hash).Debug("device busy: deletion deferred")
		return ds.markDeleted(info)
	}
	if err != nil {
		return fmt.Errorf("remove layer %q: %w", hash, err)
	}
	ds.forget(hash)
	if ds.deleter != nil {
		ds.deleter.drop(hash) // deleted here: the worker must not find it again
	}
	ds.log.WithFields(logrus.Fields{"hash": hash, "device_id": info.DeviceID}).Debug("deleted")
	return nil
}

// deleteTx deletes a layer's thin device and DevInfo in one transaction,
// discarding its blocks first when asked. The discard destroys the layer's
// data, so it comes after the intent: a failure from there on finishes the
// delete (here, or at the next start). A thin id another DevInfo names too
// is left in the pool: only this layer's record goes. Called with txMu held,
// the layer locks of info and of held, and the device inactive.
func (ds *DeviceSet) deleteTx(info *DevInfo, discard bool, held ...string) error {
	if err := ds.beginTx(append(held, info.Hash)...); err != nil {
		return err
	}
	t := transaction{OpenTransactionID: ds.txID + 1, DeviceIDHash: info.Hash, DeviceID: info.DeviceID}
	owner, shared := ds.index().other(info.DeviceID, info.Hash)
	if err := faults.Point("delete.intent"); err != nil {
		return err
	}
	if err := ds.store.saveTransaction(t); err != nil {
		return err
	}
	if shared {
		ds.log.WithFields(logrus.Fields{"hash": info.Hash, "device_id": info.DeviceID, "other": owner}).
			Warn("thin id named by another layer too: keeping the thin device")
	} else if destroyed, err := ds.deleteThin(info, discard); err != nil {
		if !destroyed {
			return ds.withdraw(t, err)
		}
		ds.settleFailed(t) // the data is gone: finish the delete
		if ds.unsettled {
			return err
		}
		return nil
	}
	if err := ds.commitTx(t, func() error { return ds.store.removeDevice(info.Hash) }); err != nil {
		ds.settleFailed(t)
		if ds.unsettled {
			return err
		}
	}
	ds.index().remove(info.DeviceID, info.Hash)
	return nil
}

// deleteThin discards (if asked) and deletes the layer's thin device. It
// reports whether the layer's data was destroyed on the way.
func (ds *DeviceSet) deleteThin(info *DevInfo, discard bool) (destroyed bool, err error) {
	if discard {
		if err := faults.Point("delete.discard"); err != nil {
			return false, err
		}
		if destroyed, err = ds.discard(info); err != nil {
			return destroyed, err
		}
	}
	if err := faults.Point("delete.message"); err != nil {
		return destroyed, err
	}
	err = ds.pc.DeleteThin(ds.pool.name, info.DeviceID)
	if errors.Is(err, dm.ErrNoThinDevice) {
		err = nil // a DevInfo whose device is missing: its record still goes
	}
	return destroyed, err
}

// withdraw closes the intent of a delete that did not happen (the layer is
// whole), or the next start would finish a delete the caller was told had
// failed. If even that fails, the next transaction settles it first.
func (ds *DeviceSet) withdraw(t transaction, cause error) error {
	err := faults.Point("delete.withdraw")
	if err == nil {
		t.OpenTransactionID = ds.txID
		err = ds.store.saveTransaction(t)
	}
	if err != nil {
		ds.unsettled = true
		return errors.Join(cause, err)
	}
	return cause
}

// discard issues BLKDISCARD over the whole device, so that a loopback
// data file gets its space back: deleting a thin device frees its blocks
// in the pool but tells the data device nothing (dm.blkdiscard). A
// snapshot never active since this process made it owns no block, and is
// not discarded. A device open somewhere — a mount elsewhere would lose
// its data — is left alone; an idle one is discarded through, and removed.
// It reports whether it discarded.
func (ds *DeviceSet) discard(info *DevInfo) (bool, error) {
	if info.pristine {
		return false, nil
	}
	name := ds.deviceName(info.Hash)
	dev := ""
	cur, err := ds.dm.Info(name)
	switch {
	case err == nil && cur.OpenCount > 0:
		return false, nil
	case err == nil:
		dev, err = ds.nodeOf(cur)
	case errors.Is(err, dm.ErrNotFound):
		dev, err = ds.activate(info)
	}
	if err != nil {
		return false, err
	}
	discarded := false
	if err = faults.Point("delete.discarding"); err == nil {
		discarded, err = blkDiscard(dev, info.Size)
	}
	if rerr := ds.dm.Remove(name, udevFlags); rerr != nil {
		err = errors.Join(err, rerr)
	}
	return discarded, err
}

func blkDiscard(dev string, size uint64) (bool, error) {
	// O_EXCL: a mount that races us in gets EBUSY, and so do we. A raw fd:
	// an os.File of a block device costs three fcntls and an epoll_ctl.
	fd, err := unix.Open(dev, unix.O_WRONLY|unix.O_CLOEXEC|unix.O_EXCL, 0)
	if errors.Is(err, unix.EBUSY) {
		return false, nil
	}
	if err != nil {
		return false, &os.PathError{Op: "open", Path: dev, Err: err}
	}
	defer unix.Close(fd)
	rng := [2]uint64{0, size}
	_, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.BLKDISCARD, uintptr(unsafe.Pointer(&rng)))
	if errno != 0 && errno != unix.EOPNOTSUPP {
		return true, fmt.Errorf("discard %s: %w", dev, errno)
	}
	return errno == 0, nil
}

// ErrIDInUse: a thin id a caller took for an orphan is named by a layer.
var ErrIDInUse = errors.New("thin id belongs to a layer")

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
