package crashwalk

import (
	"archive/tar"
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"

	gd "github.com/thinlayer/thinlayer/graphdriver"
	"github.com/thinlayer/thinlayer/graphdriver/internal/gdtest"
	"github.com/thinlayer/thinlayer/internal/faults"
	"github.com/thinlayer/thinlayer/testutil"
)

// The crash walk. Every mutating operation is first run once with a hook
// that records the fault points it passes (with their repeat count: the
// second "activate" of an operation is a step of its own). Then, for each
// step, the operation runs again on a fresh copy of its starting home
//
//   - in a child process killed with SIGKILL at that step (no deferred
//     cleanup runs), and
//   - in this process with that step failing,
//
// and afterwards Init on the same home must have settled everything: the
// thin ids in the pool's own metadata (thin_dump, offline) are exactly
// those the DevInfo files name, thin_check is clean, every layer from
// before is there with its data, nothing is mounted or active, and no
// filesystem grow is left unfinished. The walk prints what it covered.

const (
	envCrashHome  = "THINLAYER_CRASH_HOME"
	envCrashOp    = "THINLAYER_CRASH_OP"
	envCrashPoint = "THINLAYER_CRASH_POINT"
	envCrashRun   = "THINLAYER_CRASH_RUN"
)

// crashOp is one operation of the walk. Its runs share one home (a copy
// of its template), put back into the template's state before each run:
// cheaper than a new home, with its mkfs, per run.
type crashOp struct {
	name     string
	template string   // "empty", "keep" (layer keep), "victim" (keep, and victim on it), "stale"
	opts     []string // options of every Init of a run
	initOp   bool     // the operation is Init itself
	removes  bool     // victim may be gone (or marked deleted) afterwards
	grows    bool     // victim (or, for Init, the base) grows to grownTo
	only     []string // walk only these points, or "point#n" hits (the rest are another op's steps)
	pre      func(d gd.Driver) []string
	run      func(home string, d gd.Driver, opts []string) (gd.Driver, error)
	// growBase: each run grows the base a step further, as the base
	// cannot shrink back between runs.
	growBase bool
}

// baseStep is the base's size after growBase run run (run 0 records the
// points): 16 MB more each time, from 128 MB before run 0.
func baseStep(run int) uint64 { return uint64(128+16*(run+1)) << 20 }

// options are the driver options of run (from 0).
func (op crashOp) options(run int) []string {
	if op.growBase {
		return append(slices.Clone(op.opts), fmt.Sprintf("dm.basesize=%d", baseStep(run)))
	}
	return op.opts
}

// grownTo is the filesystem size run must leave, or 0.
func (op crashOp) grownTo(run int) uint64 {
	switch {
	case op.growBase:
		return baseStep(run)
	case op.grows:
		return 256 << 20
	}
	return 0
}

var applyTar = sync.OnceValue(func() []byte {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	_ = tw.WriteHeader(&tar.Header{Name: "applied/", Typeflag: tar.TypeDir, Mode: 0o755})
	body := bytes.Repeat([]byte("layer data "), 4096)
	for i := 0; i < 8; i++ {
		_ = tw.WriteHeader(&tar.Header{Name: fmt.Sprintf("applied/f%d", i), Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(body))})
		_, _ = tw.Write(body)
	}
	_ = tw.Close()
	return buf.Bytes()
})

func getIDs(ids ...string) func(gd.Driver) []string {
	return func(d gd.Driver) []string {
		for _, id := range ids {
			if _, err := d.Get(id, ""); err != nil {
				panic(fmt.Sprintf("pre-step Get %s: %v", id, err))
			}
		}
		return ids
	}
}

func initDriver(home string, _ gd.Driver, opts []string) (gd.Driver, error) {
	return gd.Init(home, opts, gd.IdentityMapping{})
}

func onDriver(f func(d gd.Driver) error) func(string, gd.Driver, []string) (gd.Driver, error) {
	return func(_ string, d gd.Driver, _ []string) (gd.Driver, error) { return d, f(d) }
}

var crashOps = []crashOp{
	{name: "base", template: "empty", opts: gdtest.CrashOptions(), initOp: true, run: initDriver},
	// Its other steps are Init's base check and a layer grow's, walked
	// by base and create-sized; the base check's deactivate is kept: a
	// failure there left the base active at its old size.
	{name: "basesize", template: "keep", opts: gdtest.CrashOptions(), initOp: true, growBase: true, run: initDriver,
		only: []string{"basesize.grow", "grow.start", "grow.fs", "grow.done", "deactivate#1"}},
	{name: "create", template: "keep", opts: gdtest.CrashOptions(),
		run: onDriver(func(d gd.Driver) error { return d.Create("victim", "keep", nil) })},
	{name: "createrw-on-mounted", template: "keep", opts: gdtest.CrashOptions(), pre: getIDs("keep"),
		run: onDriver(func(d gd.Driver) error { return d.CreateReadWrite("victim", "keep", nil) })},
	{name: "create-sized", template: "keep", opts: gdtest.CrashOptions(), grows: true,
		run: onDriver(func(d gd.Driver) error {
			return d.Create("victim", "keep", &gd.CreateOpts{StorageOpt: map[string]string{"size": "256MB"}})
		})},
	// next_device_id is stale (as after a crash): the first id tried
	// belongs to another layer, and the create may die holding it.
	{name: "create-stale-id", template: "stale", opts: gdtest.CrashOptions(), only: []string{"create.message"},
		run: onDriver(func(d gd.Driver) error { return d.Create("victim", "keep", nil) })},
	{name: "get", template: "victim", opts: gdtest.CrashOptions(),
		run: onDriver(func(d gd.Driver) error { _, err := d.Get("victim", ""); return err })},
	{name: "put", template: "victim", opts: gdtest.CrashOptions(), pre: getIDs("victim"),
		run: onDriver(func(d gd.Driver) error { return d.Put("victim") })},
	// Its Get and Put steps are the get and put operations' own.
	{name: "applydiff", template: "victim", opts: gdtest.CrashOptions(), only: []string{"applydiff.untar", "applydiff.midstream"},
		run: onDriver(func(d gd.Driver) error {
			_, err := d.ApplyDiff("victim", "keep", bytes.NewReader(applyTar()))
			return err
		})},
	{name: "remove", template: "victim", opts: gdtest.CrashOptions("dm.blkdiscard=true"), removes: true,
		run: onDriver(func(d gd.Driver) error { return d.Remove("victim") })},
	// Deferred removal and deletion on, the device open (here, mounted):
	// the delete fails busy and is left to the worker.
	{name: "remove-busy-deferred", template: "victim", opts: gdtest.WalkOptions(), removes: true, pre: getIDs("victim"),
		run: onDriver(func(d gd.Driver) error { return d.Remove("victim") })},
}

func findCrashOp(name string) crashOp {
	for _, op := range crashOps {
		if op.name == name {
			return op
		}
	}
	panic("no crash op " + name)
}

// hit is the nth pass (from 1) of a fault point.
type hit struct {
	point string
	n     int
}

func (h hit) String() string { return h.point + "#" + strconv.Itoa(h.n) }

func parseHit(s string) hit {
	p, n, _ := strings.Cut(s, "#")
	k, _ := strconv.Atoi(n)
	return hit{p, k}
}

// crashChild is the child's side, run from TestMain instead of the tests:
// open the home and run the operation until the armed point kills us.
func crashChild(home string) {
	op, h := findCrashOp(os.Getenv(envCrashOp)), parseHit(os.Getenv(envCrashPoint))
	run, _ := strconv.Atoi(os.Getenv(envCrashRun))
	opts := op.options(run)
	var d gd.Driver
	var err error
	if !op.initOp {
		if d, err = gd.Init(home, opts, gd.IdentityMapping{}); err == nil && op.pre != nil {
			op.pre(d)
		}
	}
	if err == nil {
		faults.Arm(h.point, h.n, true)
		_, err = op.run(home, d, opts)
	}
	fmt.Fprintf(os.Stderr, "crash child: %s never reached %s (err: %v)\n", op.name, h, err)
	os.Exit(3)
}

func TestMain(m *testing.M) {
	if home := os.Getenv(envCrashHome); home != "" {
		crashChild(home)
	}
	testutil.Main(m)
}

func TestCrashWalk(t *testing.T) {
	testutil.RequireFaults(t)
	w := newWalk(t)
	points := map[string]bool{}
	for _, op := range crashOps {
		w.series(t, op, points)
	}
	for _, p := range faults.Points() {
		if !points[p] {
			t.Errorf("fault point %s is reached by no operation of the walk", p)
		}
	}
	t.Logf("crash walk: %d operations, %d steps (%d distinct fault points), %d runs (%d killed, %d failed): "+
		"%d leaked devices, %d lost layers, %d stale mounts, %d unfinished grows; after every run the pool's "+
		"metadata (thinmeta) is sound %d/%d and names the DevInfos' thin ids %d/%d; thin_dump agrees %d/%d, "+
		"thin_check clean %d/%d (each operation's home after its series)",
		len(crashOps), w.steps, len(points), w.runs, w.kills, w.runs-w.kills,
		w.leaked, w.lost, w.staleMounts, w.grows, w.sound, w.runs, w.matched, w.runs,
		w.dumpsMatched, w.dumps, w.thinClean, w.thinChecks)
}

// series records op's steps, then kills and fails it at each in turn.
// The runs of one op share a home; each run's checks end by putting it
// back into the template's state, and the series ends with thin_check.
func (w *walk) series(t *testing.T, op crashOp, points map[string]bool) {
	home := w.fresh(t, op.template)
	run := 0
	hits := w.record(t, op, home)
	if op.only != nil {
		hits = slices.DeleteFunc(hits, func(h hit) bool {
			return !slices.Contains(op.only, h.point) && !slices.Contains(op.only, h.String())
		})
	}
	if op.template != "empty" {
		w.prepare(t, home, op, run)
	}
	w.steps += len(hits)
	for _, h := range hits {
		points[h.point] = true
		for _, kill := range []bool{true, false} {
			run++
			mode := map[bool]string{true: "kill", false: "fail"}[kill]
			t.Run(op.name+"/"+h.String()+"/"+mode, func(t *testing.T) {
				if op.template == "empty" {
					home = t.TempDir()
				}
				var d gd.Driver
				if kill {
					runChildUntilKilled(t, home, op.name, h, run)
				} else {
					d = w.failInProcess(t, home, op, h, run)
				}
				w.checkRun(t, home, d, op, run, kill)
				if op.template == "empty" && run == 2*len(hits) { // each run its own home: the last
					w.checkOffline(t, home)
				}
			})
		}
	}
	if op.template != "empty" {
		t.Run(op.name+"/thin_check", func(t *testing.T) { w.checkOffline(t, home) })
	}
}

// record runs op once, in this process, and returns the fault points it
// passes in order.
func (w *walk) record(t *testing.T, op crashOp, home string) []hit {
	if op.template != "empty" {
		w.prepare(t, home, op, -1)
	}
	var d gd.Driver
	if !op.initOp {
		d = gdtest.NewDriver(t, home, op.options(0))
		if op.pre != nil {
			op.pre(d)
		}
	}
	var mu sync.Mutex
	var hits []hit
	seen := map[string]int{}
	faults.SetHook(func(p string) error {
		mu.Lock()
		defer mu.Unlock()
		seen[p]++
		hits = append(hits, hit{p, seen[p]})
		return nil
	})
	d2, err := op.run(home, d, op.options(0))
	faults.SetHook(nil)
	if err != nil {
		t.Fatalf("%s without faults: %v", op.name, err)
	}
	gdtest.Must(t, d2.Cleanup())
	if len(hits) == 0 {
		t.Fatalf("%s passes no fault point", op.name)
	}
	return hits
}

// failInProcess runs op with step h failing, and returns the driver the
// run goes on with (nil if Init itself failed).
func (w *walk) failInProcess(t *testing.T, home string, op crashOp, h hit, run int) gd.Driver {
	var d gd.Driver
	var held []string
	if !op.initOp {
		d = gdtest.NewDriver(t, home, op.options(run))
		if op.pre != nil {
			held = op.pre(d)
		}
	}
	faults.Arm(h.point, h.n, false)
	d2, err := op.run(home, d, op.options(run))
	faults.SetHook(nil)
	if err != nil && !errors.Is(err, faults.ErrInjected) {
		t.Errorf("%s failing at %s: error does not carry the injected fault: %v", op.name, h, err)
	}
	if d2 == nil {
		return nil
	}
	for _, id := range held {
		_ = d2.Put(id) // the op may have been this Put
	}
	if op.template != "empty" {
		// The driver goes on: a layer can be made and removed.
		if err := d2.Create("after", "keep", nil); err != nil {
			t.Errorf("Create after %s failed at %s: %v", op.name, h, err)
		} else if err := d2.Remove("after"); err != nil {
			t.Errorf("Remove after %s failed at %s: %v", op.name, h, err)
		}
	}
	return d2
}

func runChildUntilKilled(t *testing.T, home, op string, h hit, run int) {
	exe, err := os.Executable()
	gdtest.Must(t, err)
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), envCrashHome+"="+home, envCrashOp+"="+op, envCrashPoint+"="+h.String(),
		envCrashRun+"="+strconv.Itoa(run))
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("child was not killed at %s (%v):\n%s", h, err, out)
	}
}
