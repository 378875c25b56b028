package deviceset

import (
	"container/list"
	"errors"
	"sync"

	dm "github.com/thinlayer/thinlayer/devmapper"
	"github.com/thinlayer/thinlayer/dmopts"
)

// DefaultIdleDevices is how many unmounted layers keep their device active
// (dmopts.DefaultIdleDevices).
const DefaultIdleDevices = dmopts.DefaultIdleDevices

// idleSet is the LRU of layers whose device stays active while nothing of
// ours mounts it. It is a hint, not the truth: activate always asks the
// kernel, so an entry whose device went (a deferred removal, an eviction
// racing a mount) costs nothing but a fresh activation. Its mutex is a
// leaf lock.
type idleSet struct {
	mu    sync.Mutex
	max   int                      // set once
	order *list.List               // guarded by mu: of hash, most recent at the front
	pos   map[string]*list.Element // guarded by mu
}

func newIdleSet(max int) *idleSet {
	return &idleSet{max: max, order: list.New(), pos: map[string]*list.Element{}}
}

// put records hash as idle and returns the hashes that fell out of the set.
func (s *idleSet) put(hash string) (evicted []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if e := s.pos[hash]; e != nil {
		s.order.MoveToFront(e)
		return nil
	}
	s.pos[hash] = s.order.PushFront(hash)
	for s.order.Len() > s.max {
		e := s.order.Back()
		h := s.order.Remove(e).(string)
		delete(s.pos, h)
		evicted = append(evicted, h)
	}
	return evicted
}

// putBack records hash as idle again without evicting anything (its
// caller holds layer locks that evicting would need); the next put
// trims the set.
func (s *idleSet) putBack(hash string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.pos[hash] == nil {
		s.pos[hash] = s.order.PushFront(hash)
	}
}

// take removes hash and reports whether it was idle.
func (s *idleSet) take(hash string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.pos[hash]
	if e != nil {
		s.order.Remove(e)
		delete(s.pos, hash)
	}
	return e != nil
}

func (s *idleSet) has(hash string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.pos[hash] != nil
}

func (s *idleSet) len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.order.Len()
}

// drain empties the set and returns what was in it.
func (s *idleSet) drain() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var all []string
	for e := s.order.Front(); e != nil; e = e.Next() {
		all = append(all, e.Value.(string))
	}
	s.order.Init()
	clear(s.pos)
	return all
}

// keepIdle leaves the unmounted layer's device active, unless something
// else still has it open (a mount leaked into another namespace): that
// one goes now, deferred if so configured, as it would without the set.
// Called with the layer's lock held; returns the layers to evict once the
// caller has let go of it.
func (ds *DeviceSet) keepIdle(hash string) ([]string, error) {
	if ds.idle == nil {
		return nil, ds.deactivate(hash)
	}
	cur, err := ds.dm.Info(ds.deviceName(hash))
	if errors.Is(err, dm.ErrNotFound) {
		return nil, nil
	}
	if err != nil || cur.OpenCount > 0 || cur.DeferredRemove {
		return nil, ds.deactivate(hash)
	}
	return ds.idle.put(hash), nil
}

// evictIdle deactivates layers that fell out of the idle set, each under
// its own lock, unless it became idle again meanwhile. A device in use
// by then (mounted again by a racing Get) is left as it is.
func (ds *DeviceSet) evictIdle(hashes []string) {
	for _, h := range hashes {
		ds.layers.Lock(h)
		if !ds.idle.has(h) {
			err := ds.dm.Remove(ds.deviceName(h), udevFlags)
			if err != nil && !errors.Is(err, dm.ErrNotFound) && !errors.Is(err, dm.ErrBusy) {
				ds.log.WithError(err).WithField("hash", h).Warn("deactivate idle device")
			}
		}
		ds.layers.Unlock(h)
	}
}

// dropIdle deactivates every idle device (Release, which leaves mounts but
// must not leave devices nothing uses).
func (ds *DeviceSet) dropIdle() {
	if ds.idle == nil {
		return
	}
	hashes := ds.idle.drain()
	ds.evictIdle(hashes)
	if len(hashes) > 0 {
		ds.log.WithField("count", len(hashes)).Debug("idle devices deactivated")
	}
}

// IdleDevices is how many unmounted layers have their device kept active.
func (ds *DeviceSet) IdleDevices() int {
	if ds.idle == nil {
		return 0
	}
	return ds.idle.len()
}
