package graphdriver_test

import (
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	dm "github.com/thinlayer/thinlayer/devmapper"
	"github.com/thinlayer/thinlayer/internal/faults"
	"github.com/thinlayer/thinlayer/testutil"
)

// A snapshot of a mounted layer suspends it only across the create_snap
// message, not while it waits for another transaction: here a Remove holds
// the transaction lock (stopped at its discard) while a Create of a child
// of a mounted layer waits. The mounted layer must stay live (not
// suspended; a write and fsync to it complete) all that time, and the
// snapshot, made after, holds that write.
func TestSnapshotOriginLiveWhileTxBusy(t *testing.T) {
	testutil.RequireFaults(t)
	d := newDriver(t, t.TempDir(), testOptions("ext4"))
	mustCreate(t, d, "origin", "")
	root := get(t, d, "origin")
	defer put(t, d, "origin")
	writeFile(t, root+"/before", "1", 0o644, 0, 0)
	mustCreate(t, d, "victim", "")
	writeFile(t, get(t, d, "victim")+"/x", "to discard", 0o644, 0, 0)
	put(t, d, "victim")
	m, err := d.GetMetadata("origin")
	must(t, err)
	origin := m["DeviceName"]

	held, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	faults.SetHook(func(p string) error {
		if p == "delete.discard" {
			once.Do(func() { close(held); <-release })
		}
		return nil
	})
	defer faults.SetHook(nil)
	releaseOnce := sync.OnceFunc(func() { close(release) })
	defer releaseOnce()

	removed := make(chan error, 1)
	go func() { removed <- d.Remove("victim") }()
	<-held
	created := make(chan error, 1)
	go func() { created <- d.Create("snap", "origin", nil) }()

	c, err := dm.Open()
	must(t, err)
	defer c.Close()
	// The old order suspended the origin at once, then queued for the lock:
	// watch it for a while.
	for end := time.Now().Add(2 * time.Second); time.Now().Before(end); {
		info, err := c.Info(origin)
		must(t, err)
		if info.Suspended {
			t.Fatalf("origin %s suspended while the snapshot waits for another transaction", origin)
		}
		select {
		case err := <-created:
			t.Fatalf("Create finished while Remove held the transaction lock: %v", err)
		case <-time.After(20 * time.Millisecond):
		}
	}
	if err := writeSynced(root+"/during", "2", 10*time.Second); err != nil {
		t.Fatalf("I/O to the origin while the snapshot waits: %v", err)
	}
	releaseOnce()
	must(t, <-removed)
	must(t, <-created)
	snap := get(t, d, "snap")
	defer put(t, d, "snap")
	if got := readFileString(t, snap+"/during"); got != "2" {
		t.Fatalf("the snapshot lacks the origin's write made before it: %q", got)
	}
}

// writeSynced writes and fsyncs path, failing if that takes longer than
// limit (a suspended device holds it until resumed).
func writeSynced(path, content string, limit time.Duration) error {
	done := make(chan error, 1)
	go func() {
		f, err := os.Create(filepath.Clean(path))
		if err == nil {
			_, err = f.WriteString(content)
			if serr := f.Sync(); err == nil {
				err = serr
			}
			f.Close()
		}
		done <- err
	}()
	select {
	case err := <-done:
		return err
	case <-time.After(limit):
		return os.ErrDeadlineExceeded
	}
}
