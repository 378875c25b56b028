package devmapper

import (
	"fmt"
	"slices"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// maxPendingCookies bounds the cookies a Control keeps for udev to complete
// after NoUdevWait ops (each is a SysV semaphore, a system-wide resource).
const maxPendingCookies = 256

// cookieJar holds the cookies of ops that did not wait for udev. A cookie
// has value 1 until udev's rules complete it (dmsetup udevcomplete takes it
// to 0); it is destroyed only then, lazily when the next cookie is made, or
// at Close regardless. Each cookie is owned by one place at a time — the
// list or the goroutine that took it off — so it is destroyed exactly once.
type cookieJar struct {
	mu       sync.Mutex
	pending  []*cookie // oldest first
	reserved int       // ops between newCookie and keep/drop
	closed   bool
	limit    int           // 0: maxPendingCookies
	timeout  time.Duration // wait for the oldest when full; 0: DefaultUdevWaitTimeout
}

// newCookie makes a cookie for an op that won't wait for udev, after
// destroying completed ones. With the list full it first waits for the
// oldest (destroying it even if udev never completes it) and takes its
// place. The bound holds except while more than limit ops are in flight.
func (j *cookieJar) newCookie() (*cookie, error) {
	if err := j.reserve(); err != nil {
		return nil, err
	}
	ck, err := newCookie(1)
	if err != nil {
		j.unreserve()
		return nil, err
	}
	return ck, nil
}

func (j *cookieJar) reserve() error {
	j.mu.Lock()
	if j.closed {
		j.mu.Unlock()
		return fmt.Errorf("udev cookie: control closed: %w", unix.EBADF)
	}
	limit := j.limit
	if limit <= 0 {
		limit = maxPendingCookies
	}
	j.reap(limit)
	j.reserved++
	if len(j.pending) == 0 || len(j.pending)+j.reserved <= limit {
		j.mu.Unlock()
		return nil
	}
	oldest := j.pending[0]
	j.pending = slices.Delete(j.pending, 0, 1)
	j.mu.Unlock()
	timeout := j.timeout
	if timeout <= 0 {
		timeout = DefaultUdevWaitTimeout
	}
	_ = oldest.semop(0, timeout) // a timeout: udev lost the event; drop it anyway
	oldest.destroy()
	return nil
}

// reap destroys completed cookies: those at the head of the list, which is
// usually all of them; if that leaves the list full, all the others too
// (udev completes events of different devices out of order).
func (j *cookieJar) reap(limit int) {
	n := 0
	for n < len(j.pending) && j.pending[n].done() {
		j.pending[n].destroy()
		n++
	}
	j.pending = slices.Delete(j.pending, 0, n)
	if len(j.pending)+j.reserved < limit {
		return
	}
	j.pending = slices.DeleteFunc(j.pending, func(ck *cookie) bool {
		if ck.done() {
			ck.destroy()
			return true
		}
		return false
	})
}

func (j *cookieJar) unreserve() {
	j.mu.Lock()
	j.reserved--
	j.mu.Unlock()
}

// keep lists the cookie of an op that generated a uevent.
func (j *cookieJar) keep(ck *cookie) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.reserved--
	if j.closed {
		ck.destroy()
		return
	}
	j.pending = append(j.pending, ck)
}

// drop destroys the cookie of an op that failed or generated no uevent.
func (j *cookieJar) drop(ck *cookie) {
	ck.destroy()
	j.unreserve()
}

// close destroys every pending cookie, completed or not; udev's late
// udevcomplete then finds no semaphore, which it reports and ignores.
func (j *cookieJar) close() {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.closed = true
	for _, ck := range j.pending {
		ck.destroy()
	}
	j.pending = nil
}
