package adapter_test

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	dm "github.com/thinlayer/thinlayer/devmapper"
	"github.com/thinlayer/thinlayer/snapshotter"
	"github.com/thinlayer/thinlayer/testutil"
)

// TestDaemon drives the real containerd daemon (Debian's containerd
// package) through the proxy plugin with ctr, as an operator would:
// prepare, mounts, mount and write, commit, view, ls/info, rm, and checks
// the outcome in the mounts, the files and the pool itself.
func TestDaemon(t *testing.T) {
	testutil.RequireKernel(t)
	bin, ctr := requireBinaries(t)
	dir := t.TempDir()
	s, sock := serveSnapshotter(t, dir)
	d := startContainerd(t, bin, ctr, dir, sock)
	checkPluginLoaded(t, d)

	d.snap(t, "prepare", "base")
	m := parseMount(t, d.snap(t, "mounts", filepath.Join(dir, "mnt-base"), "base"))
	checkMount(t, s, m, false)
	m.mount(t)
	const content = "written through containerd\n"
	if err := os.WriteFile(filepath.Join(m.Target, "hello"), []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	m.unmount(t)
	d.snap(t, "commit", "base-c", "base")

	d.snap(t, "view", "v", "base-c")
	vm := parseMount(t, d.snap(t, "mounts", filepath.Join(dir, "mnt-v"), "v"))
	checkMount(t, s, vm, true)
	checkView(t, vm, content)
	d.snap(t, "prepare", "child", "base-c")

	want := map[string][2]string{"base-c": {"", "Committed"}, "v": {"base-c", "View"}, "child": {"base-c", "Active"}}
	checkList(t, d, want)
	checkInfo(t, d, "v", "View", "base-c")
	checkInfo(t, d, "base-c", "Committed", "")
	checkBackend(t, s, want)
	removeAll(t, d, s)
}

// checkPluginLoaded: containerd lists the proxy plugin, loaded.
func checkPluginLoaded(t testing.TB, d *daemon) {
	t.Helper()
	out, err := d.run("plugins", "ls")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(out, "\n") {
		f := strings.Fields(l)
		if len(f) >= 3 && f[0] == "io.containerd.snapshotter.v1" && f[1] == "thinlayer" && f[len(f)-1] == "ok" {
			return
		}
	}
	t.Fatalf("ctr plugins ls shows no loaded thinlayer snapshotter:\n%s\n%s", out, d.logTail())
}

// checkMount: the printed mount is the snapshot's own thin device (the
// device of one of the snapshotter's layers, a block device), with the
// base's filesystem and the options of its kind.
func checkMount(t testing.TB, s *snapshotter.Snapshotter, m printedMount, view bool) {
	t.Helper()
	if m.Type != "xfs" {
		t.Errorf("%+v: type %q, want xfs (the home's dm.fs)", m, m.Type)
	}
	var st unix.Stat_t
	if err := unix.Stat(m.Source, &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFBLK {
		t.Errorf("%+v: source is not a block device (%v)", m, err)
	}
	if layerOfDevice(t, s, st.Rdev) == "" {
		t.Errorf("%+v: source is no snapshot layer's active thin device", m)
	}
	want := []string{"nouuid"} // every snapshot has the base's xfs UUID
	if view {
		want = []string{"ro", "nouuid"}
	}
	if !slices.Equal(m.Options, want) {
		t.Errorf("%+v: options %q, want %q", m, m.Options, want)
	}
}

// layerOfDevice is the snapshotter layer whose active device is dev
// (the source may be /dev/mapper/<name> or /dev/dm-<n>), or "".
func layerOfDevice(t testing.TB, s *snapshotter.Snapshotter, dev uint64) string {
	t.Helper()
	c, err := dm.Open()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for _, h := range ourLayers(t, s) {
		info, err := c.Info(filepath.Base(s.DeviceSet().DevicePath(h)))
		if err == nil && info.Dev() == dev {
			return h
		}
	}
	return ""
}

// checkView mounts the view as printed: the parent's file reads back and
// the filesystem refuses writes.
func checkView(t testing.TB, m printedMount, content string) {
	t.Helper()
	m.mount(t)
	defer m.unmount(t)
	if got, err := os.ReadFile(filepath.Join(m.Target, "hello")); err != nil || string(got) != content {
		t.Errorf("view: hello = %q, %v; want %q", got, err, content)
	}
	err := os.WriteFile(filepath.Join(m.Target, "new"), []byte("x"), 0o644)
	if !errors.Is(err, unix.EROFS) {
		t.Errorf("write into the view: %v, want EROFS", err)
	}
}

// checkList: ctr snapshots ls shows exactly want (key -> parent, kind).
func checkList(t testing.TB, d *daemon, want map[string][2]string) {
	t.Helper()
	got := map[string][2]string{}
	lines := strings.Split(strings.TrimSpace(d.snap(t, "ls")), "\n")
	for _, l := range lines[1:] { // KEY PARENT KIND
		switch f := strings.Fields(l); len(f) {
		case 2:
			got[f[0]] = [2]string{"", f[1]}
		case 3:
			got[f[0]] = [2]string{f[1], f[2]}
		default:
			t.Errorf("ls: odd line %q", l)
		}
	}
	if !mapsEqual(got, want) {
		t.Errorf("ls = %v, want %v", got, want)
	}
}

func mapsEqual(a, b map[string][2]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// checkInfo: ctr snapshots info prints key's Info as JSON.
func checkInfo(t testing.TB, d *daemon, key, kind, parent string) {
	t.Helper()
	var info struct{ Kind, Name, Parent string }
	out := d.snap(t, "info", key)
	if err := json.Unmarshal([]byte(out), &info); err != nil {
		t.Fatalf("info %s: %v: %s", key, err, out)
	}
	if info.Name != key || info.Kind != kind || info.Parent != parent {
		t.Errorf("info %s = %+v, want kind %s, parent %q", key, info, kind, parent)
	}
}

// checkBackend: the snapshots live in our snapshotter, under containerd's
// namespaced keys (<namespace>/<n>/<key>), with the same kinds.
func checkBackend(t testing.TB, s *snapshotter.Snapshotter, want map[string][2]string) {
	t.Helper()
	got := map[string]string{}
	err := s.Walk(context.Background(), func(_ context.Context, i snapshotter.Info) error {
		got[i.Name[strings.LastIndex(i.Name, "/")+1:]] = i.Kind.String()
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for key, pk := range want {
		if !strings.EqualFold(got[key], pk[1]) {
			t.Errorf("backend snapshot %s: kind %q, want %s (backend: %v)", key, got[key], pk[1], got)
		}
	}
	if len(got) != len(want) || len(ourLayers(t, s)) != len(want) {
		t.Errorf("backend holds %v and %d layers, want one each for %v", got, len(ourLayers(t, s)), want)
	}
}

// removeAll: rm of the parent is refused while it has children; then the
// view, the child and the parent go, and containerd's garbage collector
// has the snapshotter delete their thin devices.
func removeAll(t testing.TB, d *daemon, s *snapshotter.Snapshotter) {
	t.Helper()
	layers := ourLayers(t, s)
	ids := map[dm.ThinID]bool{}
	for _, h := range layers {
		info, err := s.DeviceSet().Info(h)
		if err != nil {
			t.Fatal(err)
		}
		ids[info.DeviceID] = true
	}
	out, err := d.run("snapshots", "--snapshotter", "thinlayer", "rm", "base-c")
	if err == nil || !strings.Contains(out, "child") {
		t.Errorf("rm of a parent with children: %v, want a refusal naming the child", err)
	}
	t.Logf("rm of the parent refused: %s", strings.TrimSpace(out))
	d.snap(t, "rm", "v")
	d.snap(t, "rm", "child")
	d.snap(t, "rm", "base-c")
	if out := strings.TrimSpace(d.snap(t, "ls")); strings.Contains(out, "\n") {
		t.Errorf("ls after rm: %q, want the header only", out)
	}
	start := time.Now()
	waitLayersGone(t, s)
	t.Logf("containerd's GC had the %d layers deleted %v after the last rm", len(layers), time.Since(start).Round(time.Millisecond))
	checkPoolClean(t, s, layers, ids)
}

// waitLayersGone waits, bounded, for containerd's garbage collection (it
// removes backend snapshots after the metadata says so) to leave the
// snapshotter with no layer.
func waitLayersGone(t testing.TB, s *snapshotter.Snapshotter) {
	t.Helper()
	deadline := time.Now().Add(daemonWait)
	for len(ourLayers(t, s)) > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("layers %v still there %v after rm", ourLayers(t, s), daemonWait)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// checkPoolClean: no device-mapper device of the removed layers is left,
// and the pool's metadata holds the base's thin device only.
func checkPoolClean(t testing.TB, s *snapshotter.Snapshotter, layers []string, ids map[dm.ThinID]bool) {
	t.Helper()
	c, err := dm.Open()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for _, h := range layers {
		name := filepath.Base(s.DeviceSet().DevicePath(h))
		if ok, err := c.Exists(name); err != nil || ok {
			t.Errorf("device %s of removed layer %s: exists %v (%v)", name, h, ok, err)
		}
	}
	base, err := s.DeviceSet().Info("")
	if err != nil {
		t.Fatal(err)
	}
	if got := poolThinIDs(t, s); !slices.Equal(got, []dm.ThinID{base.DeviceID}) {
		t.Errorf("pool thin ids %v, want the base's %d only (removed: %v)", got, base.DeviceID, ids)
	}
}
