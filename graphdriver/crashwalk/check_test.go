package crashwalk

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"

	"github.com/thinlayer/thinlayer/deviceset"
	gd "github.com/thinlayer/thinlayer/graphdriver"
	"github.com/thinlayer/thinlayer/graphdriver/internal/gdtest"
	"github.com/thinlayer/thinlayer/testutil"
	"github.com/thinlayer/thinlayer/thinmeta"
)

// walk holds the template homes of the crash walk and its tallies.
type walk struct {
	dir       string
	templates map[string]string
	keepTree  map[string]map[string]string // by template

	steps, runs, kills, matched      int
	leaked, lost, staleMounts, grows int
	thinChecks, thinClean, sound     int
	dumps, dumpsMatched              int
}

func newWalk(t *testing.T) *walk {
	return &walk{dir: t.TempDir(), templates: map[string]string{}, keepTree: map[string]map[string]string{}}
}

// fresh returns a new home copied from template (made on first use): a
// copy is much cheaper than a new home with its mkfs.
func (w *walk) fresh(t *testing.T, template string) string {
	home := t.TempDir()
	if template == "empty" {
		return home
	}
	src, ok := w.templates[template]
	if !ok {
		src = w.makeTemplate(t, template)
		w.templates[template] = src
	}
	gdtest.Must(t, gdtest.CopyTree(src, home))
	return home
}

// prepare puts a home into its template's state: victim made afresh from
// keep (or gone), next_device_id stale for "stale".
func (w *walk) prepare(t *testing.T, home string, op crashOp, run int) {
	t.Helper()
	d, err := gd.Init(home, op.options(run), gd.IdentityMapping{})
	gdtest.Must(t, err)
	defer d.Cleanup()
	w.reset(t, d, op)
	gdtest.Must(t, d.Cleanup())
	if op.template == "stale" {
		staleNextID(t, home)
	}
}

// reset makes victim as the template has it: gone, or a whole layer on
// keep (a victim still whole is kept: the walk checked it).
func (w *walk) reset(t *testing.T, d gd.Driver, op crashOp) {
	t.Helper()
	want := op.template == "victim"
	if d.Exists("victim") && want && readable(d, "victim") {
		return
	}
	if d.Exists("victim") {
		gdtest.Must(t, d.Remove("victim"))
	}
	if want {
		gdtest.MustCreate(t, d, "victim", "keep")
	}
}

func readable(d gd.Driver, id string) bool {
	root, err := d.Get(id, "")
	if err != nil {
		return false
	}
	b, err := os.ReadFile(root + "/data")
	return d.Put(id) == nil && err == nil && string(b) == "precious"
}

func (w *walk) makeTemplate(t *testing.T, name string) string {
	home := filepath.Join(w.dir, name)
	gdtest.Must(t, os.Mkdir(home, 0o700))
	d, err := gd.Init(home, gdtest.CrashOptions(), gd.IdentityMapping{})
	gdtest.Must(t, err)
	defer d.Cleanup()
	gdtest.MustCreate(t, d, "keep", "")
	root := gdtest.Get(t, d, "keep")
	gdtest.WriteFile(t, root+"/data", "precious", 0o644)
	gdtest.WriteFile(t, root+"/etc/config", "a=1\n", 0o600)
	gdtest.Must(t, os.Symlink("data", root+"/link"))
	w.keepTree[name] = testutil.TreeOf(t, root)
	gdtest.Put(t, d, "keep")
	if name == "victim" {
		gdtest.MustCreate(t, d, "victim", "keep")
	}
	gdtest.Must(t, d.Cleanup())
	if name == "stale" {
		staleNextID(t, home)
	}
	return home
}

// checkRun checks a home after a run: for a kill (or a failed Init) a new
// Init must recover it, after a failed step the run's own driver d goes
// on. Either way every layer from before is whole, nothing is left
// mounted, grows are finished. Then the home goes back into the
// template's state and the driver shuts down, leaving no device active,
// and the pool's metadata — read with thinmeta, the project's own reader
// (itself judged against thin_dump and thin_check) — must be sound and
// name exactly the thin ids the DevInfos name. thin_dump and thin_check
// judge each operation's home at the end of its series (checkOffline).
func (w *walk) checkRun(t *testing.T, home string, d gd.Driver, op crashOp, run int, kill bool) {
	t.Helper()
	w.runs++
	if kill {
		w.kills++
	}
	if d == nil {
		var err error
		if d, err = gd.Init(home, op.options(run), gd.IdentityMapping{}); err != nil {
			w.lost++
			t.Fatalf("Init after %s: %v", op.name, err)
		}
	}
	defer d.Cleanup()
	if op.template != "empty" {
		w.checkLayers(t, d, op)
	}
	w.checkGrown(t, d, op, run)
	if err := gdtest.CheckMountsUnder(home); err != nil {
		w.staleMounts++
		t.Error(err)
	}
	if op.template != "empty" {
		w.reset(t, d, op)
	}
	prefix := strings.TrimSuffix(gdtest.StatusRow(d, "Pool Name"), "-pool")
	if err := d.Cleanup(); err != nil {
		t.Errorf("Cleanup: %v", err)
	}
	if op.template == "stale" {
		staleNextID(t, home)
	}
	if n := gdtest.ActiveDevices(t, prefix); n > 0 {
		w.leaked += n
		t.Errorf("%d devices of the home still active after Cleanup", n)
	}
	if m, _ := filepath.Glob(filepath.Join(home, "mnt", ".grow-*")); len(m) > 0 {
		w.grows += len(m)
		t.Errorf("unfinished grow left: %v", m)
	}
	w.checkMetadata(t, home)
}

// checkMetadata reads the (offline) pool metadata with thinmeta: sound,
// and naming the DevInfos' thin ids, no more, no less.
func (w *walk) checkMetadata(t *testing.T, home string) {
	t.Helper()
	m, err := thinmeta.Open(filepath.Join(home, "devicemapper", "metadata"))
	gdtest.Must(t, err)
	defer m.Close()
	if problems := m.Check(); len(problems) > 0 {
		t.Errorf("pool metadata: %v", problems)
	} else {
		w.sound++
	}
	devs, err := m.Devices()
	gdtest.Must(t, err)
	pool := make([]int, 0, len(devs))
	for _, dev := range devs {
		pool = append(pool, int(dev.ID))
	}
	sort.Ints(pool)
	if ours := gdtest.DevInfoIDs(t, home); !reflect.DeepEqual(ours, pool) {
		w.leaked += len(gdtest.SymmetricDiff(ours, pool))
		t.Errorf("pool holds thin ids %v, DevInfo files name %v", pool, ours)
	} else {
		w.matched++
	}
}

// checkOffline runs thin_check on the home's pool metadata (the pool is
// down), and compares thin_dump's thin ids with the DevInfos: the walk's
// independent judges, once per operation (and once per home for Init).
func (w *walk) checkOffline(t *testing.T, home string) {
	t.Helper()
	w.thinChecks++
	w.dumps++
	pool, ok := gdtest.PoolOffline(t, filepath.Join(home, "devicemapper", "metadata"), true)
	if ok {
		w.thinClean++
	}
	if ours := gdtest.DevInfoIDs(t, home); !reflect.DeepEqual(ours, pool) {
		w.leaked += len(gdtest.SymmetricDiff(ours, pool))
		t.Errorf("thin_dump finds thin ids %v, DevInfo files name %v", pool, ours)
	} else {
		w.dumpsMatched++
	}
}

// checkLayers: keep is as it was; victim, if there, is whole (or marked
// deleted, for a remove), and is there unless the op may remove it.
func (w *walk) checkLayers(t *testing.T, d gd.Driver, op crashOp) {
	t.Helper()
	if diff := testutil.DiffTrees(w.keepTree[op.template], treeOfLayer(t, d, "keep")); len(diff) > 0 {
		w.lost++
		t.Errorf("layer keep changed: %v", diff)
	}
	had := op.template == "victim"
	if !d.Exists("victim") {
		if had && !op.removes {
			w.lost++
			t.Error("victim lost")
		}
		return
	}
	root, err := d.Get("victim", "")
	if op.removes && (errors.Is(err, deviceset.ErrDeleted) || errors.Is(err, deviceset.ErrNotFound)) {
		return // marked deleted, or deleted by the worker since
	}
	if err != nil {
		w.lost++
		t.Errorf("victim exists but cannot be mounted: %v", err)
		return
	}
	if b, err := os.ReadFile(root + "/data"); err != nil || string(b) != "precious" {
		w.lost++
		t.Errorf("victim reads %q, %v", b, err)
	}
	gdtest.Put(t, d, "victim")
}

func treeOfLayer(t *testing.T, d gd.Driver, id string) map[string]string {
	tree, err := gdtest.TreeOfLayer(t, d, id)
	if err != nil {
		t.Error(err) // the walk goes on: a lost layer is counted
	}
	return tree
}

// checkGrown: a grow the op asked for is complete, however it stopped.
func (w *walk) checkGrown(t *testing.T, d gd.Driver, op crashOp, run int) {
	t.Helper()
	want := op.grownTo(run)
	if want == 0 {
		return
	}
	id := "victim"
	if op.initOp { // basesize: a new layer of the base shows the base's size
		id = "probe"
		gdtest.MustCreate(t, d, id, "")
	} else if !d.Exists(id) {
		return
	}
	root := gdtest.Get(t, d, id)
	size := testutil.FSSize(t, root)
	gdtest.Put(t, d, id)
	if op.initOp {
		gdtest.Must(t, d.Remove(id))
	}
	if size < want*9/10 {
		w.grows++
		t.Errorf("%s's filesystem is %d bytes, want about %d: its grow was not finished", id, size, want)
	}
}

// staleNextID rewinds the home's next_device_id so the next id tried is
// the base device's.
func staleNextID(t *testing.T, home string) {
	p := filepath.Join(home, "metadata", "deviceset-metadata")
	b, err := os.ReadFile(p)
	gdtest.Must(t, err)
	var m map[string]any
	gdtest.Must(t, json.Unmarshal(b, &m))
	m["next_device_id"] = 0
	b, err = json.Marshal(m)
	gdtest.Must(t, err)
	gdtest.Must(t, os.WriteFile(p, b, 0o600))
}
