package snapshotter_test

import (
	"strconv"
	"testing"
)

// BenchmarkPrepareCommit: a Prepare on a committed parent and its Commit,
// as an image pull does per layer.
func BenchmarkPrepareCommit(b *testing.B) {
	s := newSnapshotter(b, "ext4")
	parent := ""
	for i := 0; b.Loop(); i++ {
		key, name := "k"+strconv.Itoa(i), "c"+strconv.Itoa(i)
		if _, err := s.Prepare(ctx, key, parent); err != nil {
			b.Fatal(err)
		}
		if err := s.Commit(ctx, name, key); err != nil {
			b.Fatal(err)
		}
		parent = name
	}
}

// BenchmarkRemove: Remove of an active snapshot (made outside the timer).
func BenchmarkRemove(b *testing.B) {
	s := newSnapshotter(b, "ext4")
	for i := 0; b.Loop(); i++ {
		b.StopTimer()
		key := "k" + strconv.Itoa(i)
		if _, err := s.Prepare(ctx, key, ""); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		if err := s.Remove(ctx, key); err != nil {
			b.Fatal(err)
		}
	}
}
