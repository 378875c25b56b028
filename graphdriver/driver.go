package graphdriver

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	units "github.com/docker/go-units"
	"github.com/moby/sys/mountinfo"
	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"

	"github.com/thinlayer/thinlayer/deviceset"
	dm "github.com/thinlayer/thinlayer/devmapper"
	"github.com/thinlayer/thinlayer/fsutil"
	"github.com/thinlayer/thinlayer/internal/faults"
	"github.com/thinlayer/thinlayer/internal/keylock"
)

// layerStore is what the driver needs of a DeviceSet. Host tests put a
// fake behind it to race-test the driver's own locking and counting, which
// the race detector cannot watch inside User-Mode Linux.
type layerStore interface {
	AddDevice(hash, baseHash string, storageOpt map[string]string) error
	DeleteDevice(hash string, syncDelete bool) error
	MountDevice(hash, path, mountLabel string) error
	UnmountDevice(hash, path string) error
	HasDevice(hash string) bool
	CheckLayerID(hash string) error
	Metadata(hash string) (deviceset.DeviceMetadata, error)
	Status() (deviceset.Status, error)
	Shutdown() error
}

type driver struct {
	home  string
	ds    layerStore
	idMap IdentityMapping
	log   logrus.FieldLogger

	ids    keylock.Locks // per id; taken before any DeviceSet lock
	mu     sync.Mutex
	mounts map[string]int // Get count per id
}

// Init opens (or creates) a devicemapper home. It fails with an error
// matching ErrNotSupported when not root or when the kernel has no usable
// dm-thin, and names the option when one is unknown or malformed.
func Init(home string, options []string, idMap IdentityMapping) (Driver, error) {
	return Open(home, options, idMap, nil)
}

// Open is Init with the logger the driver and its DeviceSet write to; nil
// means logrus's standard logger with storage-driver=devicemapper.
func Open(home string, options []string, idMap IdentityMapping, log logrus.FieldLogger) (Driver, error) {
	cfg, err := deviceset.ParseOptions(options)
	if err != nil {
		return nil, err
	}
	if log == nil {
		log = logrus.WithField("storage-driver", DriverName)
	}
	cfg.Logger = log
	if err := supported(); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Join(home, "mnt"), 0o700); err != nil {
		return nil, err
	}
	ds, err := deviceset.New(home, cfg)
	if err != nil {
		return nil, err
	}
	return &driver{home: home, ds: ds, idMap: idMap, log: log, mounts: make(map[string]int)}, nil
}

func supported() error {
	if os.Geteuid() != 0 {
		return fmt.Errorf("%w: devicemapper needs root", ErrNotSupported)
	}
	c, err := dm.Open()
	if err != nil {
		return fmt.Errorf("%w: %v", ErrNotSupported, err)
	}
	defer c.Close()
	if _, ok, err := c.HasTarget(dm.TypeThinPool); err != nil || !ok {
		return fmt.Errorf("%w: kernel has no thin-pool target (dm-thin-pool module not loaded?)", ErrNotSupported)
	}
	return nil
}

func (d *driver) String() string { return DriverName }

// validID rejects ids that could not name a layer of this home: not a
// file name under it, or a device-mapper name the home owns (its pool's).
func (d *driver) validID(id string) error {
	if id == "" {
		return fmt.Errorf("%w: empty", ErrInvalidID)
	}
	if strings.HasPrefix(id, deviceset.SnapshotPrefix) {
		return fmt.Errorf("%w: %q: the containerd snapshotter's layers begin with %q", ErrInvalidID, id, deviceset.SnapshotPrefix)
	}
	return d.ds.CheckLayerID(id)
}

func (d *driver) CreateReadWrite(id, parent string, opts *CreateOpts) error {
	return d.Create(id, parent, opts)
}

func (d *driver) Create(id, parent string, opts *CreateOpts) error {
	if err := d.validID(id); err != nil {
		return err
	}
	if parent != "" {
		if err := d.validID(parent); err != nil {
			return fmt.Errorf("parent: %w", err)
		}
	}
	var storageOpt map[string]string
	if opts != nil {
		storageOpt = opts.StorageOpt
	}
	d.ids.Lock(id)
	defer d.ids.Unlock(id)
	return d.ds.AddDevice(id, parent, storageOpt)
}

// Remove deletes a layer; an unknown id is not an error, an invalid one
// is. A mounted layer fails with an error matching unix.EBUSY (with
// deferred deletion it is marked deleted instead).
func (d *driver) Remove(id string) error {
	if err := d.validID(id); err != nil {
		return err
	}
	d.ids.Lock(id)
	defer d.ids.Unlock(id)
	if !d.ds.HasDevice(id) {
		return nil
	}
	if err := d.ds.DeleteDevice(id, false); err != nil {
		return fmt.Errorf("failed to remove device %s: %w", id, err)
	}
	if err := unix.Rmdir(d.mountPoint(id)); err != nil && !errors.Is(err, unix.ENOENT) {
		d.log.WithError(err).Warn("remove mount point")
	}
	return nil
}

func (d *driver) mountPoint(id string) string { return filepath.Join(d.home, "mnt", id) }

// Get mounts the layer on its first call and returns <home>/mnt/<id>/rootfs;
// nested calls only count.
func (d *driver) Get(id, mountLabel string) (string, error) {
	if err := d.validID(id); err != nil {
		return "", err
	}
	d.ids.Lock(id)
	defer d.ids.Unlock(id)
	mp := d.mountPoint(id)
	rootfs := filepath.Join(mp, "rootfs")
	if d.count(id, +1) > 1 {
		return rootfs, nil
	}
	if err := d.mount(id, mp, mountLabel); err != nil {
		d.count(id, -1)
		return "", err
	}
	return rootfs, nil
}

func (d *driver) mount(id, mp, mountLabel string) error {
	uid, gid, err := d.idMap.ToHost(0, 0)
	if err != nil {
		return err
	}
	if err := mkdirMountPoint(mp); err != nil {
		return err
	}
	if err := d.ds.MountDevice(id, mp, mountLabel); err != nil {
		return err
	}
	err = faults.Point("get.prepare")
	if err == nil {
		err = mkdirOwned(filepath.Join(mp, "rootfs"), uid, gid)
	}
	if err == nil {
		err = writeIDFile(filepath.Join(mp, "id"), id)
	}
	if err != nil {
		_ = d.ds.UnmountDevice(id, mp)
		return fmt.Errorf("prepare layer %q: %w", id, err)
	}
	return nil
}

// mkdirMountPoint makes <home>/mnt/<id> (Put removes it, as Moby does).
func mkdirMountPoint(mp string) error {
	err := os.Mkdir(mp, 0o755)
	if errors.Is(err, os.ErrNotExist) {
		err = os.MkdirAll(mp, 0o755)
	}
	if errors.Is(err, os.ErrExist) {
		return nil
	}
	return err
}

// mkdirOwned makes the layer's rootfs, or checks the one there is a
// directory: a symlink would hand out (and apply into) where it points.
func mkdirOwned(dir string, uid, gid int) error {
	err := os.Mkdir(dir, 0o755)
	if errors.Is(err, os.ErrExist) {
		var st unix.Stat_t
		if err := unix.Lstat(dir, &st); err != nil {
			return err
		}
		if st.Mode&unix.S_IFMT != unix.S_IFDIR {
			return fmt.Errorf("%s is not a directory (mode %#o): %w", dir, st.Mode, unix.ENOTDIR)
		}
		return nil
	}
	if err != nil {
		return err
	}
	return os.Lchown(dir, uid, gid)
}

// writeIDFile records the layer id on its filesystem, as Moby does, to help
// reconstruct a home by hand.
func writeIDFile(path, id string) error {
	if _, err := os.Lstat(path); err == nil {
		return nil
	}
	return os.WriteFile(path, []byte(id), 0o600)
}

// Put drops one Get; the last unmounts and deactivates the layer.
func (d *driver) Put(id string) error {
	if err := d.validID(id); err != nil {
		return err
	}
	d.ids.Lock(id)
	defer d.ids.Unlock(id)
	n := d.count(id, -1)
	if n > 0 {
		return nil
	}
	if n < 0 {
		d.count(id, +1)
		return fmt.Errorf("put layer %q: not mounted", id)
	}
	err := d.ds.UnmountDevice(id, d.mountPoint(id))
	if err != nil && stillMounted(d.mountPoint(id)) {
		d.count(id, +1) // still ours: a later Put tries again, a Get reuses it
	}
	return err
}

// stillMounted says whether a failed unmount left dir mounted; when that
// cannot be told, it is taken as mounted (a second mount on top would be
// worse than a Put to repeat).
func stillMounted(dir string) bool {
	m, err := mountinfo.Mounted(dir)
	return m || (err != nil && !errors.Is(err, os.ErrNotExist))
}

func (d *driver) count(id string, delta int) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	n := d.mounts[id] + delta
	if n == 0 {
		delete(d.mounts, id)
	} else {
		d.mounts[id] = n
	}
	return n
}

func (d *driver) Exists(id string) bool {
	return d.validID(id) == nil && d.ds.HasDevice(id)
}

func (d *driver) GetMetadata(id string) (map[string]string, error) {
	if err := d.validID(id); err != nil {
		return nil, err
	}
	m, err := d.ds.Metadata(id)
	if err != nil {
		return nil, err
	}
	return map[string]string{
		"DeviceId":   m.DeviceID.String(),
		"DeviceSize": strconv.FormatUint(m.DeviceSize, 10),
		"DeviceName": m.DeviceName,
	}, nil
}

// Status gives Moby's rows, in Moby's order.
func (d *driver) Status() [][2]string {
	s, _ := d.ds.Status()
	return StatusRows(s)
}

// StatusRows are the rows `docker info` shows for the driver, in Moby's
// order: Status's, and `thinlayer status`'s.
func StatusRows(s deviceset.Status) [][2]string {
	h := func(n uint64) string { return units.HumanSize(float64(n)) }
	rows := [][2]string{
		{"Pool Name", s.PoolName},
		{"Pool Blocksize", h(s.PoolBlockSize)},
		{"Base Device Size", h(s.BaseDeviceSize)},
		{"Backing Filesystem", s.BaseDeviceFS},
		{"Udev Sync Supported", strconv.FormatBool(s.UdevSyncSupported)},
	}
	for _, r := range [][2]string{
		{"Data file", s.DataFile}, {"Metadata file", s.MetadataFile},
		{"Data loop file", s.DataLoopback}, {"Metadata loop file", s.MetadataLoopback},
	} {
		if r[1] != "" {
			rows = append(rows, r)
		}
	}
	return append(rows, [][2]string{
		{"Data Space Used", h(s.Data.Used)},
		{"Data Space Total", h(s.Data.Total)},
		{"Data Space Available", h(s.Data.Available)},
		{"Metadata Space Used", h(s.Metadata.Used)},
		{"Metadata Space Total", h(s.Metadata.Total)},
		{"Metadata Space Available", h(s.Metadata.Available)},
		{"Thin Pool Minimum Free Space", h(s.MinFreeSpace)},
		{"Deferred Removal Enabled", strconv.FormatBool(s.DeferredRemoveEnabled)},
		{"Deferred Deletion Enabled", strconv.FormatBool(s.DeferredDeleteEnabled)},
		{"Deferred Deleted Device Count", strconv.Itoa(s.DeferredDeletedCount)},
		{"Idle Active Device Count", strconv.Itoa(s.IdleDeviceCount)},
		{"Library Version", LibraryVersion},
	}...)
}

// LibraryVersion stands where Moby reports libdevmapper's version.
const LibraryVersion = "thinlayer (pure Go, no libdevmapper)"

// Cleanup unmounts and deactivates everything and takes down the pool this
// home owns; the home stays, for the next Init.
func (d *driver) Cleanup() error {
	err := d.ds.Shutdown()
	_, uerr := fsutil.UnmountUnder(d.home)
	return errors.Join(err, uerr)
}
