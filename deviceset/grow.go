package deviceset

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/thinlayer/thinlayer/dmopts"
	"github.com/thinlayer/thinlayer/fsutil"
	"github.com/thinlayer/thinlayer/internal/faults"
	"github.com/thinlayer/thinlayer/internal/recordfile"
)

// A layer's filesystem grows (to a size above its parent's, or the base to
// a larger dm.basesize) on a mount at <home>/mnt/.grow-<id>. That directory
// exists from before the size is recorded until the grow is done: if a
// crash comes between, the next start finds it and finishes the grow,
// instead of leaving a device larger than its filesystem for good. Being
// under <home>/mnt, a mount a crash left there is also taken down at the
// next start. (Layer ids never start with '.'.)

const growPrefix = ".grow-"

func (ds *DeviceSet) mntDir() string { return filepath.Join(ds.home, "mnt") }

func (ds *DeviceSet) growDir(hash string) string {
	return filepath.Join(ds.mntDir(), growPrefix+hashFile(hash))
}

// markGrow records, durably, that hash's filesystem is to grow.
func (ds *DeviceSet) markGrow(hash string) error {
	if err := faults.Point("grow.start"); err != nil {
		return err
	}
	if err := os.MkdirAll(ds.mntDir(), 0o700); err != nil {
		return err
	}
	if err := os.Mkdir(ds.growDir(hash), 0o700); err != nil && !errors.Is(err, os.ErrExist) {
		return err
	}
	return recordfile.SyncDir(ds.mntDir())
}

func (ds *DeviceSet) unmarkGrow(hash string) {
	if err := os.Remove(ds.growDir(hash)); err != nil && !errors.Is(err, os.ErrNotExist) {
		ds.log.WithError(err).WithField("hash", hash).Warn("remove grow mark")
	}
}

// growFS grows a layer's filesystem to its device size and clears the
// layer's grow mark. Growing a filesystem that already fills its device
// changes nothing, so a grow a crash interrupted can simply run again.
func (ds *DeviceSet) growFS(info *DevInfo) error {
	dev, err := ds.activate(info)
	if err != nil {
		return err
	}
	fsType, err := ds.filesystemOf(dev)
	if err == nil {
		err = faults.Point("grow.fs")
	}
	if err == nil {
		err = fsutil.GrowFS(context.Background(), fsType, dev, ds.growDir(info.Hash))
	}
	if derr := ds.deactivate(info.Hash); err == nil && derr != nil {
		err = derr
	}
	if err == nil {
		err = faults.Point("grow.done")
	}
	if err != nil {
		return fmt.Errorf("grow filesystem of layer %q: %w", info.Hash, err)
	}
	ds.unmarkGrow(info.Hash)
	return nil
}

// finishGrows completes the grows a crash interrupted (Open). A layer that
// fails to grow is logged and keeps its mark, to be tried at the next
// start: it costs that layer's extra space, not the home.
func (ds *DeviceSet) finishGrows() {
	entries, _ := os.ReadDir(ds.mntDir())
	for _, e := range entries {
		name, ok := strings.CutPrefix(e.Name(), growPrefix)
		if !ok || !e.IsDir() {
			continue
		}
		hash := name
		if name == baseFileName {
			hash = ""
		}
		if err := ds.finishGrow(hash); err != nil {
			ds.log.WithError(err).WithField("hash", hash).Error("finish interrupted filesystem grow")
		}
	}
}

func (ds *DeviceSet) finishGrow(hash string) error {
	ds.layers.Lock(hash)
	defer ds.layers.Unlock(hash)
	info, err := ds.lookup(hash)
	if errors.Is(err, ErrNotFound) || (err == nil && info.Deleted) {
		ds.unmarkGrow(hash) // its create was undone, or it is going
		return nil
	}
	if err != nil {
		return err
	}
	ds.log.WithField("hash", hash).Info("finishing interrupted filesystem grow")
	return ds.growFS(info)
}

// A larger dm.basesize grows the base device, whose filesystem every new
// layer starts from. The grow is an intent record (<home>/metadata/
// .grow-base: from and to) and three steps: the DevInfo takes the new size
// (first, so the device is never smaller than its filesystem), the
// filesystem grows, the record goes. A failure puts the DevInfo back at the
// old size when the filesystem did not grow past it; otherwise, and after a
// crash, the next start finds the record and finishes the grow — or undoes
// it, when dm.basesize now asks for less and the filesystem allows.

// runBaseGrow grows the base device as g records, or undoes it on failure.
// Called with the base's layer lock held.
func (ds *DeviceSet) runBaseGrow(info *DevInfo, g growRecord) error {
	err := ds.growBaseTo(info, g.To)
	if err == nil {
		return ds.store.removeBaseGrow()
	}
	if uerr := ds.undoBaseGrow(info, g); uerr != nil {
		return fmt.Errorf("grow base device from %d to %d bytes: %w (not undone: %v; the next start finishes it)", g.From, g.To, err, uerr)
	}
	return fmt.Errorf("grow base device from %d to %d bytes: %w (undone: the base device stays at %d bytes)", g.From, g.To, err, g.From)
}

func (ds *DeviceSet) growBaseTo(info *DevInfo, size uint64) error {
	if err := ds.markGrow(""); err != nil {
		return err
	}
	old := info.Size
	info.Size = size
	if err := ds.store.saveDevice(info); err != nil {
		info.Size = old
		return err
	}
	return ds.growFS(info)
}

// undoBaseGrow puts the base device back at g.From, unless its filesystem
// (read from the superblock, at the size the DevInfo has now) is larger.
func (ds *DeviceSet) undoBaseGrow(info *DevInfo, g growRecord) error {
	dev, err := ds.activate(info)
	if err != nil {
		return err
	}
	n, err := fsBytes(dev)
	if derr := ds.deactivate(""); err == nil {
		err = derr
	}
	if err != nil {
		return err
	}
	if n > g.From {
		return fmt.Errorf("its filesystem has %d bytes already", n)
	}
	old := info.Size
	info.Size = g.From
	if err := ds.store.saveDevice(info); err != nil {
		info.Size = old
		return err
	}
	ds.unmarkGrow("")
	return ds.store.removeBaseGrow()
}

// settleBaseGrow deals with a base grow a crash or a failure left (Open,
// before growBase): undone when dm.basesize now asks for less than its
// target and the filesystem allows, finished otherwise. A record that
// does not fit the base's DevInfo is not this package's: ignored.
func (ds *DeviceSet) settleBaseGrow(info *DevInfo) error {
	g, ok, err := ds.store.loadBaseGrow()
	if err == nil && ok && !g.fits(info.Size) {
		err = fmt.Errorf("%w: %s: from %d to %d bytes, but the base device has %d", ErrCorruptMetadata,
			ds.store.path(baseGrowFile), g.From, g.To, info.Size)
	}
	if err != nil {
		ds.log.WithError(err).Error("base grow record ignored")
		return ds.store.removeBaseGrow()
	}
	if !ok {
		return nil
	}
	if ds.cfg.BaseSizeSet && ds.cfg.BaseSize < g.To {
		uerr := ds.undoBaseGrow(info, g)
		if uerr == nil {
			ds.log.WithField("size", g.From).Info("undid interrupted base device grow")
			return nil
		}
		ds.log.WithError(uerr).Warn("interrupted base device grow cannot be undone; finishing it")
	}
	ds.log.WithField("size", g.To).Info("finishing interrupted base device grow")
	return ds.runBaseGrow(info, g)
}

// fits reports whether g is a grow of a device now of size bytes.
func (g growRecord) fits(size uint64) bool {
	return dmopts.CheckDeviceSize(g.From) == nil && dmopts.CheckDeviceSize(g.To) == nil && g.From < g.To &&
		(size == g.From || size == g.To)
}
