package deviceset

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"

	dm "github.com/thinlayer/thinlayer/devmapper"
	"github.com/thinlayer/thinlayer/fsutil"
	"github.com/thinlayer/thinlayer/internal/keylock"
)

// Sentinel errors for what callers branch on.
var (
	ErrNotFound   = errors.New("no such layer")
	ErrExists     = errors.New("layer already exists")
	ErrHomeLocked = errors.New("home is in use by another process")
	ErrDeleted    = errors.New("layer is marked for deferred deletion")
	ErrReadOnly   = errors.New("home opened read-only")
	ErrNotHome    = errors.New("not a devicemapper home")
)

// DeviceSet is the set of thin devices of one home. Its methods are safe for
// concurrent use; see the package doc for the lock order.
type DeviceSet struct {
	home string
	cfg  Config
	log  logrus.FieldLogger
	ctl  *dm.Control // the control node; closed at Shutdown
	dm   *dm.Control // ctl, not waiting for udev
	// pc is dm for the pool changes transactions make and settle: the
	// seam host tests fill with a fake (tx_test.go).
	pc     poolControl
	prefix string
	pool   *pool
	store  store
	lockF  *os.File // flock on the home directory: one writer per home
	// devtmpfs: /dev is devtmpfs, so an active device is reached by
	// /dev/dm-N without looking (nodeOf).
	devtmpfs bool
	ro       bool // opened with OpenOptions.ReadOnly

	// openTx is an interrupted transaction a read-only open found and
	// left alone (nil when none). Set by Open, read-only after.
	openTx *Transaction

	layers keylock.Locks // one lock per hash: guards that layer's DevInfo and operations

	txMu      sync.Mutex
	txID      uint64 // guarded by txMu: the pool's transaction id, our commit point
	nextID    int    // guarded by txMu: where the search for a free thin id starts
	unsettled bool   // guarded by txMu: a failed transaction is still open
	// settleWaitFor, when set (tests), replaces settleWait's bound.
	settleWaitFor time.Duration
	ids           idIndex

	mu      sync.Mutex
	devices map[string]*DevInfo // guarded by mu: DevInfos read so far, by hash
	loaded  idIndex             // changed under mu: the same, by thin id (built from the start)
	meta    setMetadata         // written under txMu and mu, read under either (updateMeta)
	// metaSaved is what the home-wide record's file holds, nil when unknown
	// (missing, damaged): guarded by txMu.
	metaSaved *setMetadata
	mountFS   string // guarded by mu: the layers' filesystem, once checked (filesystemOf)

	idle     *idleSet // unmounted layers whose device stays active, nil when off
	deleter  *deleter // deferred deletion worker, nil when off
	shutdown sync.Once

	// Fields set by Open and not changed after (home, cfg, log, ctl, dm,
	// prefix, pool, store, lockF, devtmpfs, ro, openTx, idle, deleter)
	// need no lock. Open settles, loads and writes txID, nextID and meta
	// before any other goroutine can see the DeviceSet.
}

// OpenOptions modify Open.
type OpenOptions struct {
	// ReadOnly opens a home to look at it: no file under the home is
	// written, nothing is created, an interrupted transaction is reported
	// (OpenTransaction) instead of settled, and layers can be mounted
	// read-only but not created or removed. A pool that is not active is
	// brought up for the look and taken down at Shutdown.
	ReadOnly bool
}

// New opens (or makes) the home: takes its lock, finds or creates the pool,
// finishes or undoes an interrupted transaction, and checks or creates the
// base device.
func New(home string, cfg Config) (*DeviceSet, error) { return Open(home, cfg, OpenOptions{}) }

// Open is New with options.
func Open(home string, cfg Config, opts OpenOptions) (_ *DeviceSet, err error) {
	if err := fsutil.ValidateMountOptions(cfg.MountOptions); err != nil {
		return nil, fmt.Errorf("dm.mountopt: %w", err)
	}
	ds := &DeviceSet{
		home:    home,
		cfg:     cfg,
		ro:      opts.ReadOnly,
		log:     loggerOf(cfg),
		store:   store{dir: filepath.Join(home, "metadata")},
		devices: make(map[string]*DevInfo),
	}
	if err := ds.makeHome(); err != nil {
		return nil, err
	}
	if err := ds.lockHome(); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			ds.close()
		}
	}()
	if ds.ctl, err = dm.Open(); err != nil {
		return nil, err
	}
	// Nothing here opens a device by its /dev/mapper name (nodeOf uses the
	// kernel's /dev/dm-N, tables name devices by number): udev gets its
	// events and flags, but nobody waits for its rules to run.
	ds.dm = ds.ctl.NoUdevWait()
	ds.pc = ds.dm
	ds.devtmpfs = devIsDevtmpfs()
	if ds.prefix, err = devicePrefix(home); err != nil {
		return nil, err
	}
	if err := ds.setupDirectLVM(); err != nil {
		return nil, err
	}
	if ds.pool, err = ds.openPool(); err != nil {
		return nil, err
	}
	if !ds.ro {
		ds.recoverDevices() // what a crash left active, suspended or mounted
	}
	if err := ds.initMetadata(); err != nil {
		ds.undoPool()
		return nil, err
	}
	if ds.ro {
		return ds, nil
	}
	if err := ds.setupBase(); err != nil {
		ds.undoPool()
		return nil, err
	}
	ds.finishGrows()
	if cfg.DeferredDelete {
		ds.startDeleter()
	}
	if cfg.IdleDevices > 0 {
		ds.idle = newIdleSet(cfg.IdleDevices)
	}
	return ds, nil
}

// makeHome creates the metadata directory; a read-only open wants it there.
func (ds *DeviceSet) makeHome() error {
	if !ds.ro {
		return os.MkdirAll(ds.store.dir, 0o700)
	}
	if fi, err := os.Stat(ds.store.dir); err != nil || !fi.IsDir() {
		return fmt.Errorf("%w: %s has no metadata directory", ErrNotHome, ds.home)
	}
	return nil
}

// ReadOnly reports whether the home was opened read-only.
func (ds *DeviceSet) ReadOnly() bool { return ds.ro }

// lockHome flocks the home directory itself (no lock file to leave in a
// home Moby may open): exclusive for a writer, shared for readers.
func (ds *DeviceSet) lockHome() error {
	f, err := os.Open(ds.home)
	if err != nil {
		return err
	}
	how := unix.LOCK_EX
	if ds.ro {
		how = unix.LOCK_SH
	}
	if err := unix.Flock(int(f.Fd()), how|unix.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return fmt.Errorf("%w: %s", ErrHomeLocked, ds.home)
		}
		return fmt.Errorf("lock home %s: %w", ds.home, err)
	}
	ds.lockF = f
	return nil
}

func (ds *DeviceSet) close() {
	if ds.ctl != nil {
		ds.ctl.Close()
	}
	if ds.lockF != nil {
		ds.lockF.Close()
	}
}

// undoPool takes down a pool New created before failing later on.
func (ds *DeviceSet) undoPool() {
	if ds.pool != nil && ds.pool.created {
		_ = ds.removePool()
	}
}

// initMetadata reads the pool's transaction id and settles an open
// transaction, then loads the home-wide record.
func (ds *DeviceSet) initMetadata() error {
	st, err := ds.poolStatus(false)
	if err != nil {
		return err
	}
	if st.Mode == dm.PoolModeFail {
		return fmt.Errorf("thin pool %s has failed: run thin_check on its metadata", ds.pool.name)
	}
	ds.txID = st.TransactionID
	if ds.ro {
		err = ds.findOpenTransaction()
	} else {
		err = ds.settleTransaction()
	}
	if err != nil {
		return err
	}
	var onDisk bool
	if ds.meta, onDisk, err = ds.store.loadSetMetadata(ds.log); err != nil {
		return err
	}
	if onDisk {
		ds.metaSaved = &setMetadata{}
		*ds.metaSaved = ds.meta
	}
	ds.nextID = ds.meta.NextDeviceID
	return nil
}

// lookup returns the layer's DevInfo, reading it on first use. The caller
// holds the layer's lock, so the file does not change underneath.
func (ds *DeviceSet) lookup(hash string) (*DevInfo, error) {
	if err := ds.CheckLayerID(hash); err != nil {
		return nil, err
	}
	ds.mu.Lock()
	defer ds.mu.Unlock()
	if info := ds.devices[hash]; info != nil {
		return info, nil
	}
	info, err := ds.store.loadDevice(hash)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%w: %q", ErrNotFound, hash)
	}
	if err != nil {
		return nil, err
	}
	ds.remember(info)
	return info, nil
}

func (ds *DeviceSet) cache(info *DevInfo) {
	ds.mu.Lock()
	ds.drop(info.Hash)
	ds.remember(info)
	ds.mu.Unlock()
}

func (ds *DeviceSet) forget(hash string) {
	ds.mu.Lock()
	ds.drop(hash)
	ds.mu.Unlock()
}

// remember and drop keep devices and loaded in step; called with mu held
// (loaded's mutex is a leaf).
func (ds *DeviceSet) remember(info *DevInfo) {
	ds.devices[info.Hash] = info
	ds.loaded.add(info.DeviceID, info.Hash)
}

func (ds *DeviceSet) drop(hash string) {
	if info := ds.devices[hash]; info != nil {
		delete(ds.devices, hash)
		ds.loaded.remove(info.DeviceID, hash)
	}
}

// sharedThinID returns another layer whose DevInfo names info's thin id,
// among the DevInfos read so far (and all of them once the index is
// built). That is enough to never activate one thin id twice: a layer
// is read before its device is made, so of two layers claiming one id
// the second to be activated finds the first. Reading every DevInfo
// here instead would make the first Get after Init cost as much as the
// home is large.
func (ds *DeviceSet) sharedThinID(info *DevInfo) (string, bool) {
	if other, ok := ds.loaded.other(info.DeviceID, info.Hash); ok {
		return other, true
	}
	if ds.ids.isBuilt() {
		return ds.ids.other(info.DeviceID, info.Hash)
	}
	return "", false
}

// HasDevice reports whether the layer has a DevInfo (deleted ones included,
// as Moby's does).
func (ds *DeviceSet) HasDevice(hash string) bool {
	if ds.CheckLayerID(hash) != nil {
		return false
	}
	ds.mu.Lock()
	_, ok := ds.devices[hash]
	ds.mu.Unlock()
	return ok || ds.store.hasDevice(hash)
}

// List returns the hashes of every layer, the base ("") included.
func (ds *DeviceSet) List() ([]string, error) { return ds.store.listDevices() }

// Info returns a copy of the layer's DevInfo.
func (ds *DeviceSet) Info(hash string) (DevInfo, error) {
	ds.layers.Lock(hash)
	defer ds.layers.Unlock(hash)
	info, err := ds.lookup(hash)
	if err != nil {
		return DevInfo{}, err
	}
	return *info, nil
}

// deviceName is the device-mapper name of a layer's thin device.
func (ds *DeviceSet) deviceName(hash string) string {
	if hash == "" {
		hash = baseFileName
	}
	return ds.prefix + "-" + hash
}

// DevicePath is the node a layer's active device is reached by.
func (ds *DeviceSet) DevicePath(hash string) string { return dm.DevicePath(ds.deviceName(hash)) }

// PoolName is the device-mapper name of the pool.
func (ds *DeviceSet) PoolName() string { return ds.pool.name }

// Shutdown unmounts and deactivates what is active under <home>/mnt, the
// base device, and the pool if this home owns it, and saves the home-wide
// record. The home is left so that the next New (or Moby) opens it. Later
// calls do nothing.
func (ds *DeviceSet) Shutdown() (err error) {
	ds.shutdown.Do(func() { err = ds.doShutdown() })
	return err
}

// Release lets go of the home (its lock, the control node) and leaves
// everything active as it is: for a tool whose mount outlives it.
func (ds *DeviceSet) Release() {
	ds.shutdown.Do(func() {
		if ds.deleter != nil {
			ds.deleter.close()
		}
		ds.dropIdle()
		ds.close()
	})
}

func (ds *DeviceSet) doShutdown() error {
	var errs []error
	if ds.deleter != nil {
		ds.deleter.close()
	}
	if !ds.ro {
		errs = append(errs, ds.saveNextDeviceID())
		if err := ds.saveIDCache(); err != nil { // after the last write to metadata/
			ds.log.WithError(err).Warn("keep the thin id index for the next open")
		}
	}
	errs = append(errs, ds.deactivateAll())
	if !ds.ro || ds.pool.created {
		errs = append(errs, ds.removePool())
	}
	ds.close()
	return errors.Join(errs...)
}

// saveNextDeviceID records where the thin id search goes on next time.
func (ds *DeviceSet) saveNextDeviceID() error {
	return ds.updateMeta(func(m *setMetadata) error {
		m.NextDeviceID = ds.nextID // txMu's: updateMeta holds it
		return nil
	})
}

// updateMeta changes the home record with change and writes it, unless
// change fails or the file already holds it (an Init that changes nothing
// writes nothing under metadata/, which keeps the thin id index a clean
// Shutdown kept valid: idcache.go). Writers of meta hold txMu and mu,
// readers either: txMu orders the file's writes, and the fsynced write is
// made from a copy after letting go of mu.
func (ds *DeviceSet) updateMeta(change func(m *setMetadata) error) error {
	ds.txMu.Lock()
	defer ds.txMu.Unlock()
	ds.mu.Lock()
	err := change(&ds.meta)
	m := ds.meta
	ds.mu.Unlock()
	if err != nil || ds.metaSaved != nil && *ds.metaSaved == m {
		return err
	}
	ds.metaSaved = nil // a write that fails half-way leaves the file unknown
	if err := ds.store.saveSetMetadata(m); err != nil {
		return err
	}
	ds.metaSaved = &m
	return nil
}

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
