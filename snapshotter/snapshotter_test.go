package snapshotter_test

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/thinlayer/thinlayer/snapshotter"
)

func TestLifecycle(t *testing.T) {
	for _, fs := range []string{"ext4", "xfs"} {
		t.Run(fs, func(t *testing.T) { testLifecycle(t, fs) })
	}
}

func testLifecycle(t *testing.T, fs string) {
	s := newSnapshotter(t, fs)
	m, err := s.Prepare(ctx, "a", "", snapshotter.WithLabels(map[string]string{"app": "one"}))
	if err != nil {
		t.Fatalf("Prepare: %v", err)
	}
	if m[0].Type != fs || !strings.HasPrefix(m[0].Source, "/dev/dm-") || slices.Contains(m[0].Options, "ro") {
		t.Errorf("active mounts = %+v", m)
	}
	if fs == "xfs" && !slices.Contains(m[0].Options, "nouuid") {
		t.Errorf("xfs mount without nouuid: %+v", m)
	}
	dir := mountSpec(t, m)
	writeFile(t, dir, "hello", "from a")
	unmount(t, dir)
	if err := s.Commit(ctx, "c1", "a"); err != nil {
		t.Fatalf("Commit: %v", err)
	}
	if _, err := s.Stat(ctx, "a"); !errors.Is(err, snapshotter.ErrNotFound) {
		t.Errorf("Stat of committed key: %v, want ErrNotFound", err)
	}
	info, err := s.Stat(ctx, "c1")
	if err != nil || info.Kind != snapshotter.KindCommitted || info.Name != "c1" {
		t.Fatalf("Stat c1 = %+v, %v", info, err)
	}
	if _, err := s.Mounts(ctx, "c1"); !errors.Is(err, snapshotter.ErrFailedPrecondition) {
		t.Errorf("Mounts of committed: %v, want ErrFailedPrecondition", err)
	}
	// The committed device is not active: its usage comes from the pool's metadata.
	u, err := s.Usage(ctx, "c1")
	if err != nil || u.Size <= 0 {
		t.Errorf("Usage(c1) = %+v, %v: want the blocks the written file took", u, err)
	}

	m, err = s.Prepare(ctx, "b", "c1")
	if err != nil {
		t.Fatalf("Prepare child: %v", err)
	}
	dir = mountSpec(t, m)
	if got := readFile(t, dir, "hello"); got != "from a" {
		t.Errorf("child sees %q", got)
	}
	writeFile(t, dir, "big", strings.Repeat("x", 4<<20))
	unix.Sync()
	ub, err := s.Usage(ctx, "b") // active: the thin target's status
	if err != nil || ub.Size < 4<<20 {
		t.Errorf("Usage(b) = %+v, %v: want at least the 4 MiB written", ub, err)
	}
	unmount(t, dir)

	vm, err := s.View(ctx, "v", "c1")
	if err != nil {
		t.Fatalf("View: %v", err)
	}
	if !slices.Contains(vm[0].Options, "ro") {
		t.Errorf("view mounts = %+v, want ro", vm)
	}
	vdir := mountSpec(t, vm)
	if got := readFile(t, vdir, "hello"); got != "from a" {
		t.Errorf("view sees %q", got)
	}
	if err := os.WriteFile(filepath.Join(vdir, "x"), nil, 0o644); !errors.Is(err, unix.EROFS) {
		t.Errorf("write in view: %v, want EROFS", err)
	}
	unmount(t, vdir)
	if err := s.Commit(ctx, "c2", "v"); !errors.Is(err, snapshotter.ErrFailedPrecondition) {
		t.Errorf("Commit of a view: %v, want ErrFailedPrecondition", err)
	}
	if _, err := s.Prepare(ctx, "x", "b"); !errors.Is(err, snapshotter.ErrFailedPrecondition) {
		t.Errorf("Prepare on an active parent: %v, want ErrFailedPrecondition", err)
	}
	if _, err := s.Prepare(ctx, "b", "c1"); !errors.Is(err, snapshotter.ErrAlreadyExists) {
		t.Errorf("Prepare of an existing key: %v, want ErrAlreadyExists", err)
	}
	if len(ourLayers(t, s)) != 3 {
		t.Errorf("layers = %v, want 3 (c1, b, v)", ourLayers(t, s))
	}

	if err := s.Remove(ctx, "c1"); !errors.Is(err, snapshotter.ErrFailedPrecondition) {
		t.Errorf("Remove with children: %v, want ErrFailedPrecondition", err)
	}
	for _, k := range []string{"b", "v", "c1"} {
		if err := s.Remove(ctx, k); err != nil {
			t.Errorf("Remove %s: %v", k, err)
		}
	}
	if l := ourLayers(t, s); len(l) != 0 {
		t.Errorf("layers left after removing all: %v", l)
	}
	if k := keys(t, s); len(k) != 0 {
		t.Errorf("snapshots left: %v", k)
	}
}

func TestWalkUpdate(t *testing.T) {
	s := newSnapshotter(t, "ext4")
	for _, k := range []string{"p1", "p2", "p3"} {
		if _, err := s.Prepare(ctx, k, "", snapshotter.WithLabels(map[string]string{"n": k, "set": "yes"})); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Commit(ctx, "c", "p3", snapshotter.WithLabels(map[string]string{"n": "c"})); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		filters []string
		want    []string
	}{
		{nil, []string{"c", "p1", "p2"}},
		{[]string{`labels."n"==p1`}, []string{"p1"}},
		{[]string{`labels.set`}, []string{"p1", "p2"}},
		{[]string{`labels.n==p1`, `labels.n==c`}, []string{"c", "p1"}},
		{[]string{`kind==committed`}, []string{"c"}},
		{[]string{`labels.set,labels.n!=p1`}, []string{"p2"}},
	}
	for _, c := range cases {
		if got := keys(t, s, c.filters...); !slices.Equal(got, c.want) {
			t.Errorf("Walk %q = %v, want %v", c.filters, got, c.want)
		}
	}
	info, err := s.Update(ctx, snapshotter.Info{Name: "p1", Labels: map[string]string{"n": "new"}}, "labels.n")
	if err != nil || info.Labels["n"] != "new" || info.Labels["set"] != "yes" {
		t.Errorf("Update labels.n = %+v, %v", info.Labels, err)
	}
	info, err = s.Update(ctx, snapshotter.Info{Name: "p1", Labels: map[string]string{"only": "1"}})
	if err != nil || len(info.Labels) != 1 || info.Labels["only"] != "1" {
		t.Errorf("Update all labels = %+v, %v", info.Labels, err)
	}
	if _, err := s.Update(ctx, snapshotter.Info{Name: "p1"}, "parent"); !errors.Is(err, snapshotter.ErrInvalidArgument) {
		t.Errorf("Update parent: %v, want ErrInvalidArgument", err)
	}
	if st, _ := s.Stat(ctx, "p1"); st.Labels["only"] != "1" {
		t.Errorf("Update not stored: %+v", st.Labels)
	}
}

// A layer of ours no snapshot names (as a crash leaves it) goes at Open;
// the snapshots stay.
func TestOpenReconciles(t *testing.T) {
	home := t.TempDir()
	s := open(t, home, "ext4")
	if _, err := s.Prepare(ctx, "keep", ""); err != nil {
		t.Fatal(err)
	}
	if err := s.DeviceSet().AddDevice(snapshotter.IDPrefix+"leaked", "", nil); err != nil {
		t.Fatal(err)
	}
	if err := s.DeviceSet().AddDevice("not-ours", "", nil); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = open(t, home, "ext4")
	defer s.Close()
	if l := ourLayers(t, s); len(l) != 1 {
		t.Errorf("layers after reopen = %v, want keep's only", l)
	}
	if !s.DeviceSet().HasDevice("not-ours") {
		t.Errorf("a layer that is not the snapshotter's was removed")
	}
	if k := keys(t, s); !slices.Equal(k, []string{"keep"}) {
		t.Errorf("snapshots after reopen = %v", k)
	}
}
