//go:build linux && cgo

package bench_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	dm "github.com/thinlayer/thinlayer/devmapper"
	"golang.org/x/sys/unix"
)

// floor does what no Get+Put can avoid, with raw ioctls through our
// devmapper package on thinlayer's pool: create a device, load a thin
// table, resume, mount, unmount, remove — and nothing else: no metadata,
// no locks, no waiting for udev (the control runs without udev sync and
// mounts /dev/dm-N, which devtmpfs makes when the table is loaded).
type floor struct {
	ctl    *dm.Control
	pool   string // "major:minor" of the pool, as a thin table names it
	mnt    string
	fsType string // "" is ext4, the bench homes' filesystem
	seq    int
}

func (e *env) floor(b *testing.B) (*floor, *driver) {
	b.Helper()
	d := e.driver(b, thinlayer)
	e.fixture(b, d, fxEmpty)
	if e.fl != nil {
		return e.fl, d
	}
	ctl, err := dm.OpenWith(dm.Options{Udev: dm.UdevOff})
	must(b, "open control", err)
	pool, err := ctl.Info(statusRow(*d, "Pool Name"))
	must(b, "pool info", err)
	mnt := filepath.Join(e.dir, "floor-mnt")
	must(b, "mkdir", os.MkdirAll(mnt, 0o755))
	e.fl = &floor{ctl: ctl, pool: fmt.Sprintf("%d:%d", pool.Major, pool.Minor), mnt: mnt}
	return e.fl, d
}

func statusRow(d driver, key string) string {
	for _, r := range d.Status() {
		if r[0] == key {
			return r[1]
		}
	}
	return ""
}

// thinOf is the thin id and size of one of thinlayer's layers.
func thinOf(b *testing.B, d *driver, id string) (dm.ThinID, dm.Sectors) {
	meta, err := d.GetMetadata(id)
	must(b, "metadata", err)
	thinID, err := strconv.ParseUint(meta["DeviceId"], 10, 32)
	must(b, "device id", err)
	size, err := strconv.ParseUint(meta["DeviceSize"], 10, 64)
	must(b, "device size", err)
	return dm.ThinID(thinID), dm.BytesToSectors(size)
}

// getPut activates thin device thinID, mounts it, unmounts it and removes
// the device.
func (f *floor) getPut(thinID dm.ThinID, size dm.Sectors) error {
	f.seq++
	name := fmt.Sprintf("bench-floor-%d", f.seq)
	info, err := f.ctl.Create(name, "")
	if err != nil {
		return err
	}
	table := []dm.TableLine{dm.Line(0, size, dm.Thin{PoolDev: f.pool, DeviceID: thinID})}
	err = f.ctl.Load(name, table, false)
	if err == nil {
		err = f.ctl.Resume(name, 0)
	}
	if err == nil {
		fsType := f.fsType
		if fsType == "" {
			fsType = "ext4"
		}
		err = unix.Mount(fmt.Sprintf("/dev/dm-%d", info.Minor), f.mnt, fsType, 0, "")
		if err == nil {
			err = unix.Unmount(f.mnt, 0)
		}
	}
	if rerr := f.ctl.Remove(name, 0); err == nil {
		err = rerr
	}
	return err
}

func (f *floor) close() { f.ctl.Close() }

// benchFloorWarm is the floor's Get+Put of one layer, over and over.
func benchFloorWarm(b *testing.B, e *env) {
	f, d := e.floor(b)
	id := e.id("floor")
	must(b, "create", d.Create(id, "empty", nil))
	thinID, size := thinOf(b, d, id)
	checkFloor(b, f, thinID, size)
	b.ResetTimer()
	for range b.N {
		must(b, "floor get+put", f.getPut(thinID, size))
	}
	b.StopTimer()
	must(b, "remove", d.Remove(id))
}

// benchFloorCold is the floor's Get+Put of fresh snapshots, one each.
func benchFloorCold(b *testing.B, e *env) {
	f, d := e.floor(b)
	ids := make([]string, b.N)
	thin := make([]dm.ThinID, b.N)
	var size dm.Sectors
	for i := range ids {
		ids[i] = e.id("floor-cold")
		must(b, "create", d.Create(ids[i], "empty", nil))
		thin[i], size = thinOf(b, d, ids[i])
	}
	b.ResetTimer()
	for i := range ids {
		must(b, "floor get+put", f.getPut(thin[i], size))
	}
	b.StopTimer()
	removeAll(b, d, ids)
}

// checkFloor mounts once and looks for the layer's rootfs/ there: the
// floor mounts the same filesystem the drivers do.
func checkFloor(b *testing.B, f *floor, thinID dm.ThinID, size dm.Sectors) {
	info, err := f.ctl.Create("bench-floor-check", "")
	must(b, "create", err)
	defer func() { must(b, "remove", f.ctl.Remove("bench-floor-check", 0)) }()
	must(b, "load", f.ctl.Load("bench-floor-check", []dm.TableLine{dm.Line(0, size, dm.Thin{PoolDev: f.pool, DeviceID: thinID})}, false))
	must(b, "resume", f.ctl.Resume("bench-floor-check", 0))
	must(b, "mount", unix.Mount(fmt.Sprintf("/dev/dm-%d", info.Minor), f.mnt, "ext4", 0, ""))
	_, err = os.Stat(filepath.Join(f.mnt, "rootfs"))
	must(b, "unmount", unix.Unmount(f.mnt, 0))
	must(b, "floor mount holds the layer's rootfs/", err)
}
