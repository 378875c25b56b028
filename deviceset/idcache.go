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
// the first create after Init would read 10 000 files. A clean Shutdown
// keeps the index in <home>/.thinlayer-ids with a stamp of the metadata
// directory — its inode, mtime and ctime — and the next Open's first create
// takes it instead, when the stamp still holds and the directory lists
// exactly the layers the file names. Every DevInfo change thinlayer and
// Moby make (write to a temp file, rename; unlink) moves the directory's
// times, so a layer made, removed or rewritten since — by a crash-
// interrupted run, by Moby's driver after a switch back — fails the check
// and the index is read from the DevInfos as before. The file lives
// outside metadata/ so that writing it does not move the stamp; its name
// starts with a dot, which Moby's walk skips.
const idCacheFile = ".thinlayer-ids"

// maxIDCache bounds the file: ~100 bytes a layer, a million layers.
const maxIDCache = 128 << 20

type idCache struct {
	Dir dirStamp             `json:"metadata_dir"`
	IDs map[string]dm.ThinID `json:"ids"` // layer ("" the base) → thin id
}

type dirStamp struct {
	Ino   uint64 `json:"ino"`
	Mtime int64  `json:"mtime_ns"`
	Ctime int64  `json:"ctime_ns"`
}

func stampOf(dir string) (dirStamp, error) {
	var st unix.Stat_t
	if err := unix.Stat(dir, &st); err != nil {
		return dirStamp{}, &os.PathError{Op: "stat", Path: dir, Err: err}
	}
	return dirStamp{Ino: st.Ino, Mtime: st.Mtim.Nano(), Ctime: st.Ctim.Nano()}, nil
}

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
	if json.Unmarshal(b, &c) != nil || len(c.IDs) != len(hashes) {
		return nil, false
	}
	now, err := stampOf(ds.store.dir)
	if err != nil || now != c.Dir {
		return nil, false
	}
	owners := make(map[dm.ThinID][]string, len(hashes))
	for _, h := range hashes {
		id, ok := c.IDs[h]
		if !ok || id.Check() != nil {
			return nil, false
		}
		owners[id] = append(owners[id], h)
	}
	return owners, true
}

// saveIDCache keeps the built index for the next Open (at Shutdown, after
// the last write to metadata/). An index never built this run is left as
// it is: its stamp tells whether it still holds.
func (ds *DeviceSet) saveIDCache() error {
	x := &ds.ids
	x.mu.Lock()
	defer x.mu.Unlock()
	if !x.built || ds.home == "" {
		return nil
	}
	c := idCache{IDs: make(map[string]dm.ThinID)}
	for id, hs := range x.owners {
		for _, h := range hs {
			c.IDs[h] = id
		}
	}
	var err error
	if c.Dir, err = stampOf(ds.store.dir); err != nil {
		return err
	}
	b, err := json.Marshal(c)
	if err != nil {
		return err
	}
	return recordfile.Write(ds.home, idCacheFile, b)
}
