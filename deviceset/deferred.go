package deviceset

import (
	"errors"
	"sync"
	"time"

	"github.com/sirupsen/logrus"

	dm "github.com/thinlayer/thinlayer/devmapper"
	"github.com/thinlayer/thinlayer/internal/faults"
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
	log     logrus.FieldLogger
	kick    chan struct{}
	stop    chan struct{}
	stopped sync.Once
	done    sync.WaitGroup
	mu      sync.Mutex      // a leaf lock
	queued  map[string]bool // guarded by mu
	delay   time.Duration   // current backoff: the worker goroutine's own, no lock
}

func (ds *DeviceSet) startDeleter() {
	ds.deleter = newDeleter(ds.deleteMarked, ds.markedDeleted, ds.log)
}

func newDeleter(del func(string) error, pending func() []string, log logrus.FieldLogger) *deleter {
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
	d.stopped.Do(func() { close(d.stop) })
	d.done.Wait()
}

// run tries the deletions a previous run left at once, then sleeps until
// there is work. A layer is queued just after its delete failed busy, so
// it is first retried retryMin later; retries back off while they fail.
// New work never postpones a retry already due, only brings it forward.
func (d *deleter) run() {
	defer d.done.Done()
	d.mu.Lock()
	for _, h := range d.pending() { // off Init's path: this reads every DevInfo once
		d.queued[h] = true
	}
	d.mu.Unlock()
	d.retryAndBackOff()
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	var due time.Time // zero: no retry scheduled
	for {
		if due.IsZero() && d.count() > 0 {
			due = time.Now().Add(d.delay)
			timer.Reset(d.delay)
		}
		select {
		case <-d.stop:
			timer.Stop()
			return
		case <-d.kick:
			if due.IsZero() { // the queue was empty: fresh work
				d.delay = retryMin
			} else if time.Until(due) > retryMin {
				due = time.Now().Add(retryMin)
				timer.Reset(retryMin)
			}
			continue
		case <-timer.C:
			due = time.Time{}
		}
		d.retryAndBackOff()
	}
}

func (d *deleter) retryAndBackOff() {
	if d.count() == 0 {
		return
	}
	if d.retry() {
		d.delay = retryMin
	} else {
		d.delay = min(d.delay*2, retryMax)
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
		if ds.CheckLayerID(h) != nil { // a name no layer can have: never deletable
			continue
		}
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
		if err := faults.Point("delete.mark"); err != nil {
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
