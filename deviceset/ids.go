package deviceset

import (
	"slices"
	"sync"

	dm "github.com/thinlayer/thinlayer/devmapper"
)

// idIndex maps thin ids to the layers whose DevInfo names them. DevInfos
// are read lazily, one layer at a time; the index is built from all of
// them on first need (the first create or delete of a layer), or taken
// from what the last clean Shutdown kept when it still holds (idcache.go),
// and kept up to date after that — only this process writes the home.
//
// It answers what a single DevInfo cannot: whether another layer names
// the same thin id. Two DevInfos naming one id (a damaged home) must not
// lose a layer: deleting one keeps the thin device, and neither is
// mounted while both claim it. New ids skip every id a DevInfo names,
// even one the pool no longer has.
type idIndex struct {
	mu     sync.Mutex             // a leaf lock: no other lock is taken while it is held
	built  bool                   // guarded by mu
	owners map[dm.ThinID][]string // guarded by mu
}

// index returns the built index, reading every DevInfo on first use: the
// first create or delete (not mount) after Init.
func (ds *DeviceSet) index() *idIndex {
	x := &ds.ids
	x.mu.Lock()
	defer x.mu.Unlock()
	if !x.built {
		x.owners = map[dm.ThinID][]string{}
		hashes, err := ds.store.listDevices()
		if err != nil {
			ds.log.WithError(err).Error("list layers for the thin id index")
		}
		if owners, ok := ds.loadIDCache(hashes); ok && err == nil {
			x.owners, x.built = owners, true
			return x
		}
		for _, h := range hashes {
			info, err := ds.store.loadDevice(h)
			if err != nil {
				ds.log.WithError(err).WithField("hash", h).Warn("unreadable layer metadata: its thin id is not indexed")
				continue
			}
			x.owners[info.DeviceID] = append(x.owners[info.DeviceID], h)
		}
		x.built = true
	}
	return x
}

// isBuilt reports whether the index has been built.
func (x *idIndex) isBuilt() bool {
	x.mu.Lock()
	defer x.mu.Unlock()
	return x.built
}

// add records that hash's DevInfo names id.
func (x *idIndex) add(id dm.ThinID, hash string) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.owners == nil {
		x.owners = map[dm.ThinID][]string{}
	}
	if !slices.Contains(x.owners[id], hash) {
		x.owners[id] = append(x.owners[id], hash)
	}
}

// remove forgets that hash's DevInfo names id.
func (x *idIndex) remove(id dm.ThinID, hash string) {
	x.mu.Lock()
	defer x.mu.Unlock()
	rest := slices.DeleteFunc(x.owners[id], func(h string) bool { return h == hash })
	if len(rest) == 0 {
		delete(x.owners, id)
	} else {
		x.owners[id] = rest
	}
}

// named reports whether any DevInfo names id.
func (x *idIndex) named(id dm.ThinID) bool {
	x.mu.Lock()
	defer x.mu.Unlock()
	return len(x.owners[id]) > 0
}

// other returns a layer other than hash whose DevInfo names id, or "".
func (x *idIndex) other(id dm.ThinID, hash string) (string, bool) {
	x.mu.Lock()
	defer x.mu.Unlock()
	for _, h := range x.owners[id] {
		if h != hash {
			return h, true
		}
	}
	return "", false
}
