package deviceset

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// The look lock admits one holder at a time (a flock: per open, so in
// one process as across processes), and is taken again once let go.
func TestLockLookExcludes(t *testing.T) {
	home := t.TempDir()
	if err := os.Mkdir(filepath.Join(home, "metadata"), 0o700); err != nil {
		t.Fatal(err)
	}
	unlock, err := LockLook(home)
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan error, 1)
	go func() {
		u, err := LockLook(home)
		if err == nil {
			u()
		}
		got <- err
	}()
	select {
	case err := <-got:
		t.Fatalf("a second LockLook returned (%v) while the first holds the lock", err)
	case <-time.After(200 * time.Millisecond):
	}
	unlock()
	select {
	case err := <-got:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the second LockLook still waits after unlock")
	}
	if _, err := LockLook(t.TempDir()); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("LockLook of a directory with no metadata/: %v", err)
	}
}
