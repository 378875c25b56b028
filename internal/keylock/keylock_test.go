package keylock

import (
	"sync"
	"testing"
	"time"
)

func TestExclusivePerKeyAndCleanup(t *testing.T) {
	var l Locks
	var wg sync.WaitGroup
	counts := map[string]*int{"a": new(int), "b": new(int)}
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			key := []string{"a", "b"}[i%2]
			for j := 0; j < 1000; j++ {
				l.Lock(key)
				*counts[key]++ // the race detector catches a missing exclusion
				l.Unlock(key)
			}
		}(i)
	}
	wg.Wait()
	if *counts["a"] != 4000 || *counts["b"] != 4000 {
		t.Fatalf("counts %v", counts)
	}
	if len(l.m) != 0 {
		t.Fatalf("%d entries left after all unlocked", len(l.m))
	}
}

// TryLock takes a free key, refuses a held one without waiting, and what
// it took is let go by Unlock like any lock.
func TestTryLock(t *testing.T) {
	var l Locks
	if !l.TryLock("a") {
		t.Fatal("TryLock of a free key failed")
	}
	if l.TryLock("a") {
		t.Fatal("TryLock of a held key succeeded")
	}
	l.Lock("b")
	if l.TryLock("b") {
		t.Fatal("TryLock of a key held by Lock succeeded")
	}
	l.Unlock("b")
	done := make(chan struct{})
	go func() { l.Lock("a"); l.Unlock("a"); close(done) }()
	l.Unlock("a")
	<-done
	if !l.TryLock("a") {
		t.Fatal("TryLock after Unlock failed")
	}
	l.Unlock("a")
	if len(l.m) != 0 {
		t.Fatalf("%d entries left after all unlocked", len(l.m))
	}
}

func TestWaitFree(t *testing.T) {
	var l Locks
	if !l.WaitFree("a", time.Millisecond) {
		t.Fatal("a free key: WaitFree false")
	}
	l.Lock("a")
	if l.WaitFree("a", 20*time.Millisecond) {
		t.Fatal("a held key: WaitFree true")
	}
	go func() { time.Sleep(20 * time.Millisecond); l.Unlock("a") }()
	if !l.WaitFree("a", 10*time.Second) {
		t.Fatal("a key let go of while waiting: WaitFree false")
	}
	l.WaitFree("a", 10*time.Second) // the first, timed-out waiter may still pass through
	if !l.TryLock("a") {            // nothing left behind once the waiters are done
		t.Fatal("key still held after WaitFree")
	}
	l.Unlock("a")
}
