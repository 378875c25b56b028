package cli

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/thinlayer/thinlayer/deviceset"
	dm "github.com/thinlayer/thinlayer/devmapper"
	"github.com/thinlayer/thinlayer/thinmeta"
)

// poolView is what the pool's own metadata says: every thin device it
// holds, whoever names it.
type poolView struct {
	devices   map[dm.ThinID]thinmeta.Device
	blockSize uint64 // bytes per data block
	problems  []thinmeta.Problem
}

// readPool reads the pool's metadata. A live read-write pool is read
// through a metadata snapshot (reserve_metadata_snap, released after); a
// pool brought up read-only changes nothing on its metadata, which is read
// directly from its backing file. usage walks every mapping tree for
// exclusive and shared blocks; check runs the metadata's own checks.
func readPool(ds *deviceset.DeviceSet, usage, check bool) (*poolView, error) {
	ctl, err := dm.Open()
	if err != nil {
		return nil, err
	}
	defer ctl.Close()
	m, release, err := openPoolMetadata(ctl, ds.Home(), ds.PoolName())
	if err != nil {
		return nil, fmt.Errorf("read metadata of pool %s: %w", ds.PoolName(), err)
	}
	defer func() { _ = release() }()
	defer m.Close()
	list := m.Devices
	if usage {
		list = m.DevicesWithUsage
	}
	devs, err := list()
	if err != nil {
		return nil, fmt.Errorf("read thin devices of pool %s: %w", ds.PoolName(), err)
	}
	v := &poolView{devices: make(map[dm.ThinID]thinmeta.Device, len(devs)),
		blockSize: uint64(m.Superblock().DataBlockSize) * dm.SectorSize}
	for _, d := range devs {
		v.devices[d.ID] = d
	}
	if check {
		v.problems = m.Check()
	}
	return v, nil
}

func openPoolMetadata(ctl *dm.Control, home, pool string) (*thinmeta.Metadata, func() error, error) {
	ro, err := poolIsReadOnly(ctl, pool)
	if err != nil {
		return nil, nil, err
	}
	if !ro {
		return openLive(ctl, home, pool)
	}
	file, err := metadataBackingFile(ctl, pool)
	if err != nil {
		return nil, nil, err
	}
	m, err := thinmeta.Open(file)
	return m, func() error { return nil }, err
}

// openLive reads a live pool's metadata through its one metadata
// snapshot, holding the home's look lock from reserve to
// release (the library's readers take it too) so that concurrent readers
// take turns instead of failing with EBUSY or releasing each other's.
func openLive(ctl *dm.Control, home, pool string) (*thinmeta.Metadata, func() error, error) {
	unlock, err := deviceset.LockLook(home)
	if err != nil {
		return nil, nil, err
	}
	m, release, err := thinmeta.OpenLive(ctl, pool, "")
	if errors.Is(err, unix.EBUSY) {
		// Under the lock no reader of ours holds one: another tool's, or
		// one a reader killed before its release left behind.
		err = fmt.Errorf("%w (another tool holds the pool's metadata snapshot, or a reader was killed holding it: `dmsetup message %s 0 release_metadata_snap` once nothing reads it)", err, pool)
	}
	if err != nil {
		unlock()
		return nil, nil, err
	}
	return m, func() error { defer unlock(); return release() }, nil
}

// metadataBackingFile is the file under the loop device a read-only pool
// keeps its metadata on. The loop device itself is held by the pool, and
// thinmeta.Open opens devices exclusively.
func metadataBackingFile(ctl *dm.Control, pool string) (string, error) {
	tp, err := thinPoolTable(ctl, pool)
	if err != nil {
		return "", err
	}
	b, err := os.ReadFile("/sys/dev/block/" + tp.MetadataDev + "/loop/backing_file")
	if errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("%w: metadata device %s of pool %s, brought up read-only, is not a loop device", errMetadataUnreadable, tp.MetadataDev, pool)
	}
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(string(b)), nil
}

// errMetadataUnreadable: the pool's metadata cannot be read where it is.
// A pool brought up read-only refuses the metadata snapshot a live read
// needs, and holds its metadata device, which thinmeta opens exclusively;
// only a loop device's backing file can be read then.
var errMetadataUnreadable = errors.New("pool metadata not readable here")

// bytes is a block count in bytes.
func (v *poolView) bytes(blocks uint64) *uint64 {
	n := blocks * v.blockSize
	return &n
}
