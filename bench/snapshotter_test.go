//go:build linux && cgo

package bench_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/thinlayer/thinlayer/compat/mobyhome"
	"github.com/thinlayer/thinlayer/snapshotter"
)

// The snapshotter scenarios run thinlayer's containerd snapshotter (the
// library the proxy plugin serves) in the thinlayer column, next to the
// graph driver's CreateRemove: the same home options, the same kernel and
// run. They have no peer: containerd's own devmapper snapshotter is not
// measured here.

// snapParent is the committed snapshot the scenarios build on, holding the
// files of fxImage, as an image layer would.
const snapParent = "img"

var snapCtx = context.Background()

// snapHome is the snapshotter's home, opened on first use.
type snapHome struct {
	s    *snapshotter.Snapshotter
	home string
}

func (e *env) snapshotter(b *testing.B) *snapshotter.Snapshotter {
	b.Helper()
	if e.snap != nil {
		return e.snap.s
	}
	home := filepath.Join(e.dir, "snapshotter")
	s, err := snapshotter.OpenHome(home, mobyhome.DefaultOptions)
	if err != nil {
		b.Fatalf("open snapshotter on %s: %v", home, err)
	}
	e.snap = &snapHome{s: s, home: home}
	makeSnapParent(b, s)
	return s
}

// makeSnapParent prepares the parent, writes fxImage's files into it
// through its mounts, and commits it.
func makeSnapParent(b *testing.B, s *snapshotter.Snapshotter) {
	b.Helper()
	const key = snapParent + "-active"
	ms, err := s.Prepare(snapCtx, key, "")
	must(b, "prepare "+key, err)
	if len(ms) != 1 {
		b.Fatalf("prepare %s: want one mount, got %+v", key, ms)
	}
	dir := b.TempDir()
	must(b, "mount "+key, unix.Mount(ms[0].Source, dir, ms[0].Type, 0, strings.Join(ms[0].Options, ",")))
	werr := writeFiles(dir, fxImage.layers()[0].Files)
	must(b, "unmount "+key, unix.Unmount(dir, 0))
	must(b, "write "+key, werr)
	must(b, "commit "+snapParent, s.Commit(snapCtx, snapParent, key))
}

func writeFiles(dir string, files map[string]string) error {
	for name, data := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// close removes the parent and closes the snapshotter; a scenario that
// left a snapshot, or a Close that left a device, mount or loop device
// behind, fails here.
func (h *snapHome) close(b *testing.B) {
	if err := h.s.Remove(snapCtx, snapParent); err != nil {
		b.Errorf("snapshotter: remove %s: %v", snapParent, err)
	}
	if left := snapLayers(b, h.s); len(left) > 0 {
		b.Errorf("snapshotter: layers left behind: %v", left)
	}
	if err := h.s.Close(); err != nil {
		b.Errorf("close snapshotter: %v", err)
	}
	if left, err := mobyhome.Leftovers(h.home); err != nil || len(left) > 0 {
		b.Errorf("snapshotter left behind after Close: %v %v", left, err)
	}
}

func snapLayers(b *testing.B, s *snapshotter.Snapshotter) []string {
	b.Helper()
	all, err := s.DeviceSet().List()
	must(b, "list layers", err)
	var out []string
	for _, h := range all {
		if snapshotter.IsSnapshotLayer(h) {
			out = append(out, h)
		}
	}
	return out
}

// benchSnapPrepareCommit is what an image pull does per layer, minus the
// unpacking: Prepare on the parent (a writable thin snapshot, activated)
// and Commit (renamed in the database, deactivated). The snapshots are
// removed outside the timer.
func benchSnapPrepareCommit(b *testing.B, e *env, _ string) {
	s := e.snapshotter(b)
	names := make([]string, 0, b.N)
	b.ResetTimer()
	for i := range b.N {
		key, name := e.id("snap-active"), e.id("snap")
		_, err := s.Prepare(snapCtx, key, snapParent)
		must(b, "prepare", err)
		must(b, "commit", s.Commit(snapCtx, name, key))
		names = append(names, name)
		if i == 0 {
			checkCommitted(b, s, name)
		}
	}
	b.StopTimer()
	for _, n := range names {
		must(b, "remove "+n, s.Remove(snapCtx, n))
	}
}

func checkCommitted(b *testing.B, s *snapshotter.Snapshotter, name string) {
	b.Helper()
	info, err := s.Stat(snapCtx, name)
	if err != nil || info.Kind != snapshotter.KindCommitted || info.Parent != snapParent {
		b.Fatalf("snapshotter: %s after commit: %+v, %v; want committed on %s", name, info, err, snapParent)
	}
}

// benchSnapRemove removes an active snapshot of the parent (a container's,
// made by a Prepare outside the timer): deactivate and delete its thin
// device, then drop its record.
func benchSnapRemove(b *testing.B, e *env, _ string) {
	s := e.snapshotter(b)
	b.ResetTimer()
	for i := range b.N {
		b.StopTimer()
		key := e.id("snap-rm")
		_, err := s.Prepare(snapCtx, key, snapParent)
		must(b, "prepare", err)
		b.StartTimer()
		must(b, "remove", s.Remove(snapCtx, key))
		if i == 0 {
			b.StopTimer()
			checkRemoved(b, s, key)
			b.StartTimer()
		}
	}
}

// checkRemoved: the key is gone, and so is its layer (only the parent's
// is left).
func checkRemoved(b *testing.B, s *snapshotter.Snapshotter, key string) {
	b.Helper()
	if _, err := s.Stat(snapCtx, key); !errors.Is(err, snapshotter.ErrNotFound) {
		b.Fatalf("snapshotter: %s after remove: %v, want ErrNotFound", key, err)
	}
	if left := snapLayers(b, s); len(left) != 1 {
		b.Fatalf("snapshotter: layers after remove: %v, want the parent's only", left)
	}
}
