package deviceset

import (
	"encoding/json"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"

	dm "github.com/thinlayer/thinlayer/devmapper"
	"github.com/thinlayer/thinlayer/internal/recordfile"
)

// The thin id index (ids.go) comes from every DevInfo: at 10 000 layers
// the first create after Init would open, read and parse 10 000 files. A
// clean Shutdown keeps the index in <home>/.thinlayer-ids with a stamp of
// every DevInfo file (inode, size, mtime, ctime) and of the metadata
// directory, and the next open's first create takes it instead — one stat
// a file — when the directory lists exactly the layers it names and every
// stamp still holds. A DevInfo made, removed, renamed over (thinlayer's and
// Moby's writes) or written in place (an editor, cp, a repair) since moves
// its stamp, and the index is read from the DevInfos as before. On a
// filesystem that keeps whole seconds, a change in the very second of the
// stamp would not show, so there the index is taken only when it was
// written in a later second than every time it records. The file lives
// outside metadata/, so writing it moves no stamp; its name starts with a
// dot, which Moby's walk skips.
const idCacheFile = ".thinlayer-ids"

// maxIDCache bounds the file: ~200 bytes a layer, half a million layers.
const maxIDCache = 128 << 20

type idCache struct {
	Dir    fileStamp            `json:"metadata_dir"`
	Layers map[string]keptLayer `json:"layers"` // layer ("" the base) → its DevInfo's id and stamp
}

type keptLayer struct {
	ID    dm.ThinID `json:"id"`
	Stamp fileStamp `json:"stamp"`
}

type fileStamp struct {
	Ino   uint64 `json:"ino"`
	Size  int64  `json:"size"`
	Mtime int64  `json:"mtime_ns"`
	Ctime int64  `json:"ctime_ns"`
}

func stampAt(dirfd int, name string) (fileStamp, error) {
	var st unix.Stat_t
	if err := unix.Fstatat(dirfd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fileStamp{}, &os.PathError{Op: "stat", Path: name, Err: err}
	}
	return fileStamp{Ino: st.Ino, Size: st.Size, Mtime: st.Mtim.Nano(), Ctime: st.Ctim.Nano()}, nil
}

// wholeSeconds reports whether the stamp looks like one of a filesystem
// that keeps only seconds.
func (s fileStamp) wholeSeconds() bool { return s.Mtime%1e9 == 0 && s.Ctime%1e9 == 0 }

func (ds *DeviceSet) idCachePath() string { return filepath.Join(ds.home, idCacheFile) }

// loadIDCache returns the owners of each thin id from the kept index, if
// it still describes hashes (every layer the metadata directory lists).
func (ds *DeviceSet) loadIDCache(hashes []string) (map[dm.ThinID][]string, bool) {
	if ds.home == "" {
		return nil, false
	}
	b, err := recordfile.Read(ds.idCachePath(), maxIDCache)
	if err != nil {
		return nil, false
	}
	var c idCache
	if json.Unmarshal(b, &c) != nil || len(c.Layers) != len(hashes) {
		return nil, false
	}
	dirfd, err := unix.Open(ds.store.dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, false
	}
	defer unix.Close(dirfd)
	if now, err := stampAt(dirfd, "."); err != nil || now != c.Dir {
		return nil, false
	}
	newest := max(c.Dir.Mtime, c.Dir.Ctime)
	coarse := c.Dir.wholeSeconds()
	owners := make(map[dm.ThinID][]string, len(hashes))
	for _, h := range hashes {
		k, ok := c.Layers[h]
		if !ok || k.ID.Check() != nil {
			return nil, false
		}
		if now, err := stampAt(dirfd, hashFile(h)); err != nil || now != k.Stamp {
			return nil, false
		}
		newest, coarse = max(newest, k.Stamp.Mtime, k.Stamp.Ctime), coarse || k.Stamp.wholeSeconds()
		owners[k.ID] = append(owners[k.ID], h)
	}
	if coarse {
		self, err := stampAt(unix.AT_FDCWD, ds.idCachePath())
		if err != nil || self.Mtime/1e9 <= newest/1e9 {
			return nil, false
		}
	}
	return owners, true
}

// saveIDCache keeps the built index for the next open (at Shutdown, after
// the last write to metadata/). An index never built this run is left as
// it is: its stamps tell whether it still holds.
func (ds *DeviceSet) saveIDCache() error {
	x := &ds.ids
	x.mu.Lock()
	defer x.mu.Unlock()
	if !x.built || ds.home == "" {
		return nil
	}
	dirfd, err := unix.Open(ds.store.dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return &os.PathError{Op: "open", Path: ds.store.dir, Err: err}
	}
	defer unix.Close(dirfd)
	c := idCache{Layers: make(map[string]keptLayer)}
	if c.Dir, err = stampAt(dirfd, "."); err != nil { // before the layers: a write between moves it
		return err
	}
	for id, hs := range x.owners {
		for _, h := range hs {
			st, err := stampAt(dirfd, hashFile(h))
			if err != nil {
				return err
			}
			c.Layers[h] = keptLayer{ID: id, Stamp: st}
		}
	}
	b, err := json.Marshal(c)
	if err != nil {
		return err
	}
	return recordfile.Write(ds.home, idCacheFile, b)
}
