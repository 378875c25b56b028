package deviceset

import (
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/sirupsen/logrus"

	dm "github.com/thinlayer/thinlayer/devmapper"
	"github.com/thinlayer/thinlayer/internal/faults"
)

// settleTransaction finishes or undoes a transaction that a crash left open
// (see the package doc). Called at startup, before anything else runs, or
// by beginTx.
func (ds *DeviceSet) settleTransaction() error {
	t, ok, err := ds.store.loadTransaction()
	if err != nil {
		// Written atomically, so only outside damage makes it unreadable;
		// the next transaction rewrites it. Not worth the whole home.
		ds.log.WithError(err).Error("unreadable transaction record ignored")
		return nil
	}
	if !ok || t.OpenTransactionID <= ds.txID {
		return nil
	}
	if err := ds.checkRecord(t); err != nil {
		ds.log.WithError(err).Error("transaction record ignored")
		return nil
	}
	ds.log.WithFields(logrus.Fields{"hash": t.DeviceIDHash, "device_id": t.DeviceID, "transaction": t.OpenTransactionID}).
		Info("settling interrupted pool transaction")
	if err := ds.settle(t); err != nil {
		return fmt.Errorf("settle transaction %d (layer %q, thin id %d): %w", t.OpenTransactionID, t.DeviceIDHash, t.DeviceID, err)
	}
	return nil
}

// checkRecord refuses a transaction record this package would not have
// written: one open transaction at a time, a valid layer id. (A thin id
// out of range does not decode: dm.ThinID.)
func (ds *DeviceSet) checkRecord(t transaction) error {
	if t.OpenTransactionID != ds.txID+1 {
		return fmt.Errorf("%w: %s: open transaction %d, but the pool is at %d",
			ErrCorruptMetadata, ds.store.path(transactionFile), t.OpenTransactionID, ds.txID)
	}
	if err := ds.CheckLayerID(t.DeviceIDHash); err != nil {
		return fmt.Errorf("%w: %s: %v", ErrCorruptMetadata, ds.store.path(transactionFile), err)
	}
	return nil
}

// settle brings the pool and the DevInfos back in line after transaction t
// stopped between its intent and its commit: the thin device goes unless
// another layer's DevInfo names it, the layer's DevInfo goes if it names
// that device, and the pool's transaction id moves past t. For a create
// that undoes it, for a delete it finishes it. A device still open
// elsewhere cannot be deleted: the layer is kept then (and marked deleted
// under deferred deletion). Called with txMu and t's layer lock held, or
// before any other operation can run.
func (ds *DeviceSet) settle(t transaction) error {
	info, err := ds.store.loadDevice(t.DeviceIDHash)
	names := err == nil && info.DeviceID == t.DeviceID // else not ours to remove
	busy, err := ds.deleteIfUnowned(t)
	if err != nil {
		return err
	}
	switch {
	case busy && names && ds.cfg.DeferredDelete && !info.Deleted:
		info.Deleted = true
		if err := ds.store.saveDevice(info); err != nil {
			return err
		}
		ds.forget(info.Hash)
		if ds.deleter != nil {
			ds.deleter.add(info.Hash)
		}
	case !busy && names:
		if err := ds.store.removeDevice(t.DeviceIDHash); err != nil {
			return err
		}
		ds.index().remove(t.DeviceID, t.DeviceIDHash)
		ds.forget(t.DeviceIDHash)
	}
	// Close it in the pool too, so the next transaction id is fresh.
	if err := ds.pc.SetTransactionID(ds.pool.name, ds.txID, t.OpenTransactionID); err != nil {
		return err
	}
	ds.txID = t.OpenTransactionID
	return nil
}

// deleteIfUnowned deletes t's thin device, first taking down the layer's
// device if a crash left it active, unless another layer's DevInfo names
// the id (a create may die holding an id it tried before knowing it was
// taken). It reports a device still open elsewhere.
func (ds *DeviceSet) deleteIfUnowned(t transaction) (busy bool, err error) {
	if owner, ok := ds.index().other(t.DeviceID, t.DeviceIDHash); ok {
		ds.log.WithFields(logrus.Fields{"device_id": t.DeviceID, "owner": owner}).Info("thin id belongs to another layer; not deleting it")
		return false, nil
	}
	err = ds.pc.Remove(ds.deviceName(t.DeviceIDHash), udevFlags)
	if err == nil || errors.Is(err, dm.ErrNotFound) {
		err = ds.pc.DeleteThin(ds.pool.name, t.DeviceID)
	}
	switch {
	case errors.Is(err, dm.ErrBusy):
		ds.log.WithField("hash", t.DeviceIDHash).Warn("device open elsewhere: layer kept")
		return true, nil
	case err != nil && !errors.Is(err, dm.ErrNoThinDevice):
		return false, err
	}
	return false, nil
}

// Transaction is the intent record: an open one (ID above the pool's
// transaction id) is a pool change a crash interrupted.
type Transaction struct {
	ID       uint64    // the open transaction id
	Hash     string    // the layer it changes
	DeviceID dm.ThinID // the thin id it creates or deletes
}

// findOpenTransaction notes an interrupted transaction without touching it
// (read-only opens).
func (ds *DeviceSet) findOpenTransaction() error {
	t, ok, err := ds.store.loadTransaction()
	if err == nil && ok && t.OpenTransactionID > ds.txID {
		ds.openTx = &Transaction{ID: t.OpenTransactionID, Hash: t.DeviceIDHash, DeviceID: t.DeviceID}
	}
	return err
}

// OpenTransaction returns the interrupted transaction a read-only open
// found, or nil. A read-write open settles it instead.
func (ds *DeviceSet) OpenTransaction() *Transaction { return ds.openTx }

// poolControl is what transactions and their settling ask of
// device-mapper: a *dm.Control, or a fake in host tests.
type poolControl interface {
	Remove(name string, udevFlags uint16) error
	DeleteThin(pool string, id dm.ThinID) error
	SetTransactionID(pool string, old, new uint64) error
}

// poolOp is the pool message a transaction sends for thin id id.
type poolOp func(id dm.ThinID) error

// beginTx settles a transaction an earlier failure left open, so that a
// new one never overwrites its record. Called with txMu held and the layer
// locks of held. Settling changes the failed transaction's layer, so it
// holds that layer's lock too: taken without waiting (TryLock), since
// layer locks come before txMu. While another operation holds it the new
// transaction is refused, and the next one tries again.
func (ds *DeviceSet) beginTx(held ...string) error {
	for ds.unsettled {
		t, ok, err := ds.store.loadTransaction()
		if err == nil && ok && !slices.Contains(held, t.DeviceIDHash) {
			if !ds.layers.TryLock(t.DeviceIDHash) {
				// Its holder may need txMu (the deletion worker settles the
				// transaction itself), and may wait for a lock the caller
				// holds: let go of txMu, wait a bounded time, look again.
				// Callers take txMu just before the transaction, so they
				// have read nothing under it that this invalidates.
				ds.txMu.Unlock()
				free := ds.layers.WaitFree(t.DeviceIDHash, ds.settleWait())
				ds.txMu.Lock()
				if !free {
					return fmt.Errorf("earlier failed transaction of layer %q still open, and that layer is in use: try again", t.DeviceIDHash)
				}
				continue
			}
			defer ds.layers.Unlock(t.DeviceIDHash)
		}
		if err := ds.settleTransaction(); err != nil {
			return fmt.Errorf("earlier failed transaction still open: %w", err)
		}
		ds.unsettled = false
	}
	return nil
}

// settleWait bounds how long a transaction waits for the layer whose
// failed transaction it must settle first.
func (ds *DeviceSet) settleWait() time.Duration {
	if ds.settleWaitFor > 0 {
		return ds.settleWaitFor
	}
	return 30 * time.Second
}

// settleFailed settles t in-process after one of its steps failed, as the
// next start would; if that fails too, the next transaction tries again.
// Called with txMu and t's layer lock held.
func (ds *DeviceSet) settleFailed(t transaction) {
	if err := ds.settle(t); err != nil {
		ds.unsettled = true
		ds.log.WithError(err).WithField("hash", t.DeviceIDHash).Error("settle failed transaction; retried before the next one")
	}
}

// createTx runs a create transaction: it allocates a free thin id (ids a
// DevInfo names are skipped, and the pool answers EEXIST for ids in use),
// creates the device with op, writes the DevInfo and commits. Called with
// txMu held, and the layer locks of info and of held (its parent's).
func (ds *DeviceSet) createTx(info *DevInfo, op poolOp, held ...string) error {
	if err := ds.beginTx(append(held, info.Hash)...); err != nil {
		return err
	}
	t := transaction{OpenTransactionID: ds.txID + 1, DeviceIDHash: info.Hash}
	if err := ds.sendCreate(&t, op); err != nil {
		return err
	}
	info.DeviceID, info.TransactionID = t.DeviceID, t.OpenTransactionID
	err := ds.commitTx(t, func() error { return ds.store.saveDevice(info) })
	if err != nil {
		ds.settleFailed(t)
		return err
	}
	ds.index().add(info.DeviceID, info.Hash)
	return nil
}

// sendCreate writes the intent and sends op for the next free thin id.
// The intent names the layer before the pool can hold anything of it.
func (ds *DeviceSet) sendCreate(t *transaction, op poolOp) error {
	idx := ds.index()
	for tries := 0; ; tries++ {
		if tries > dm.MaxThinID {
			return fmt.Errorf("no free thin device id in pool %s", ds.pool.name)
		}
		if t.DeviceID = ds.allocID(); idx.named(t.DeviceID) {
			continue
		}
		if err := faults.Point("create.intent"); err != nil {
			return err
		}
		if err := ds.store.saveTransaction(*t); err != nil {
			return err
		}
		if err := faults.Point("create.message"); err != nil {
			ds.settleFailed(*t)
			return err
		}
		err := op(t.DeviceID)
		if errors.Is(err, dm.ErrExists) {
			ds.log.WithField("device_id", t.DeviceID).Warn("thin id in use in the pool but not known here; skipping it")
			continue
		}
		if err != nil {
			ds.settleFailed(*t)
		}
		return err
	}
}

// commitTx writes the metadata change and moves the pool's transaction id.
func (ds *DeviceSet) commitTx(t transaction, write func() error) error {
	if err := faults.Point("tx.metadata"); err != nil {
		return err
	}
	if err := write(); err != nil {
		return err
	}
	if err := faults.Point("tx.commit"); err != nil {
		return err
	}
	if err := ds.pc.SetTransactionID(ds.pool.name, ds.txID, t.OpenTransactionID); err != nil {
		return err
	}
	ds.txID = t.OpenTransactionID
	return nil
}

// allocID returns the next thin id to try; ids wrap at 24 bits and 0 is
// skipped, as Moby never uses it for layers. (nextID is an int, as Moby's
// record keeps it: the mask is its range check.)
func (ds *DeviceSet) allocID() dm.ThinID {
	ds.nextID = (ds.nextID + 1) & dm.MaxThinID
	if ds.nextID == 0 {
		ds.nextID = 1
	}
	return dm.ThinID(ds.nextID)
}
