package snapshotter_test

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"

	dm "github.com/thinlayer/thinlayer/devmapper"
	"github.com/thinlayer/thinlayer/internal/faults"
	"github.com/thinlayer/thinlayer/snapshotter"
	"github.com/thinlayer/thinlayer/testutil"
	"github.com/thinlayer/thinlayer/thinmeta"
)

// The crash walk, as the graph driver's: each operation is run once to
// record the fault points it passes (the DeviceSet's and this package's,
// with repeat counts), then for each step on a fresh home it is killed
// there (SIGKILL, in a re-exec'd child) and, separately, failed there in
// process. Reopening must leave: no thin device in the pool that no
// DevInfo names, no layer of ours that no snapshot names, every snapshot
// from before with its data, and the victim either whole or gone.

const (
	envCrashHome  = "THINLAYER_SNAP_CRASH_HOME"
	envCrashOp    = "THINLAYER_SNAP_CRASH_OP"
	envCrashPoint = "THINLAYER_SNAP_CRASH_POINT"
)

type crashOp struct {
	name     string
	withKey  bool                                   // the template has the active "victim" on "base"
	outcomes [][]string                             // the snapshot sets allowed afterwards
	run      func(s *snapshotter.Snapshotter) error // the operation
}

var crashOps = []crashOp{
	{name: "prepare", outcomes: [][]string{{"base"}, {"base", "victim"}},
		run: func(s *snapshotter.Snapshotter) error { _, err := s.Prepare(ctx, "victim", "base"); return err }},
	{name: "view", outcomes: [][]string{{"base"}, {"base", "victim"}},
		run: func(s *snapshotter.Snapshotter) error { _, err := s.View(ctx, "victim", "base"); return err }},
	{name: "commit", withKey: true, outcomes: [][]string{{"base", "victim"}, {"base", "victim-c"}},
		run: func(s *snapshotter.Snapshotter) error { return s.Commit(ctx, "victim-c", "victim") }},
	{name: "remove", withKey: true, outcomes: [][]string{{"base", "victim"}, {"base"}},
		run: func(s *snapshotter.Snapshotter) error { return s.Remove(ctx, "victim") }},
}

func findOp(name string) crashOp {
	for _, op := range crashOps {
		if op.name == name {
			return op
		}
	}
	panic("no crash op " + name)
}

// crashChild is the child's side (from TestMain): open, arm, run, die.
func crashChild() {
	op := findOp(os.Getenv(envCrashOp))
	point, n, _ := strings.Cut(os.Getenv(envCrashPoint), "#")
	nth, _ := strconv.Atoi(n)
	s, err := snapshotter.OpenHome(os.Getenv(envCrashHome), optionsFor("ext4"))
	if err == nil {
		faults.Arm(point, nth, true)
		err = op.run(s)
	}
	fmt.Fprintf(os.Stderr, "crash child: %s never reached %s (err: %v)\n", op.name, os.Getenv(envCrashPoint), err)
	os.Exit(3)
}

// template makes a home with the committed "base" (holding a file) and,
// for withKey, the active "victim" on it; closed.
func template(t *testing.T, withKey bool) string {
	home := t.TempDir()
	s := open(t, home, "ext4")
	m, err := s.Prepare(ctx, "base-key", "")
	must(t, err)
	dir := mountSpec(t, m)
	writeFile(t, dir, "data", "base data")
	unmount(t, dir)
	must(t, s.Commit(ctx, "base", "base-key"))
	if withKey {
		m, err := s.Prepare(ctx, "victim", "base")
		must(t, err)
		dir := mountSpec(t, m)
		writeFile(t, dir, "mine", "victim data")
		unmount(t, dir)
	}
	must(t, s.Close())
	return home
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// recordHits runs op once and returns the fault points it passed, as
// "point#n".
func recordHits(t *testing.T, op crashOp) []string {
	s := open(t, template(t, op.withKey), "ext4")
	defer s.Close()
	seen := map[string]int{}
	var hits []string
	faults.SetHook(func(p string) error {
		seen[p]++
		hits = append(hits, p+"#"+strconv.Itoa(seen[p]))
		return nil
	})
	err := op.run(s)
	faults.SetHook(nil)
	must(t, err)
	return hits
}

func TestCrashWalk(t *testing.T) {
	testutil.RequireFaults(t)
	points := map[string]bool{}
	runs := 0
	for _, op := range crashOps {
		for _, h := range recordHits(t, op) {
			p, _, _ := strings.Cut(h, "#")
			points[p] = true
			for _, kill := range []bool{true, false} {
				mode := map[bool]string{true: "kill", false: "fail"}[kill]
				t.Run(op.name+"/"+h+"/"+mode, func(t *testing.T) {
					runs++
					home := template(t, op.withKey)
					succeeded := false
					if kill {
						runChildUntilKilled(t, home, op.name, h)
					} else {
						succeeded = failInProcess(t, home, op, h)
					}
					checkAfterCrash(t, home, op, succeeded)
				})
			}
		}
	}
	for _, p := range snapshotPoints() {
		if !points[p] {
			t.Errorf("fault point %s is reached by no operation of the walk", p)
		}
	}
	t.Logf("snapshotter crash walk: %d operations, %d distinct fault points, %d runs", len(crashOps), len(points), runs)
}

func runChildUntilKilled(t *testing.T, home, op, h string) {
	exe, err := os.Executable()
	must(t, err)
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), envCrashHome+"="+home, envCrashOp+"="+op, envCrashPoint+"="+h)
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("child was not killed at %s (%v):\n%s", h, err, out)
	}
}

// failInProcess fails op at h and reports whether op still succeeded: a
// failure after the DeviceSet's intent finishes its transaction (a
// delete), and the deactivate after a Commit is best effort.
func failInProcess(t *testing.T, home string, op crashOp, h string) bool {
	s := open(t, home, "ext4")
	point, n, _ := strings.Cut(h, "#")
	nth, _ := strconv.Atoi(n)
	faults.Arm(point, nth, false)
	err := op.run(s)
	faults.SetHook(nil)
	if err != nil && !errors.Is(err, faults.ErrInjected) {
		t.Errorf("%s failed at %s: err = %v, want ErrInjected or success", op.name, h, err)
	}
	must(t, s.Close())
	return err == nil
}

// checkAfterCrash reopens home and checks what the walk promises.
func checkAfterCrash(t *testing.T, home string, op crashOp, succeeded bool) {
	s := open(t, home, "ext4")
	defer func() { must(t, s.Close()) }()
	got := keys(t, s)
	if done := op.outcomes[len(op.outcomes)-1]; succeeded && !slices.Equal(got, done) {
		t.Errorf("%s returned success, snapshots after reopen = %v, want %v", op.name, got, done)
	}
	if !slices.ContainsFunc(op.outcomes, func(want []string) bool { return slices.Equal(got, want) }) {
		t.Errorf("snapshots after reopen = %v, want one of %v", got, op.outcomes)
	}
	if l := ourLayers(t, s); len(l) != len(got) {
		t.Errorf("%d layers of ours for %d snapshots: leaked or lost device (%v)", len(l), len(got), l)
	}
	if pool, devinfo := poolThinIDs(t, s), devInfoIDs(t, s); !slices.Equal(pool, devinfo) {
		t.Errorf("pool thin ids %v, DevInfo ids %v", pool, devinfo)
	}
	checkContent(t, s, "base", "data", "base data")
	if slices.Contains(got, "victim") && op.withKey {
		checkContent(t, s, "victim", "mine", "victim data")
	}
	if slices.Contains(got, "victim-c") {
		checkContent(t, s, "victim-c", "mine", "victim data")
	}
}

// checkContent reads a file of a snapshot through a view of it (or its
// own mounts when active).
func checkContent(t *testing.T, s *snapshotter.Snapshotter, key, file, want string) {
	info, err := s.Stat(ctx, key)
	must(t, err)
	var m []snapshotter.Mount
	if info.Kind == snapshotter.KindCommitted {
		m, err = s.View(ctx, "check-"+key, key)
		defer func() { must(t, s.Remove(ctx, "check-"+key)) }()
	} else {
		m, err = s.Mounts(ctx, key)
	}
	must(t, err)
	dir := mountSpec(t, m)
	defer unmount(t, dir)
	if got := readFile(t, dir, file); got != want {
		t.Errorf("%s/%s = %q, want %q", key, file, got, want)
	}
}

// poolThinIDs are the thin ids in the pool's own metadata.
func poolThinIDs(t *testing.T, s *snapshotter.Snapshotter) []dm.ThinID {
	st, err := s.DeviceSet().Status()
	must(t, err)
	c, err := dm.Open()
	must(t, err)
	defer c.Close()
	m, release, err := thinmeta.OpenLive(c, st.PoolName, "")
	must(t, err)
	defer func() { must(t, release()) }()
	defer m.Close()
	devs, err := m.Devices()
	must(t, err)
	var ids []dm.ThinID
	for _, d := range devs {
		ids = append(ids, d.ID)
	}
	slices.Sort(ids)
	return ids
}

// devInfoIDs are the thin ids the home's DevInfo files name (base too).
func devInfoIDs(t *testing.T, s *snapshotter.Snapshotter) []dm.ThinID {
	hashes, err := s.DeviceSet().List()
	must(t, err)
	var ids []dm.ThinID
	for _, h := range append(hashes, "") {
		info, err := s.DeviceSet().Info(h)
		must(t, err)
		ids = append(ids, info.DeviceID)
	}
	slices.Sort(ids)
	return slices.Compact(ids)
}

// snapshotPoints: the snapshotter's own points among those registered.
func snapshotPoints() []string {
	var own []string
	for _, p := range faults.Points() {
		if strings.HasPrefix(p, "snapshotter.") {
			own = append(own, p)
		}
	}
	return own
}
