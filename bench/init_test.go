//go:build linux && cgo

package bench_test

import (
	"bufio"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/thinlayer/thinlayer/compat/mobyhome"
	dm "github.com/thinlayer/thinlayer/devmapper"
)

// bigHome is the home the Init scenarios open, built once per process and
// grown as they ask for more layers. Both drivers open the same home (each
// reads the other's). Making 10 000 layers through a driver would take
// minutes in UML (about 25 syscalls a layer, and a syscall costs a
// millisecond there on a busy host), so the layers are made the way a
// driver leaves them, with less work: one create_snap message and one
// DevInfo file each, with thinlayer's driver holding the home and its pool.
type bigHome struct {
	dir    string
	layers int
	nextID int // thin ids are taken from next_device_id up
}

// imageDepth is how many layers deep the big home's images go.
const imageDepth = 10

func bigLayer(i int) string { return fmt.Sprintf("layer-%05d", i) }

// devInfo is a layer's metadata/<id> file, as both drivers write it.
type devInfo struct {
	DeviceID      int    `json:"device_id"`
	Size          uint64 `json:"size"`
	TransactionID uint64 `json:"transaction_id"`
	Initialized   bool   `json:"initialized"`
	Deleted       bool   `json:"deleted"`
}

// bigHome returns the big home grown to n layers: images of imageDepth
// layers each, every one a snapshot of the one below, the bottom one a
// snapshot of the base device.
func (e *env) bigHome(b *testing.B, n int) string {
	b.Helper()
	if e.big == nil {
		e.big = &bigHome{dir: filepath.Join(e.dir, "big")}
	}
	h := e.big
	if h.layers < n {
		start := time.Now()
		must(b, "grow big home", h.grow(n))
		b.Logf("big home grown to %d layers in %v", n, time.Since(start).Round(time.Millisecond))
	}
	return h.dir
}

func (h *bigHome) grow(n int) (err error) {
	d, err := mobyhome.OpenThinlayer(h.dir, nil)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, d.Cleanup(), h.saveNextID()) }()
	ctl, err := dm.OpenWith(dm.Options{Udev: dm.UdevOff})
	if err != nil {
		return err
	}
	defer ctl.Close()
	pool := statusRow(driver{Driver: d}, "Pool Name")
	st, err := ctl.PoolStatus(pool, false)
	if err != nil {
		return err
	}
	var base devInfo
	if err := readJSON(filepath.Join(h.dir, "metadata", "base"), &base); err != nil {
		return err
	}
	if h.nextID == 0 {
		var set struct {
			NextDeviceID int `json:"next_device_id"`
		}
		if err := readJSON(filepath.Join(h.dir, "metadata", "deviceset-metadata"), &set); err != nil {
			return err
		}
		h.nextID = max(set.NextDeviceID, base.DeviceID)
	}
	origin := h.nextID // the layer below, unless a new image starts
	for ; h.layers < n; h.layers++ {
		if h.layers%imageDepth == 0 {
			origin = base.DeviceID
		}
		h.nextID++
		if err := ctl.CreateSnap(pool, dm.ThinID(h.nextID), dm.ThinID(origin)); err != nil {
			return err
		}
		info := devInfo{DeviceID: h.nextID, Size: base.Size, TransactionID: st.TransactionID}
		if err := writeJSON(filepath.Join(h.dir, "metadata", bigLayer(h.layers)), info); err != nil {
			return err
		}
		origin = h.nextID
	}
	return nil
}

// saveNextID records the thin ids taken in deviceset-metadata, which the
// driver rewrote from what it knew at its Cleanup.
func (h *bigHome) saveNextID() error {
	p := filepath.Join(h.dir, "metadata", "deviceset-metadata")
	m := map[string]any{}
	if err := readJSON(p, &m); err != nil {
		return err
	}
	m["next_device_id"] = h.nextID
	return writeJSON(p, m)
}

func readJSON(path string, v any) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, v)
}

func writeJSON(path string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return os.WriteFile(path, b, 0o600)
}

func (h *bigHome) close(b *testing.B) {
	if left, err := mobyhome.Leftovers(h.dir); err != nil || len(left) > 0 {
		b.Errorf("big home: left behind: %v %v", left, err)
	}
}

var peerInitMax = flag.Int("peer-init-max", 0, "largest home (in layers) to Init with the peer; 0: all")

// benchInit opens a home of n layers (Init is timed; Cleanup is not) and
// reports what the open driver holds: Go heap and resident set growth
// (heap-B, rss-B). A driver may put work off from Init to first use, so it
// also reports the first Get+Put of a layer after Init (getput1-ns, with
// the two stats of its check) and the heap after it (heap-get-B).
func benchInit(n int) func(b *testing.B, e *env, name string) {
	return func(b *testing.B, e *env, name string) {
		if name == peer && *peerInitMax > 0 && n > *peerInitMax {
			b.Skipf("-peer-init-max=%d: Moby's Init reads every layer's file (its time grows linearly, see the smaller homes)", *peerInitMax)
		}
		home := e.bigHome(b, n)
		open := openers[name]
		var m initMetrics
		b.ResetTimer()
		for range b.N {
			b.StopTimer()
			h0, r0 := memNow()
			b.StartTimer()
			d, err := open(home)
			b.StopTimer()
			must(b, "init", err)
			h1, r1 := memNow()
			if !d.Exists(bigLayer(n-1)) || !d.Exists(bigLayer(0)) {
				b.Fatalf("%s: layers of the big home missing after Init", name)
			}
			dr := &driver{Driver: d, name: name}
			start := time.Now()
			checkGetPut(b, dr, bigLayer(n-1))
			getPut := time.Since(start)
			h2, _ := memNow()
			m.add(h1-h0, r1-r0, h2-h0, getPut)
			m.addFirsts(b, e, dr, n)
			must(b, "cleanup", d.Cleanup())
			b.StartTimer()
		}
		b.StopTimer()
		m.report(b)
	}
}

// initMetrics keeps the largest of each Init measurement.
type initMetrics struct {
	heap, rss, heapGet                  int64
	getPut, floorGetPut, create, remove time.Duration
}

// addFirsts times, after the first Get+Put, what else a driver may put off
// to first use: the first Create (a snapshot of the newest layer) and the
// first Remove after Init; and for thinlayer the floor's first Get+Put of
// another layer never active since Init (raw ioctls and mount: what the
// kernel's cold pool metadata costs at this size, which no driver avoids).
func (m *initMetrics) addFirsts(b *testing.B, e *env, d *driver, n int) {
	b.Helper()
	id := e.id("first")
	start := time.Now()
	must(b, "first create", d.Create(id, bigLayer(n-1), nil))
	created := time.Since(start)
	start = time.Now()
	must(b, "first remove", d.Remove(id))
	m.create, m.remove = max(m.create, created), max(m.remove, time.Since(start))
	if d.name != thinlayer {
		return
	}
	ctl, err := dm.OpenWith(dm.Options{Udev: dm.UdevOff})
	must(b, "open control", err)
	defer ctl.Close()
	pool, err := ctl.Info(statusRow(*d, "Pool Name"))
	must(b, "pool info", err)
	f := &floor{ctl: ctl, pool: fmt.Sprintf("%d:%d", pool.Major, pool.Minor), mnt: filepath.Join(e.dir, "init-floor-mnt"),
		fsType: statusRow(*d, "Backing Filesystem"), seq: 1 << 20}
	must(b, "mkdir", os.MkdirAll(f.mnt, 0o755))
	thinID, size := thinOf(b, d, bigLayer(n-2))
	start = time.Now()
	must(b, "floor first get+put", f.getPut(thinID, size))
	m.floorGetPut = max(m.floorGetPut, time.Since(start))
}

func (m *initMetrics) add(heap, rss, heapGet int64, getPut time.Duration) {
	m.heap, m.rss, m.heapGet, m.getPut = max(m.heap, heap), max(m.rss, rss), max(m.heapGet, heapGet), max(m.getPut, getPut)
}

func (m *initMetrics) report(b *testing.B) {
	b.ReportMetric(float64(m.heap), "heap-B")
	b.ReportMetric(float64(m.rss), "rss-B")
	b.ReportMetric(float64(m.getPut.Nanoseconds()), "getput1-ns")
	b.ReportMetric(float64(m.heapGet), "heap-get-B")
	b.ReportMetric(float64(m.create.Nanoseconds()), "create1-ns")
	b.ReportMetric(float64(m.remove.Nanoseconds()), "remove1-ns")
	if m.floorGetPut > 0 {
		b.ReportMetric(float64(m.floorGetPut.Nanoseconds()), "floor-getput1-ns")
	}
}

// memNow is the live Go heap and the resident set size, after a GC that
// returns what it can to the system.
func memNow() (heap, rss int64) {
	runtime.GC()
	debug.FreeOSMemory()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return int64(ms.HeapAlloc), vmRSS()
}

func vmRSS() int64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if v, ok := strings.CutPrefix(s.Text(), "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10
		}
	}
	return 0
}

// benchRemove100 removes 100 snapshots of an image layer (made untimed).
func benchRemove100(b *testing.B, e *env, name string) {
	d := e.driver(b, name)
	e.fixture(b, d, fxImage)
	ids := make([]string, 100)
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		for i := range ids {
			ids[i] = e.id("rm")
			must(b, "create", d.Create(ids[i], "img", nil))
		}
		b.StartTimer()
		removeAll(b, d, ids)
		b.StopTimer()
		for _, id := range ids {
			if d.Exists(id) {
				b.Fatalf("%s: removed layer %s still exists", name, id)
			}
		}
		b.StartTimer()
	}
}
