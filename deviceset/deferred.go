package deviceset

import (
	"errors"
	"sync"
	"time"

	"github.com/sirupsen/logrus"

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
	del     func(hash string) error // deletes one layer; ErrNotFound counts as done
	pending func() []string         // the layers marked deleted at startup
	log     *logrus.Entry
	kick    chan struct{}
	stop    chan struct{}
	done    sync.WaitGroup
	mu      sync.Mutex
	queued  map[string]bool
	delay   time.Duration // current backoff (the worker's own)
}

func (ds *DeviceSet) startDeleter() {
	ds.deleter = newDeleter(ds.deleteMarked, ds.markedDeleted, ds.log)
}

func newDeleter(del func(string) error, pending func() []string, log *logrus.Entry) *deleter {
	d := &deleter{del: del, pending: pending, log: log, kick: make(chan struct{}, 1),
		stop: make(chan struct{}), queued: map[string]bool{}, delay: retryMin}
	d.done.Add(1)
	go d.run()
	return d
}

// add queues a hash and wakes the worker.
func (d *deleter) add(hash string) {
	d.mu.Lock()
	d.queued[hash] = true
	d.mu.Unlock()
	select {
	case d.kick <- struct{}{}:
	default:
	}
}

// drop unqueues a hash deleted by other means.
func (d *deleter) drop(hash string) {
	d.mu.Lock()
	delete(d.queued, hash)
	d.mu.Unlock()
}

func (d *deleter) count() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.queued)
}

// close stops the worker and waits for it; pending deletions stay marked
// on disk for the next start.
func (d *deleter) close() {
	close(d.stop)
	d.done.Wait()
}

func (d *deleter) run() {
	defer d.done.Done()
	for _, h := range d.pending() { // off Init's path: this reads every DevInfo once
		d.add(h)
	}
	for {
		var timer <-chan time.Time
		if d.count() > 0 {
			timer = time.After(d.delay)
		}
		select {
		case <-d.stop:
			return
		case <-d.kick:
			d.delay = retryMin
		case <-timer:
		}
		if d.retry() {
			d.delay = retryMin
		} else {
			d.delay = min(d.delay*2, retryMax)
		}
	}
}

// retry tries every queued deletion; it reports whether all went through.
func (d *deleter) retry() bool {
	d.mu.Lock()
	hashes := make([]string, 0, len(d.queued))
	for h := range d.queued {
		hashes = append(hashes, h)
	}
	d.mu.Unlock()
	ok := true
	for _, h := range hashes {
		select {
		case <-d.stop: // Cleanup waits for us: leave the rest for later
			return false
		default:
		}
		err := d.del(h)
		if err == nil || errors.Is(err, ErrNotFound) {
			d.mu.Lock()
			delete(d.queued, h)
			d.mu.Unlock()
			continue
		}
		ok = false
		d.log.WithError(err).WithField("hash", h).Debug("deferred deletion: still busy")
	}
	return ok
}

// markedDeleted lists the layers a previous run marked deleted.
func (ds *DeviceSet) markedDeleted() []string {
	hashes, err := ds.store.listDevices()
	if err != nil {
		ds.log.WithError(err).Error("list layers marked deleted")
		return nil
	}
	var marked []string
	for _, h := range hashes {
		if info, err := ds.store.loadDevice(h); err == nil && info.Deleted {
			marked = append(marked, h)
		}
	}
	return marked
}

// markDeleted records that a layer is to be deleted later. Called with the
// layer's lock held, after its delete message failed with EBUSY.
func (ds *DeviceSet) markDeleted(info *DevInfo) error {
	if !info.Deleted {
		if err := faultPoint("delete.mark"); err != nil {
			return err
		}
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
