package deviceset

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	dm "github.com/thinlayer/thinlayer/devmapper"
	"github.com/thinlayer/thinlayer/internal/faults"
	"github.com/thinlayer/thinlayer/testutil"
)

// Host tests of the transaction paths — settling an interrupted or failed
// transaction, withdrawing a delete that did not happen — over a fake
// fp (poolControl), so that make test runs them under -race; the kernel
// runs them too, through graphdriver's crash tests.

// fakePool is a thin fp's thin ids and transaction id, and the active
// devices on it, as the kernel would answer for them.
type fakePool struct {
	mu     sync.Mutex
	txID   uint64
	thins  map[dm.ThinID]bool
	active map[string]bool // device name -> open (EBUSY on Remove)
	fail   map[string][]error
	calls  []string
}

func newFakePool(txID uint64) *fakePool {
	return &fakePool{txID: txID, thins: map[dm.ThinID]bool{}, active: map[string]bool{}, fail: map[string][]error{}}
}

// failNext makes the next call of method return err (nil: succeed).
func (f *fakePool) failNext(method string, errs ...error) {
	f.mu.Lock()
	f.fail[method] = append(f.fail[method], errs...)
	f.mu.Unlock()
}

// called records a call and returns an error queued for it. Called with mu.
func (f *fakePool) called(method string, args ...any) error {
	f.calls = append(f.calls, fmt.Sprint(append([]any{method}, args...)...))
	if q := f.fail[method]; len(q) > 0 {
		f.fail[method] = q[1:]
		return q[0]
	}
	return nil
}

func (f *fakePool) Remove(name string, _ uint16) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.called("Remove", " ", name); err != nil {
		return err
	}
	open, ok := f.active[name]
	switch {
	case !ok:
		return fmt.Errorf("remove %s: %w", name, dm.ErrNotFound)
	case open:
		return fmt.Errorf("remove %s: %w", name, dm.ErrBusy)
	}
	delete(f.active, name)
	return nil
}

func (f *fakePool) DeleteThin(_ string, id dm.ThinID) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.called("DeleteThin", " ", id); err != nil {
		return err
	}
	if !f.thins[id] {
		return fmt.Errorf("delete %d: %w", id, dm.ErrNoThinDevice)
	}
	delete(f.thins, id)
	return nil
}

func (f *fakePool) SetTransactionID(_ string, old, new uint64) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.called("SetTransactionID", " ", old, " ", new); err != nil {
		return err
	}
	if old != f.txID {
		return fmt.Errorf("set_transaction_id %d %d: pool is at %d", old, new, f.txID)
	}
	f.txID = new
	return nil
}

// createThin is a create_thin message for createTx.
func (f *fakePool) createThin(id dm.ThinID) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.called("CreateThin", " ", id); err != nil {
		return err
	}
	if f.thins[id] {
		return fmt.Errorf("create %d: %w", id, dm.ErrExists)
	}
	f.thins[id] = true
	return nil
}

func (f *fakePool) has(id dm.ThinID) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.thins[id]
}

func (f *fakePool) callCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.calls)
}

// newTxSet is a DeviceSet over fp, opened as Open leaves it.
func newTxSet(t *testing.T, fp *fakePool, cfg Config) *DeviceSet {
	t.Helper()
	home := t.TempDir()
	log := logrus.New()
	log.SetOutput(io.Discard)
	cfg.Logger = log
	ds := &DeviceSet{
		home: home, cfg: cfg, log: log, pc: fp, prefix: "docker-0:0-1",
		pool:    &pool{name: "pool"},
		store:   store{dir: filepath.Join(home, "metadata")},
		devices: map[string]*DevInfo{},
		txID:    fp.txID,
	}
	if err := ds.makeHome(); err != nil {
		t.Fatal(err)
	}
	return ds
}

// putLayer writes hash's DevInfo naming thin id id, and the thin device.
func putLayer(t *testing.T, ds *DeviceSet, fp *fakePool, hash string, id dm.ThinID) *DevInfo {
	t.Helper()
	info := &DevInfo{Hash: hash, DeviceID: id, Size: 1 << 20}
	if err := ds.store.saveDevice(info); err != nil {
		t.Fatal(err)
	}
	fp.thins[id] = true
	return info
}

func putRecord(t *testing.T, ds *DeviceSet, open uint64, hash string, id dm.ThinID) {
	t.Helper()
	if err := ds.store.saveTransaction(transaction{OpenTransactionID: open, DeviceIDHash: hash, DeviceID: id}); err != nil {
		t.Fatal(err)
	}
}

func loadLayer(t *testing.T, ds *DeviceSet, hash string) (*DevInfo, bool) {
	t.Helper()
	info, err := ds.store.loadDevice(hash)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	return info, err == nil
}

func wantTxID(t *testing.T, ds *DeviceSet, fp *fakePool, want uint64) {
	t.Helper()
	if ds.txID != want || fp.txID != want {
		t.Fatalf("transaction id: DeviceSet %d, pool %d, want %d", ds.txID, fp.txID, want)
	}
}

// A create a crash interrupted after its DevInfo, or before it, is undone:
// thin device and DevInfo go, and the fp's id moves past the record.
func TestSettleUndoesInterruptedCreate(t *testing.T) {
	for _, withInfo := range []bool{true, false} {
		t.Run(fmt.Sprint("devinfo=", withInfo), func(t *testing.T) {
			fp := newFakePool(5)
			ds := newTxSet(t, fp, Config{})
			putLayer(t, ds, fp, "keep", 3)
			if withInfo {
				putLayer(t, ds, fp, "a", 7)
			} else {
				fp.thins[7] = true
			}
			putRecord(t, ds, 6, "a", 7)
			if err := ds.settleTransaction(); err != nil {
				t.Fatal(err)
			}
			if fp.has(7) {
				t.Error("thin id 7 of the interrupted create is still in the pool")
			}
			if _, ok := loadLayer(t, ds, "a"); ok {
				t.Error("DevInfo of the interrupted create is still there")
			}
			if _, ok := loadLayer(t, ds, "keep"); !ok || !fp.has(3) {
				t.Error("another layer was touched")
			}
			wantTxID(t, ds, fp, 6)
		})
	}
}

// A thin id another layer's DevInfo names is not deleted: only the
// interrupted layer's record goes.
func TestSettleKeepsThinIDAnotherLayerNames(t *testing.T) {
	fp := newFakePool(5)
	ds := newTxSet(t, fp, Config{})
	putLayer(t, ds, fp, "a", 7)
	putLayer(t, ds, fp, "b", 7)
	putRecord(t, ds, 6, "a", 7)
	if err := ds.settleTransaction(); err != nil {
		t.Fatal(err)
	}
	if !fp.has(7) {
		t.Error("thin id 7, which layer b names, was deleted")
	}
	if _, ok := loadLayer(t, ds, "a"); ok {
		t.Error("layer a's DevInfo is still there")
	}
	if info, ok := loadLayer(t, ds, "b"); !ok || info.DeviceID != 7 {
		t.Errorf("layer b: %+v %v", info, ok)
	}
	wantTxID(t, ds, fp, 6)
}

// A device open elsewhere cannot be deleted: the layer is kept, marked
// deleted under deferred deletion, and the transaction still closes.
func TestSettleKeepsBusyLayer(t *testing.T) {
	for _, deferred := range []bool{false, true} {
		t.Run(fmt.Sprint("deferred=", deferred), func(t *testing.T) {
			fp := newFakePool(5)
			ds := newTxSet(t, fp, Config{DeferredDelete: deferred})
			putLayer(t, ds, fp, "a", 7)
			fp.active[ds.deviceName("a")] = true // open
			putRecord(t, ds, 6, "a", 7)
			if err := ds.settleTransaction(); err != nil {
				t.Fatal(err)
			}
			info, ok := loadLayer(t, ds, "a")
			if !ok || !fp.has(7) {
				t.Fatalf("busy layer lost: DevInfo %v, thin device %v", ok, fp.has(7))
			}
			if info.Deleted != deferred {
				t.Errorf("Deleted = %v with deferred deletion %v", info.Deleted, deferred)
			}
			wantTxID(t, ds, fp, 6)
		})
	}
}

// A record this package would not have written (not the next id) is left
// alone: nothing is asked of the fp.
func TestSettleIgnoresRecordNotOurs(t *testing.T) {
	fp := newFakePool(5)
	ds := newTxSet(t, fp, Config{})
	putLayer(t, ds, fp, "a", 7)
	putRecord(t, ds, 9, "a", 7)
	if err := ds.settleTransaction(); err != nil {
		t.Fatal(err)
	}
	if _, ok := loadLayer(t, ds, "a"); !ok || !fp.has(7) || fp.callCount() != 0 {
		t.Fatalf("acted on a foreign record: DevInfo %v, thin %v, calls %v", ok, fp.has(7), fp.calls)
	}
	wantTxID(t, ds, fp, 5)
}

// A create whose commit fails, and whose in-process settle fails too,
// leaves the transaction open; the next transaction settles it first, but
// only holding that layer's lock: while another operation holds it the
// next transaction is refused and changes nothing.
func TestFailedSettleRetriedBeforeNextTx(t *testing.T) {
	fp := newFakePool(5)
	ds := newTxSet(t, fp, Config{})
	eio := errors.New("injected EIO")
	fp.failNext("SetTransactionID", eio) // the commit
	fp.failNext("Remove", eio)           // the settle's
	n := &DevInfo{Hash: "n", Size: 1 << 20}
	ds.txMu.Lock()
	err := ds.createTx(n, fp.createThin)
	ds.txMu.Unlock()
	if !errors.Is(err, eio) || !ds.unsettled {
		t.Fatalf("createTx: %v, unsettled %v", err, ds.unsettled)
	}
	if _, ok := loadLayer(t, ds, "n"); !ok || !fp.has(n.DeviceID) {
		t.Fatalf("the failed create's DevInfo (%v) and thin device (%v) should be left to settle", ok, fp.has(n.DeviceID))
	}
	wantTxID(t, ds, fp, 5)

	ds.layers.Lock("n") // an operation on n is under way, and stays
	ds.settleWaitFor = 50 * time.Millisecond
	calls := fp.callCount()
	m := &DevInfo{Hash: "m", Size: 1 << 20}
	ds.txMu.Lock()
	err = ds.createTx(m, fp.createThin)
	ds.txMu.Unlock()
	if err == nil || !ds.unsettled || fp.callCount() != calls {
		t.Fatalf("createTx while n's lock is held: %v, unsettled %v, pool calls %v", err, ds.unsettled, fp.calls[calls:])
	}
	if _, ok := loadLayer(t, ds, "m"); ok {
		t.Fatal("refused create left a DevInfo")
	}
	ds.layers.Unlock("n")

	ds.txMu.Lock()
	err = ds.createTx(m, fp.createThin)
	ds.txMu.Unlock()
	if err != nil || ds.unsettled {
		t.Fatalf("createTx: %v, unsettled %v", err, ds.unsettled)
	}
	if _, ok := loadLayer(t, ds, "n"); ok || fp.has(n.DeviceID) && n.DeviceID != m.DeviceID {
		t.Errorf("failed create of n not undone: DevInfo %v, thin %d in pool %v", ok, n.DeviceID, fp.has(n.DeviceID))
	}
	if info, ok := loadLayer(t, ds, "m"); !ok || !fp.has(info.DeviceID) || info.TransactionID != 7 {
		t.Errorf("layer m: %+v %v", info, ok)
	}
	wantTxID(t, ds, fp, 7)
}

// A delete whose fp message fails (the layer is whole) withdraws its
// intent: the layer stays, and the next start does not finish the delete
// the caller was told had failed.
func TestWithdrawFailedDelete(t *testing.T) {
	fp := newFakePool(5)
	ds := newTxSet(t, fp, Config{})
	a := putLayer(t, ds, fp, "a", 7)
	eio := errors.New("injected EIO")
	fp.failNext("DeleteThin", eio)
	ds.txMu.Lock()
	err := ds.deleteTx(a, false)
	ds.txMu.Unlock()
	if !errors.Is(err, eio) || ds.unsettled {
		t.Fatalf("deleteTx: %v, unsettled %v", err, ds.unsettled)
	}
	rec, ok, err := ds.store.loadTransaction()
	if err != nil || !ok || rec.OpenTransactionID > ds.txID {
		t.Fatalf("record after withdraw: %+v %v %v (pool at %d)", rec, ok, err, ds.txID)
	}
	if err := ds.settleTransaction(); err != nil { // as the next start
		t.Fatal(err)
	}
	if _, ok := loadLayer(t, ds, "a"); !ok || !fp.has(7) {
		t.Fatalf("layer a after a failed delete: DevInfo %v, thin %v", ok, fp.has(7))
	}
	wantTxID(t, ds, fp, 5)
}

// A delete whose commit fails after its DevInfo went is finished in
// process: the caller is told it succeeded and the id is free again.
func TestDeleteCommitFailureFinished(t *testing.T) {
	fp := newFakePool(5)
	ds := newTxSet(t, fp, Config{})
	a := putLayer(t, ds, fp, "a", 7)
	fp.failNext("SetTransactionID", errors.New("injected EIO"))
	ds.txMu.Lock()
	err := ds.deleteTx(a, false)
	ds.txMu.Unlock()
	if err != nil || ds.unsettled {
		t.Fatalf("deleteTx: %v, unsettled %v", err, ds.unsettled)
	}
	if _, ok := loadLayer(t, ds, "a"); ok || fp.has(7) || ds.index().named(7) {
		t.Fatalf("delete not finished: DevInfo %v, thin %v, indexed %v", ok, fp.has(7), ds.index().named(7))
	}
	wantTxID(t, ds, fp, 6)
}

// When even the withdraw fails, the intent stays open and the next
// transaction settles it — which finishes the delete, as the next start
// would.
func TestWithdrawFailureSettledByNextTx(t *testing.T) {
	testutil.RequireFaults(t)
	fp := newFakePool(5)
	ds := newTxSet(t, fp, Config{})
	a := putLayer(t, ds, fp, "a", 7)
	eio := errors.New("injected EIO")
	fp.failNext("DeleteThin", eio)
	faults.Arm("delete.withdraw", 1, false)
	defer faults.SetHook(nil)
	ds.txMu.Lock()
	err := ds.deleteTx(a, false)
	ds.txMu.Unlock()
	if !errors.Is(err, eio) || !errors.Is(err, faults.ErrInjected) || !ds.unsettled {
		t.Fatalf("deleteTx: %v, unsettled %v", err, ds.unsettled)
	}
	if _, ok := loadLayer(t, ds, "a"); !ok || !fp.has(7) {
		t.Fatal("layer a went before the retry")
	}
	m := &DevInfo{Hash: "m", Size: 1 << 20}
	ds.txMu.Lock()
	err = ds.createTx(m, fp.createThin)
	ds.txMu.Unlock()
	if err != nil || ds.unsettled {
		t.Fatalf("createTx: %v, unsettled %v", err, ds.unsettled)
	}
	if _, ok := loadLayer(t, ds, "a"); ok || fp.has(7) && m.DeviceID != 7 {
		t.Errorf("open delete of a not finished: DevInfo %v, thin %v", ok, fp.has(7))
	}
	wantTxID(t, ds, fp, 7)
	if !slices.ContainsFunc(fp.calls, func(c string) bool { return c == "DeleteThin 7" }) {
		t.Errorf("no delete of thin id 7 among %v", fp.calls)
	}
}

// A transaction that finds another layer's failed transaction open while
// that layer is busy waits for it (without txMu), then settles it and
// goes on: the crash walk saw a create refused while the deletion worker
// held the layer for a moment.
func TestFailedSettleWaitsForBusyLayer(t *testing.T) {
	fp := newFakePool(5)
	ds := newTxSet(t, fp, Config{})
	eio := errors.New("injected EIO")
	fp.failNext("SetTransactionID", eio)
	fp.failNext("Remove", eio)
	n := &DevInfo{Hash: "n", Size: 1 << 20}
	ds.txMu.Lock()
	err := ds.createTx(n, fp.createThin)
	ds.txMu.Unlock()
	if !errors.Is(err, eio) || !ds.unsettled {
		t.Fatalf("createTx: %v, unsettled %v", err, ds.unsettled)
	}
	ds.layers.Lock("n")
	m := &DevInfo{Hash: "m", Size: 1 << 20}
	ds.txMu.Lock() // before n's holder asks for it: it gets it only if createTx lets go
	go func() {
		ds.txMu.Lock() // what the holder may need: txMu must be free
		ds.txMu.Unlock()
		ds.layers.Unlock("n")
	}()
	err = ds.createTx(m, fp.createThin)
	ds.txMu.Unlock()
	if err != nil || ds.unsettled {
		t.Fatalf("createTx after n's holder let go: %v, unsettled %v", err, ds.unsettled)
	}
	if _, ok := loadLayer(t, ds, "n"); ok {
		t.Error("the failed create of n was not settled")
	}
	if _, ok := loadLayer(t, ds, "m"); !ok {
		t.Error("layer m was not created")
	}
}
