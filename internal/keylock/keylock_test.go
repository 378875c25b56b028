package keylock

import (
	"sync"
	"testing"
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
