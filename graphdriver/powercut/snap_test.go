package powercut

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/thinlayer/thinlayer/graphdriver/internal/gdtest"
	"github.com/thinlayer/thinlayer/snapshotter"
	"github.com/thinlayer/thinlayer/testutil"
	pc "github.com/thinlayer/thinlayer/testutil/powercut"
)

// The snapshotter's operations, on a home of its own on the same
// recorded filesystem: Prepare, Commit, Remove.

var ctx = context.Background()

// snapKeys are the snapshots the walk makes; each point checks all.
var snapKeys = []string{"base-active", "base", "child"}

type snapOp struct {
	name string
	pre  func(t *testing.T, s *snapshotter.Snapshotter)
	run  func(s *snapshotter.Snapshotter) error
}

var snapOps = []snapOp{
	{name: "snap-prepare", run: func(s *snapshotter.Snapshotter) error {
		_, err := s.Prepare(ctx, "base-active", "")
		return err
	}},
	{name: "snap-commit", pre: fillActive("base-active"),
		run: func(s *snapshotter.Snapshotter) error { return s.Commit(ctx, "base", "base-active") }},
	{name: "snap-prepare-child", run: func(s *snapshotter.Snapshotter) error {
		_, err := s.Prepare(ctx, "child", "base")
		return err
	}},
	{name: "snap-remove", run: func(s *snapshotter.Snapshotter) error { return s.Remove(ctx, "child") }},
}

func snapOptions() []string { return gdtest.CrashOptions() }

// fillActive writes files into an active snapshot (mounted here, then
// unmounted: durable before the next operation starts).
func fillActive(key string) func(*testing.T, *snapshotter.Snapshotter) {
	return func(t *testing.T, s *snapshotter.Snapshotter) {
		m, err := s.Mounts(ctx, key)
		gdtest.Must(t, err)
		dir := mountSpec(t, m)
		gdtest.WriteFile(t, filepath.Join(dir, "data"), "committed content", 0o644)
		gdtest.Must(t, os.Symlink("data", filepath.Join(dir, "link")))
		gdtest.Must(t, unix.Unmount(dir, 0))
	}
}

// recordSnapOps runs the snapshotter's operations on home, with marks.
func recordSnapOps(t *testing.T, r *pc.Rig, home string) []pc.Record {
	t.Helper()
	s, err := snapshotter.OpenHome(home, snapOptions())
	gdtest.Must(t, err)
	defer func() { gdtest.Must(t, s.Close()) }()
	var recs []pc.Record
	for _, op := range snapOps {
		if op.pre != nil {
			op.pre(t, s)
		}
		before := readSnaps(t, s)
		r.Mark(t, op.name+"-start")
		err := op.run(s)
		r.Mark(t, op.name+"-end")
		if err != nil {
			t.Fatalf("%s: %v", op.name, err)
		}
		recs = append(recs, pc.Record{Name: op.name, Before: before, After: readSnaps(t, s), Check: checkSnap})
	}
	return recs
}

// readSnaps reads every snapshot of the walk: its kind, parent, and files.
func readSnaps(t *testing.T, s *snapshotter.Snapshotter) pc.State {
	t.Helper()
	out := pc.State{}
	for _, key := range snapKeys {
		out[key] = readSnap(t, s, key)
	}
	return out
}

func readSnap(t *testing.T, s *snapshotter.Snapshotter, key string) pc.Layer {
	info, err := s.Stat(ctx, key)
	if err != nil {
		return pc.Layer{}
	}
	mkey := key
	if info.Kind == snapshotter.KindCommitted {
		mkey = "powercut-view"
		if _, err := s.View(ctx, mkey, key); err != nil {
			return pc.Layer{Present: true, Err: fmt.Sprintf("view: %v", err)}
		}
		defer func() {
			if err := s.Remove(ctx, mkey); err != nil {
				t.Errorf("remove view: %v", err)
			}
		}()
	}
	m, err := s.Mounts(ctx, mkey)
	if err != nil {
		return pc.Layer{Present: true, Err: fmt.Sprintf("mounts: %v", err)}
	}
	dir, err := mountOnce(m)
	if err != nil {
		return pc.Layer{Present: true, Err: err.Error()}
	}
	defer func() { _ = unix.Unmount(dir, 0); _ = os.Remove(dir) }()
	tree := testutil.TreeOf(t, dir)
	tree[".kind"] = fmt.Sprintf("%v parent=%q", info.Kind, info.Parent)
	return pc.Layer{Present: true, Tree: tree}
}

// mountOnce mounts a snapshot's mount spec on a new directory.
func mountOnce(m []snapshotter.Mount) (string, error) {
	if len(m) != 1 {
		return "", fmt.Errorf("want one mount, got %+v", m)
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
	dir, err := os.MkdirTemp("", "snap")
	if err != nil {
		return "", err
	}
	if err := unix.Mount(m[0].Source, dir, m[0].Type, flags, strings.Join(data, ",")); err != nil {
		_ = os.Remove(dir)
		return "", fmt.Errorf("mount %+v: %w", m[0], err)
	}
	return dir, nil
}

func mountSpec(t *testing.T, m []snapshotter.Mount) string {
	t.Helper()
	dir, err := mountOnce(m)
	gdtest.Must(t, err)
	return dir
}

// checkSnap opens the snapshotter's replayed home and judges it: every
// snapshot (Judge), a Prepare and Remove work, Close leaves nothing
// active, the pool's metadata is sound and names the DevInfos' ids.
func checkSnap(t *testing.T, mnt string, rec pc.Record, returned bool) ([]string, []string) {
	home := filepath.Join(mnt, "snap")
	s, err := snapshotter.OpenHome(home, snapOptions())
	if err != nil {
		return nil, []string{fmt.Sprintf("OpenHome: %v", err)}
	}
	st, err := s.DeviceSet().Status()
	if err != nil {
		_ = s.Close()
		return nil, []string{fmt.Sprintf("Status: %v", err)}
	}
	var v pc.Verdict
	got := readSnaps(t, s)
	for _, key := range snapKeys {
		v.Judge(key, got[key], rec, returned)
	}
	if _, err := s.Prepare(ctx, "probe", ""); err != nil {
		v.Bad = append(v.Bad, fmt.Sprintf("Prepare after OpenHome: %v", err))
	} else if err := s.Remove(ctx, "probe"); err != nil {
		v.Bad = append(v.Bad, fmt.Sprintf("Remove after OpenHome: %v", err))
	}
	if err := s.Close(); err != nil {
		v.Bad = append(v.Bad, fmt.Sprintf("Close: %v", err))
	}
	v.Bad = append(v.Bad, pc.Leftovers(t, home, st.PoolName)...)
	return v.Lost, append(v.Bad, pc.CheckPool(t, home)...)
}
