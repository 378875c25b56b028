package powercut

import (
	"errors"
	"fmt"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"

	"github.com/thinlayer/thinlayer/deviceset"
	gd "github.com/thinlayer/thinlayer/graphdriver"
	"github.com/thinlayer/thinlayer/graphdriver/internal/gdtest"
	"github.com/thinlayer/thinlayer/thinmeta"
)

// layer is a layer as the driver shows it: absent, or its tree.
type layer struct {
	present bool
	tree    map[string]string
	err     string // Get failed
}

type layers map[string]layer

func (a layer) same(b layer) bool {
	return a.present == b.present && a.err == b.err && reflect.DeepEqual(a.tree, b.tree)
}

func (a layer) String() string {
	switch {
	case !a.present:
		return "absent"
	case a.err != "":
		return "unopenable: " + a.err
	}
	return fmt.Sprintf("%d entries", len(a.tree))
}

// snapshot reads every layer of the walk through d.
func snapshot(t *testing.T, d gd.Driver) layers {
	t.Helper()
	out := layers{}
	for _, id := range layerIDs {
		out[id] = readLayer(t, d, id)
	}
	return out
}

func readLayer(t *testing.T, d gd.Driver, id string) layer {
	if !d.Exists(id) {
		return layer{}
	}
	root, err := d.Get(id, "")
	if errors.Is(err, deviceset.ErrDeleted) {
		return layer{} // marked deleted: the worker deletes it
	}
	if err != nil {
		return layer{present: true, err: err.Error()}
	}
	defer gdtest.Put(t, d, id)
	return layer{present: true, tree: gdtest.TreeOf(t, root)}
}

// walk tallies the replay points.
type walk struct {
	points, flushes    int
	lost, inconsistent int
	thinClean          int
}

// check opens the home replayed into dir and judges it: returned says the
// operation had returned at this point.
func (w *walk) check(t *testing.T, dir string, rec record, returned bool) {
	w.points++
	var lost, bad []string
	defer func() {
		if len(lost) > 0 {
			w.lost++
			t.Errorf("lost: %s", strings.Join(lost, "; "))
		}
		if len(bad) > 0 {
			w.inconsistent++
			t.Errorf("inconsistent: %s", strings.Join(bad, "; "))
		}
	}()
	mnt := mounted(t, dir)
	if rec.snap {
		lost, bad = w.checkSnap(t, filepath.Join(mnt, "snap"), rec, returned)
		return
	}
	home := filepath.Join(mnt, "home")
	d, err := gd.Init(home, rec.opts, gd.IdentityMapping{})
	if err != nil {
		bad = append(bad, fmt.Sprintf("Init: %v", err))
		return
	}
	prefix := strings.TrimSuffix(gdtest.StatusRow(d, "Pool Name"), "-pool")
	for _, id := range layerIDs {
		lost, bad = judgeLayer(id, readLayer(t, d, id), rec, returned, lost, bad)
	}
	if rec.op.init {
		bad = append(bad, probe(t, d, rec.op.baseSize)...)
	}
	if err := d.Cleanup(); err != nil {
		bad = append(bad, fmt.Sprintf("Cleanup: %v", err))
	}
	if n := gdtest.ActiveDevices(t, prefix); n > 0 {
		bad = append(bad, fmt.Sprintf("%d devices left active", n))
	}
	if err := gdtest.CheckMountsUnder(home); err != nil {
		bad = append(bad, err.Error())
	}
	bad = append(bad, w.checkPool(t, home)...)
}

// probe makes a layer on the base and removes it: Init left a home that
// works, with a base of baseSize bytes (if set) finished growing.
func probe(t *testing.T, d gd.Driver, baseSize uint64) []string {
	if err := d.Create("probe", "", nil); err != nil {
		return []string{fmt.Sprintf("Create after Init: %v", err)}
	}
	var bad []string
	if baseSize > 0 {
		root, err := d.Get("probe", "")
		if err != nil {
			return []string{fmt.Sprintf("Get after Init: %v", err)}
		}
		if size := gdtest.FSSize(t, root); size < baseSize*9/10 {
			bad = append(bad, fmt.Sprintf("a new layer's filesystem is %d bytes, the base should be %d", size, baseSize))
		}
		gdtest.Put(t, d, "probe")
	}
	if err := d.Remove("probe"); err != nil {
		bad = append(bad, fmt.Sprintf("Remove after Init: %v", err))
	}
	return bad
}

// judgeLayer: a layer the operation does not touch is as before; the
// one it changes is as before or as after, and as after once it returned.
func judgeLayer(id string, got layer, rec record, returned bool, lost, bad []string) ([]string, []string) {
	before, after := rec.before[id], rec.after[id]
	switch {
	case got.same(after) && (returned || !before.same(after) || got.same(before)):
		return lost, bad
	case !returned && got.same(before):
		return lost, bad
	}
	msg := fmt.Sprintf("%s is %v (before %v, after %v)", id, got, before, after)
	if got.present && after.present && got.err == "" {
		msg += fmt.Sprintf(": %v", gdtest.DiffTrees(after.tree, got.tree))
	}
	// A layer an earlier operation left, or this one's once it returned.
	if (before.present && before.same(after)) || (returned && after.present) {
		return append(lost, msg), bad
	}
	return lost, append(bad, msg)
}

// checkPool reads the pool's metadata (the pool down): sound by thinmeta
// and by thin_check, and naming exactly the DevInfos' thin ids.
func (w *walk) checkPool(t *testing.T, home string) []string {
	var bad []string
	file := filepath.Join(home, "devicemapper", "metadata")
	m, err := thinmeta.Open(file)
	if err != nil {
		return []string{fmt.Sprintf("thinmeta: %v", err)}
	}
	defer m.Close()
	if problems := m.Check(); len(problems) > 0 {
		bad = append(bad, fmt.Sprintf("thinmeta: %v", problems))
	}
	devs, err := m.Devices()
	if err != nil {
		return append(bad, fmt.Sprintf("thinmeta devices: %v", err))
	}
	var pool []int
	for _, dev := range devs {
		pool = append(pool, int(dev.ID))
	}
	sort.Ints(pool)
	if ours := gdtest.DevInfoIDs(t, home); !reflect.DeepEqual(ours, pool) {
		bad = append(bad, fmt.Sprintf("pool holds thin ids %v, DevInfo files name %v", pool, ours))
	}
	if _, ok := gdtest.PoolOffline(t, file, true); ok {
		w.thinClean++
	} else {
		bad = append(bad, "thin_check")
	}
	return bad
}
