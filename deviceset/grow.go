package deviceset

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/thinlayer/thinlayer/fsutil"
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
	if err := faultPoint("grow.start"); err != nil {
		return err
	}
	if err := os.MkdirAll(ds.mntDir(), 0o700); err != nil {
		return err
	}
	if err := os.Mkdir(ds.growDir(hash), 0o700); err != nil && !errors.Is(err, os.ErrExist) {
		return err
	}
	return syncDir(ds.mntDir())
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
		err = faultPoint("grow.fs")
	}
	if err == nil {
		err = fsutil.GrowFS(context.Background(), fsType, dev, ds.growDir(info.Hash))
	}
	if derr := ds.deactivate(info.Hash); err == nil && derr != nil {
		err = derr
	}
	if err == nil {
		err = faultPoint("grow.done")
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
