package deviceset

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"

	dm "github.com/thinlayer/thinlayer/devmapper"
	"github.com/thinlayer/thinlayer/loopback"
)

// Moby's pool table: a low water mark of 32768 blocks and no zeroing of new
// blocks (every layer gets a filesystem written over it anyway). Unlike
// Moby's, a pool made here errors writes when it runs out of data space
// (error_if_no_space) rather than queueing them for the kernel's
// no_space_timeout (60 s) before failing them anyway: a writer gets ENOSPC
// at once instead of hanging, and nothing else changes.
const poolLowWaterMark = 32768

// pool is the thin pool the layers live in.
type pool struct {
	name         string // device-mapper name
	dev          string // "major:minor", what thin tables name
	created      bool   // this DeviceSet made it (and takes it down at Shutdown)
	dataFile     string // loopback file, if any
	metadataFile string
	dataDev      string // the device under the pool: /dev/loopN or the user's
	metadataDev  string
	// blockBytes is the pool's data block size, from its table: a live
	// pool's cannot change, and an existing pool's may not be dm.blocksize.
	blockBytes uint64
}

// devicePrefix is Moby's: docker-<major>:<minor>-<inode> of the home
// directory, with Moby's (old-style) major/minor split, so the same pool and
// devices are found again.
func devicePrefix(home string) (string, error) {
	var st unix.Stat_t
	if err := unix.Stat(home, &st); err != nil {
		return "", fmt.Errorf("stat home %s: %w", home, err)
	}
	dev := uint64(st.Dev)
	major := (dev >> 8) & 0xfff
	minor := (dev & 0xff) | ((dev >> 12) & 0xfff00)
	return fmt.Sprintf("docker-%d:%d-%d", major, minor, st.Ino), nil
}

// openPool finds the pool or makes it, as Moby does: the user's thinpooldev,
// an existing pool of this home, or a new one over the data and metadata
// devices (loop devices over sparse files unless given).
func (ds *DeviceSet) openPool() (*pool, error) {
	p := &pool{name: ds.prefix + "-pool"}
	if ds.cfg.ThinPoolDevice != "" {
		p.name = strings.TrimPrefix(ds.cfg.ThinPoolDevice, dm.MapperDir+"/")
	}
	info, err := ds.dm.Info(p.name)
	switch {
	case err == nil:
		if p.blockBytes, err = ds.checkIsPool(p.name); err != nil {
			return nil, err
		}
		p.findLoopFiles(ds.home, info)
	case !errors.Is(err, dm.ErrNotFound):
		return nil, err
	case ds.cfg.ThinPoolDevice != "":
		return nil, fmt.Errorf("thin pool %s (dm.thinpooldev) does not exist: %w", p.name, err)
	default:
		if info, err = ds.createPool(p); err != nil {
			return nil, err
		}
	}
	p.dev = fmt.Sprintf("%d:%d", info.Major, info.Minor)
	return p, nil
}

// checkIsPool refuses a device that is not a thin pool, and returns the
// pool's data block size from its table.
func (ds *DeviceSet) checkIsPool(name string) (uint64, error) {
	table, err := ds.dm.Table(name)
	if err != nil {
		return 0, err
	}
	if len(table) != 1 || table[0].Type != dm.TypeThinPool {
		return 0, fmt.Errorf("device %s is not a thin pool", name)
	}
	return poolTableBlockBytes(name, table)
}

// findLoopFiles fills in the loopback files of an existing pool (for Status).
func (p *pool) findLoopFiles(home string, info dm.Info) {
	for _, f := range []struct {
		file *string
		dev  *string
		name string
	}{{&p.dataFile, &p.dataDev, "data"}, {&p.metadataFile, &p.metadataDev, "metadata"}} {
		path := filepath.Join(home, "devicemapper", f.name)
		if d, err := loopback.FindByFile(path); err == nil {
			*f.file, *f.dev = path, d.Path
		}
	}
}

func (ds *DeviceSet) createPool(p *pool) (dm.Info, error) {
	data, err := ds.poolBacking(p, "data", ds.cfg.DataDevice, ds.cfg.LoopDataSize, &p.dataFile)
	if err != nil {
		return dm.Info{}, err
	}
	defer data.Close()
	meta, err := ds.poolBacking(p, "metadata", ds.cfg.MetadataDevice, ds.cfg.LoopMetadataSize, &p.metadataFile)
	if err != nil {
		return dm.Info{}, err
	}
	defer meta.Close()
	if err := checkDistinct(data, meta); err != nil {
		return dm.Info{}, err
	}
	p.dataDev, p.metadataDev = data.path, meta.path
	size, err := data.size()
	if err != nil {
		return dm.Info{}, err
	}
	table := dm.ThinPool{
		MetadataDev:      meta.path,
		DataDev:          data.path,
		DataBlockSize:    dm.BytesToSectors(uint64(ds.cfg.BlockSize)),
		LowWaterMark:     poolLowWaterMark,
		SkipBlockZeroing: true,
		ErrorIfNoSpace:   true,
		ReadOnly:         ds.ro, // the kernel then changes nothing in the metadata
	}
	info, err := ds.dm.CreateAndLoad(p.name, "", []dm.TableLine{dm.Line(0, dm.BytesToSectors(size), table)}, 0)
	if err != nil {
		return dm.Info{}, fmt.Errorf("create thin pool %s: %w", p.name, err)
	}
	p.created = true
	p.blockBytes = table.DataBlockSize.Bytes()
	ds.log.WithFields(logrus.Fields{"pool": p.name, "data": data.path, "metadata": meta.path}).Debug("created thin pool")
	return info, nil
}

// backing is a block device under the pool, kept open until the pool holds it.
type backing struct {
	path string
	f    *os.File
	loop *loopback.Device
}

func (b *backing) Close() {
	if b.f != nil {
		b.f.Close()
	}
	if b.loop != nil {
		b.loop.Close() // autoclear: the pool now holds the loop device
	}
}

// checkDistinct refuses one block device under both data and metadata,
// however it is named (a symlink, another node): the pool would write data
// over its own metadata.
func checkDistinct(data, meta *backing) error {
	var a, b unix.Stat_t
	if unix.Stat(data.path, &a) != nil || unix.Stat(meta.path, &b) != nil {
		return nil // the pool's own load reports a missing device
	}
	if a.Mode&unix.S_IFMT == unix.S_IFBLK && a.Rdev == b.Rdev {
		return fmt.Errorf("data device %s and metadata device %s are the same block device", data.path, meta.path)
	}
	return nil
}

func (b *backing) size() (uint64, error) {
	if b.loop != nil {
		return b.loop.Size()
	}
	n, err := unix.IoctlGetInt(int(b.f.Fd()), unix.BLKGETSIZE64)
	if err != nil {
		return 0, fmt.Errorf("size of %s: %w", b.path, err)
	}
	return uint64(n), nil
}

// poolBacking opens the user's device, or attaches (creating or growing) the
// home's sparse loopback file.
func (ds *DeviceSet) poolBacking(p *pool, name, device string, size int64, file *string) (*backing, error) {
	flags := os.O_RDWR
	if ds.ro {
		flags = os.O_RDONLY
	}
	if device != "" {
		f, err := os.OpenFile(device, flags, 0)
		if err != nil {
			return nil, fmt.Errorf("open %s device: %w", name, err)
		}
		return &backing{path: device, f: f}, nil
	}
	dir := filepath.Join(ds.home, "devicemapper")
	path := filepath.Join(dir, name)
	if ds.ro {
		if _, err := os.Stat(path); err != nil {
			return nil, fmt.Errorf("%w: no pool is active and %v", ErrNotHome, err)
		}
	} else {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, err
		}
		if err := ensureImage(path, size); err != nil {
			return nil, err
		}
	}
	loop, err := loopback.Attach(path, loopback.Options{AutoClear: true, ReadOnly: ds.ro})
	if err != nil {
		return nil, err
	}
	*file = path
	return &backing{path: loop.Path, loop: loop}, nil
}

// ensureImage makes the sparse file, or grows it to size; it never shrinks.
func ensureImage(path string, size int64) error {
	fi, err := os.Stat(path)
	if err == nil && fi.Size() >= size {
		return nil
	}
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return loopback.CreateSparse(path, size)
}

// poolStatus asks the kernel; noFlush spares a metadata commit when the
// numbers need not be exact.
func (ds *DeviceSet) poolStatus(noFlush bool) (dm.ThinPoolStatus, error) {
	return ds.dm.PoolStatus(ds.pool.name, noFlush)
}

// removePool takes down a pool this DeviceSet created; its loop devices go
// with it (autoclear).
func (ds *DeviceSet) removePool() error {
	if ds.cfg.ThinPoolDevice != "" {
		return nil // the user's pool, not ours to take down
	}
	err := ds.ctl.Remove(ds.pool.name, 0) // waits for udev, as deactivateAll does
	if errors.Is(err, dm.ErrNotFound) {
		return nil
	}
	return err
}
