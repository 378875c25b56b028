package deviceset

import (
	"errors"
	"fmt"

	"github.com/sirupsen/logrus"

	dm "github.com/thinlayer/thinlayer/devmapper"
)

// settleTransaction finishes or undoes a transaction that a crash left open
// (see the package doc). Called at startup, before anything else runs.
func (ds *DeviceSet) settleTransaction() error {
	t, ok, err := ds.store.loadTransaction()
	if err != nil || !ok || t.OpenTransactionID <= ds.txID {
		return err
	}
	log := ds.log.WithFields(logrus.Fields{"hash": t.DeviceIDHash, "device_id": t.DeviceID, "transaction": t.OpenTransactionID})
	log.Info("settling interrupted pool transaction")
	// Ids are tried before they are known free (the pool's EEXIST says
	// which are taken), so a create may have died holding an id another
	// layer owns: that device is not the transaction's to delete.
	owner, owned, err := ds.idOwner(t.DeviceID, t.DeviceIDHash)
	if err != nil {
		return fmt.Errorf("settle transaction %d: %w", t.OpenTransactionID, err)
	}
	if owned {
		log.WithField("owner", owner).Info("thin id belongs to another layer; not deleting it")
	} else if err := ds.dm.DeleteThin(ds.pool.name, uint32(t.DeviceID)); err != nil && !errors.Is(err, dm.ErrNoThinDevice) {
		return fmt.Errorf("settle transaction %d: %w", t.OpenTransactionID, err)
	}
	if err := ds.store.removeDevice(t.DeviceIDHash); err != nil {
		return fmt.Errorf("settle transaction %d: %w", t.OpenTransactionID, err)
	}
	// Close it in the pool too, so the next transaction id is fresh.
	if err := ds.dm.SetTransactionID(ds.pool.name, ds.txID, t.OpenTransactionID); err != nil {
		return fmt.Errorf("settle transaction %d: %w", t.OpenTransactionID, err)
	}
	ds.txID = t.OpenTransactionID
	return nil
}

// idOwner finds the layer other than except whose DevInfo names thin id
// id. It reads every DevInfo: only done when settling a crash.
func (ds *DeviceSet) idOwner(id int, except string) (string, bool, error) {
	hashes, err := ds.store.listDevices()
	if err != nil {
		return "", false, err
	}
	for _, h := range hashes {
		if h == except {
			continue
		}
		info, err := ds.store.loadDevice(h)
		if err != nil {
			continue // a corrupt DevInfo names nothing we can trust
		}
		if info.DeviceID == id {
			return h, true, nil
		}
	}
	return "", false, nil
}

// Transaction is the intent record: an open one (ID above the pool's
// transaction id) is a pool change a crash interrupted.
type Transaction struct {
	ID       uint64 // the open transaction id
	Hash     string // the layer it changes
	DeviceID int    // the thin id it creates or deletes
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

// poolOp is the pool message a transaction sends for thin id id.
type poolOp func(id uint32) error

// createTx runs a create transaction: it allocates a free thin id (the pool
// answers EEXIST for ids in use, which are skipped), creates the device with
// op, writes the DevInfo and commits. Called with txMu held.
func (ds *DeviceSet) createTx(info *DevInfo, op poolOp) error {
	t := transaction{OpenTransactionID: ds.txID + 1, DeviceIDHash: info.Hash}
	for tries := 0; ; tries++ {
		if tries > maxDeviceID {
			return fmt.Errorf("no free thin device id in pool %s", ds.pool.name)
		}
		t.DeviceID = ds.allocID()
		if err := faultPoint("create.intent"); err != nil {
			return err
		}
		if err := ds.store.saveTransaction(t); err != nil {
			return err
		}
		if err := faultPoint("create.message"); err != nil {
			return err
		}
		err := op(uint32(t.DeviceID))
		if errors.Is(err, dm.ErrExists) {
			ds.log.WithField("device_id", t.DeviceID).Warn("thin id in use in the pool but not known here; skipping it")
			continue
		}
		if err != nil {
			return err
		}
		break
	}
	info.DeviceID, info.TransactionID = t.DeviceID, t.OpenTransactionID
	if err := ds.commitTx(t, func() error { return ds.store.saveDevice(info) }); err != nil {
		ds.abortCreate(t)
		return err
	}
	return nil
}

// commitTx writes the metadata change and moves the pool's transaction id.
func (ds *DeviceSet) commitTx(t transaction, write func() error) error {
	if err := faultPoint("tx.metadata"); err != nil {
		return err
	}
	if err := write(); err != nil {
		return err
	}
	if err := faultPoint("tx.commit"); err != nil {
		return err
	}
	if err := ds.dm.SetTransactionID(ds.pool.name, ds.txID, t.OpenTransactionID); err != nil {
		return err
	}
	ds.txID = t.OpenTransactionID
	return nil
}

// abortCreate undoes a create that failed after the pool message, as the
// startup rollback would.
func (ds *DeviceSet) abortCreate(t transaction) {
	_ = ds.dm.DeleteThin(ds.pool.name, uint32(t.DeviceID))
	_ = ds.store.removeDevice(t.DeviceIDHash)
}

// deleteTx deletes a layer's thin device and DevInfo in one transaction,
// discarding its blocks first when asked. The discard destroys the layer's
// data, so it comes after the intent: a crash from there on finishes the
// delete at startup. Called with txMu held and the device inactive.
func (ds *DeviceSet) deleteTx(info *DevInfo, discard bool) error {
	t := transaction{OpenTransactionID: ds.txID + 1, DeviceIDHash: info.Hash, DeviceID: info.DeviceID}
	if err := faultPoint("delete.intent"); err != nil {
		return err
	}
	if err := ds.store.saveTransaction(t); err != nil {
		return err
	}
	destroyed := false
	var err error
	if discard {
		if err := faultPoint("delete.discard"); err != nil {
			return err
		}
		destroyed, err = ds.discard(info)
	}
	if err == nil {
		err = faultPoint("delete.message")
	}
	if err == nil {
		err = ds.dm.DeleteThin(ds.pool.name, uint32(info.DeviceID))
	}
	if err != nil && !errors.Is(err, dm.ErrNoThinDevice) {
		if !destroyed {
			// The layer is whole: withdraw the intent, or startup
			// would finish a delete the caller was told had failed.
			t.OpenTransactionID = ds.txID
			_ = ds.store.saveTransaction(t)
		}
		return err
	}
	return ds.commitTx(t, func() error { return ds.store.removeDevice(info.Hash) })
}

// allocID returns the next thin id to try; ids wrap at 24 bits and 0 is
// skipped, as Moby never uses it for layers.
func (ds *DeviceSet) allocID() int {
	ds.nextID = (ds.nextID + 1) & maxDeviceID
	if ds.nextID == 0 {
		ds.nextID = 1
	}
	return ds.nextID
}
