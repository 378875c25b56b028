// Package keylock gives one mutex per key (a layer id), created on first
// use and dropped when nobody holds or waits for it, so that operations on
// different layers never wait for each other.
package keylock

import (
	"sync"
	"time"
)

// Locks is a set of per-key mutexes. The zero value is ready to use.
type Locks struct {
	mu sync.Mutex
	m  map[string]*entry // guarded by mu
}

type entry struct {
	sync.Mutex
	refs int // guarded by Locks.mu: holders and waiters
}

// Lock locks key.
func (l *Locks) Lock(key string) {
	l.mu.Lock()
	if l.m == nil {
		l.m = make(map[string]*entry)
	}
	e := l.m[key]
	if e == nil {
		e = &entry{}
		l.m[key] = e
	}
	e.refs++
	l.mu.Unlock()
	e.Lock()
}

// Unlock unlocks key, which must be locked.
func (l *Locks) Unlock(key string) {
	l.mu.Lock()
	e := l.m[key]
	if e.refs--; e.refs == 0 {
		delete(l.m, key)
	}
	l.mu.Unlock()
	e.Unlock()
}

// TryLock locks key if nobody holds or waits for it, and reports whether
// it did. It never waits: for a caller holding locks that key's holder may
// be waiting for, where Lock could deadlock.
func (l *Locks) TryLock(key string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.m[key] != nil { // held, or about to be
		return false
	}
	if l.m == nil {
		l.m = make(map[string]*entry)
	}
	e := &entry{refs: 1}
	e.Lock()
	l.m[key] = e
	return true
}

// WaitFree waits until nobody holds key, or for at most d, and reports
// whether key was free. It takes no lock the caller could then hold: for a
// caller that must let go of its own locks' guard (txMu) and retry, and
// that must not wait forever on a holder that may be waiting for it.
func (l *Locks) WaitFree(key string, d time.Duration) bool {
	l.mu.Lock()
	e := l.m[key]
	if e == nil {
		l.mu.Unlock()
		return true
	}
	e.refs++
	l.mu.Unlock()
	done := make(chan struct{})
	go func() { // takes and gives back key once its holder lets go
		e.Lock()
		l.Unlock(key)
		close(done)
	}()
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-done:
		return true
	case <-t.C:
		return false
	}
}
