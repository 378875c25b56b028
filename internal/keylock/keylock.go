// Package keylock gives one mutex per key (a layer id), created on first
// use and dropped when nobody holds or waits for it, so that operations on
// different layers never wait for each other.
package keylock

import "sync"

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
