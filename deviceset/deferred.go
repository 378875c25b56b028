package deviceset

import (
	"errors"
	"sync"
	"time"

	dm "github.com/thinlayer/thinlayer/devmapper"
)

// Deferred deletion (dm.use_deferred_deletion): a layer whose thin device
// is still open somewhere (a mount leaked into another namespace) is marked
// deleted and Remove returns; a worker deletes it once it can. The worker
// sleeps until there is work, and backs off while deletions keep failing —
// no fixed polling interval.

const (
	retryMin = time.Second
	retryMax = time.Minute
)

type deleter struct {
	ds      *DeviceSet
	kick    chan struct{}
	stop    chan struct{}
	done    sync.WaitGroup
	mu      sync.Mutex
	pending map[string]bool
}

func (ds *DeviceSet) startDeleter() {
	d := &deleter{ds: ds, kick: make(chan struct{}, 1), stop: make(chan struct{}), pending: map[string]bool{}}
	ds.deleter = d
	d.done.Add(1)
	go d.run()
}

// add queues a hash and wakes the worker.
func (d *deleter) add(hash string) {
	d.mu.Lock()
	d.pending[hash] = true
	d.mu.Unlock()
	select {
	case d.kick <- struct{}{}:
	default:
	}
}

func (d *deleter) count() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.pending)
}

func (d *deleter) close() {
	close(d.stop)
	d.done.Wait()
}

func (d *deleter) run() {
	defer d.done.Done()
	d.findPending() // off Init's path: this reads every DevInfo once
	delay := retryMin
	for {
		var timer <-chan time.Time
		if d.count() > 0 {
			timer = time.After(delay)
		}
		select {
		case <-d.stop:
			return
		case <-d.kick:
			delay = retryMin
		case <-timer:
		}
		if d.retry() {
			delay = retryMin
		} else {
			delay = min(delay*2, retryMax)
		}
	}
}

// findPending queues the layers a previous run marked deleted.
func (d *deleter) findPending() {
	hashes, err := d.ds.store.listDevices()
	if err != nil {
		return
	}
	for _, h := range hashes {
		if info, err := d.ds.store.loadDevice(h); err == nil && info.Deleted {
			d.add(h)
		}
	}
}

// retry tries every pending deletion; it reports whether all went through.
func (d *deleter) retry() bool {
	d.mu.Lock()
	hashes := make([]string, 0, len(d.pending))
	for h := range d.pending {
		hashes = append(hashes, h)
	}
	d.mu.Unlock()
	ok := true
	for _, h := range hashes {
		err := d.ds.DeleteDevice(h, true)
		if err == nil || errors.Is(err, ErrNotFound) {
			d.mu.Lock()
			delete(d.pending, h)
			d.mu.Unlock()
			continue
		}
		ok = false
		d.ds.log.WithError(err).WithField("hash", h).Debug("deferred deletion: still busy")
	}
	return ok
}

// markDeleted records that a layer is to be deleted later. Called with the
// layer's lock held, after its delete message failed with EBUSY.
func (ds *DeviceSet) markDeleted(info *DevInfo) error {
	if !info.Deleted {
		info.Deleted = true
		if err := ds.store.saveDevice(info); err != nil {
			info.Deleted = false
			return err
		}
	}
	ds.deleter.add(info.Hash)
	return nil
}

// deferDelete says whether a failed delete should become a deferred one.
func (ds *DeviceSet) deferDelete(err error, syncDelete bool) bool {
	return !syncDelete && ds.cfg.DeferredDelete && ds.deleter != nil && errors.Is(err, dm.ErrBusy)
}
