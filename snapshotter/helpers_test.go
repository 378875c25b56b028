package snapshotter_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/thinlayer/thinlayer/snapshotter"
	"github.com/thinlayer/thinlayer/testutil"
)

func TestMain(m *testing.M) {
	if os.Getenv(envCrashHome) != "" {
		crashChild()
	}
	testutil.Main(m)
}

var ctx = context.Background()

// optionsFor keep homes small: a 128 MB ext4 base with a small journal,
// or a 320 MB xfs one (xfs wants 300 MB+).
func optionsFor(fs string) []string {
	opts := []string{"dm.loopdatasize=2GB", "dm.loopmetadatasize=32MB", "dm.fs=" + fs, "dm.min_free_space=1%",
		"dm.use_deferred_removal=false", "dm.use_deferred_deletion=false"}
	if fs == "xfs" {
		return append(opts, "dm.basesize=320MB")
	}
	return append(opts, "dm.basesize=128MB", "dm.mkfsarg=-Jsize=4")
}

func open(t testing.TB, home, fs string) *snapshotter.Snapshotter {
	t.Helper()
	testutil.RequireKernel(t)
	s, err := snapshotter.OpenHome(home, optionsFor(fs))
	if err != nil {
		t.Fatalf("OpenHome %s: %v", home, err)
	}
	return s
}

func newSnapshotter(t testing.TB, fs string) *snapshotter.Snapshotter {
	s := open(t, t.TempDir(), fs)
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// mountSpec mounts m on a new directory, unmounted at test end.
func mountSpec(t testing.TB, m []snapshotter.Mount) string {
	t.Helper()
	if len(m) != 1 {
		t.Fatalf("want one mount, got %+v", m)
	}
	var flags uintptr
	var data []string
	for _, o := range m[0].Options {
		if o == "ro" {
			flags |= unix.MS_RDONLY
		} else {
			data = append(data, o)
		}
	}
	dir := t.TempDir()
	if err := unix.Mount(m[0].Source, dir, m[0].Type, flags, strings.Join(data, ",")); err != nil {
		t.Fatalf("mount %+v: %v", m[0], err)
	}
	t.Cleanup(func() { _ = unix.Unmount(dir, unix.MNT_DETACH) })
	return dir
}

func unmount(t testing.TB, dir string) {
	t.Helper()
	if err := unix.Unmount(dir, 0); err != nil {
		t.Fatalf("unmount %s: %v", dir, err)
	}
}

func writeFile(t testing.TB, dir, name, content string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func readFile(t testing.TB, dir, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// ourLayers are the DeviceSet layers of the snapshotter.
func ourLayers(t testing.TB, s *snapshotter.Snapshotter) []string {
	t.Helper()
	all, err := s.DeviceSet().List()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, h := range all {
		if snapshotter.IsSnapshotLayer(h) {
			out = append(out, h)
		}
	}
	return out
}

func keys(t testing.TB, s *snapshotter.Snapshotter, filters ...string) []string {
	t.Helper()
	var out []string
	err := s.Walk(ctx, func(_ context.Context, i snapshotter.Info) error {
		out = append(out, i.Name)
		return nil
	}, filters...)
	if err != nil {
		t.Fatalf("Walk %q: %v", filters, err)
	}
	return out
}
