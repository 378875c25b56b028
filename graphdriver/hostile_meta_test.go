package graphdriver_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/thinlayer/thinlayer/deviceset"
	dm "github.com/thinlayer/thinlayer/devmapper"
	gd "github.com/thinlayer/thinlayer/graphdriver"
	"github.com/thinlayer/thinlayer/graphdriver/internal/gdtest"
)

// Broken metadata files in a home. A damaged DevInfo costs that one layer —
// a clear error naming the file when it is used — never the home: Init and
// every other layer go on (where Moby's driver refuses the whole home). A
// transaction record that does not match the home changes nothing. A base
// device that is missing from the pool, or is another pool's, stops Init.

type metaHome struct {
	home    string
	poolTx  uint64 // the pool's transaction id
	keepID  int
	outside *outside
}

// metaCase breaks a copy of the home, then checks it.
type metaCase struct {
	name    string
	breakIt func(t *testing.T, h *metaHome)
	initErr string // Init must fail, with this in its error; "" = must work
	check   func(t *testing.T, h *metaHome, d gd.Driver)
}

func metaFile(h *metaHome, name string) string { return filepath.Join(h.home, "metadata", name) }

func writeMeta(t *testing.T, h *metaHome, name, content string) {
	must(t, os.WriteFile(metaFile(h, name), []byte(content), 0o600))
}

func editMeta(t *testing.T, h *metaHome, name string, edit func(m map[string]any)) {
	b, err := os.ReadFile(metaFile(h, name))
	must(t, err)
	var m map[string]any
	must(t, json.Unmarshal(b, &m))
	edit(m)
	b, err = json.Marshal(m)
	must(t, err)
	writeMeta(t, h, name, string(b))
}

// costsOneLayer: "other" is unusable with an error naming its file and the
// problem; "keep" and new layers work; other's thin device is not deleted.
func costsOneLayer(problem string) func(t *testing.T, h *metaHome, d gd.Driver) {
	return func(t *testing.T, h *metaHome, d gd.Driver) {
		_, err := d.Get("other", "")
		if !errors.Is(err, deviceset.ErrCorruptMetadata) || !strings.Contains(err.Error(), metaFile(h, "other")) ||
			!strings.Contains(err.Error(), problem) {
			t.Errorf("Get of the broken layer: %v, want ErrCorruptMetadata naming %s and %q", err, metaFile(h, "other"), problem)
		}
		if err := d.Remove("other"); !errors.Is(err, deviceset.ErrCorruptMetadata) {
			t.Errorf("Remove of the broken layer: %v", err)
		}
		keepWhole(t, h, d)
	}
}

func keepWhole(t *testing.T, h *metaHome, d gd.Driver) {
	t.Helper()
	if b, err := os.ReadFile(get(t, d, "keep") + "/data"); err != nil || string(b) != "precious" {
		t.Errorf("keep: %q %v", b, err)
	}
	put(t, d, "keep")
	if err := d.Create("new", "keep", nil); err != nil {
		t.Errorf("Create after the damage: %v", err)
	}
	if ids := gdtest.PoolThinIDs(t, d); !slices.Contains(ids, h.keepID) {
		t.Errorf("keep's thin id %d gone from the pool %v", h.keepID, ids)
	}
}

func metaCases() []metaCase {
	return []metaCase{
		{name: "devinfo-truncated", breakIt: func(t *testing.T, h *metaHome) {
			b, _ := os.ReadFile(metaFile(h, "other"))
			writeMeta(t, h, "other", string(b[:len(b)/2]))
		}, check: costsOneLayer("unexpected end of JSON")},
		{name: "devinfo-not-json", breakIt: func(t *testing.T, h *metaHome) { writeMeta(t, h, "other", "not json at all") },
			check: costsOneLayer("invalid character")},
		{name: "devinfo-wrong-types", breakIt: func(t *testing.T, h *metaHome) {
			writeMeta(t, h, "other", `{"device_id":"7","size":"big","transaction_id":-1}`)
		}, check: costsOneLayer("cannot unmarshal")},
		{name: "devinfo-id-out-of-range", breakIt: func(t *testing.T, h *metaHome) {
			editMeta(t, h, "other", func(m map[string]any) { m["device_id"] = 1 << 25 })
		}, check: costsOneLayer("out of range")},
		{name: "devinfo-zero-size", breakIt: func(t *testing.T, h *metaHome) {
			editMeta(t, h, "other", func(m map[string]any) { m["size"] = 0 })
		}, check: costsOneLayer("size 0 out of range")},
		{name: "devinfo-huge", breakIt: func(t *testing.T, h *metaHome) {
			writeMeta(t, h, "other", strings.Repeat(" ", 1<<20)+"{}")
		}, check: costsOneLayer("larger than")},
		{name: "devinfo-symlink-outside", breakIt: func(t *testing.T, h *metaHome) {
			must(t, os.Remove(metaFile(h, "other")))
			must(t, os.Symlink(filepath.Join(h.outside.dir, "sentinel"), metaFile(h, "other")))
		}, check: costsOneLayer("not a regular file")},
		{name: "devinfo-fifo", breakIt: func(t *testing.T, h *metaHome) {
			must(t, os.Remove(metaFile(h, "other")))
			must(t, unix.Mkfifo(metaFile(h, "other"), 0o600))
		}, check: costsOneLayer("not a regular file")},
		{name: "devinfo-shared-id", breakIt: func(t *testing.T, h *metaHome) {
			editMeta(t, h, "other", func(m map[string]any) { m["device_id"] = h.keepID })
		}, check: sharedID},
		{name: "tx-names-missing-device", breakIt: func(t *testing.T, h *metaHome) {
			writeMeta(t, h, "transaction-metadata", fmt.Sprintf(`{"open_transaction_id":%d,"device_hash":"keep","device_id":4242}`, h.poolTx+1))
		}, check: func(t *testing.T, h *metaHome, d gd.Driver) { keepWhole(t, h, d) }},
		{name: "tx-hostile-hash", breakIt: func(t *testing.T, h *metaHome) {
			writeMeta(t, h, "transaction-metadata", fmt.Sprintf(`{"open_transaction_id":%d,"device_hash":"../../%s/sentinel","device_id":%d}`,
				h.poolTx+1, filepath.Base(h.outside.dir), h.keepID))
		}, check: func(t *testing.T, h *metaHome, d gd.Driver) { keepWhole(t, h, d) }},
		{name: "tx-far-future", breakIt: func(t *testing.T, h *metaHome) {
			writeMeta(t, h, "transaction-metadata", fmt.Sprintf(`{"open_transaction_id":%d,"device_hash":"keep","device_id":%d}`, h.poolTx+100, h.keepID))
		}, check: func(t *testing.T, h *metaHome, d gd.Driver) { keepWhole(t, h, d) }},
		{name: "tx-fifo", breakIt: func(t *testing.T, h *metaHome) {
			_ = os.Remove(metaFile(h, "transaction-metadata"))
			must(t, unix.Mkfifo(metaFile(h, "transaction-metadata"), 0o600))
		}, check: func(t *testing.T, h *metaHome, d gd.Driver) { keepWhole(t, h, d) }},
		{name: "set-metadata-symlink", breakIt: func(t *testing.T, h *metaHome) {
			must(t, os.Remove(metaFile(h, "deviceset-metadata")))
			must(t, os.Symlink(filepath.Join(h.outside.dir, "sentinel"), metaFile(h, "deviceset-metadata")))
		}, check: func(t *testing.T, h *metaHome, d gd.Driver) { keepWhole(t, h, d) }},
		{name: "tx-not-json", breakIt: func(t *testing.T, h *metaHome) { writeMeta(t, h, "transaction-metadata", "{{{") },
			check: func(t *testing.T, h *metaHome, d gd.Driver) { keepWhole(t, h, d) }},
		{name: "set-metadata-corrupt", breakIt: func(t *testing.T, h *metaHome) { writeMeta(t, h, "deviceset-metadata", `{"next_device_id":"x"`) },
			check: func(t *testing.T, h *metaHome, d gd.Driver) { keepWhole(t, h, d) }},
		{name: "base-devinfo-corrupt", breakIt: func(t *testing.T, h *metaHome) { writeMeta(t, h, "base", "[]") },
			check: baseUnusable("cannot unmarshal")},
		{name: "base-devinfo-missing", breakIt: func(t *testing.T, h *metaHome) { must(t, os.Remove(metaFile(h, "base"))) },
			check: baseUnusable("no such layer")},
		{name: "base-missing-from-pool", breakIt: func(t *testing.T, h *metaHome) {
			editMeta(t, h, "base", func(m map[string]any) { m["device_id"] = 4242 })
		}, initErr: "base device (thin id 4242"},
		{name: "base-swapped", breakIt: func(t *testing.T, h *metaHome) {
			editMeta(t, h, "deviceset-metadata", func(m map[string]any) { m["BaseDeviceUUID"] = "00000000-1111-2222-3333-444444444444" })
		}, initErr: "does not match the recorded 00000000-1111-2222-3333-444444444444"},
	}
}

// sharedID: two DevInfos name keep's thin id. They are never both active
// (one filesystem mounted twice would be the end of it): the first to be
// mounted is (its DevInfo alone cannot tell; Get reads no other layer's),
// the second is refused, during and after the first's mount. Removing
// "other" removes only its record, and keep — its data, its thin device —
// survives.
func sharedID(t *testing.T, h *metaHome, d gd.Driver) {
	refused := func(when string) {
		t.Helper()
		if _, err := d.Get("other", ""); !errors.Is(err, deviceset.ErrCorruptMetadata) || !strings.Contains(err.Error(), `also named by layer "keep"`) {
			t.Errorf("Get(other) with its thin id named by keep too, %s: %v", when, err)
		}
	}
	dir := get(t, d, "keep")
	refused("keep mounted")
	if got := readFileString(t, dir+"/data"); got != "precious" {
		t.Errorf("keep reads %q", got)
	}
	put(t, d, "keep")
	refused("keep unmounted")
	must(t, d.Remove("other"))
	keepWhole(t, h, d)
}

func baseUnusable(problem string) func(t *testing.T, h *metaHome, d gd.Driver) {
	return func(t *testing.T, h *metaHome, d gd.Driver) {
		err := d.Create("fresh", "", nil)
		if err == nil || !strings.Contains(err.Error(), problem) || !strings.Contains(err.Error(), "parent \"\"") {
			t.Errorf("Create on a broken base: %v, want an error about the base (%q)", err, problem)
		}
		keepWhole(t, h, d)
	}
}

func TestHostileMetadata(t *testing.T) {
	template := t.TempDir()
	d := newDriver(t, template, walkOptions())
	mustCreate(t, d, "keep", "")
	writeFile(t, get(t, d, "keep")+"/data", "precious", 0o644, 0, 0)
	put(t, d, "keep")
	mustCreate(t, d, "other", "keep")
	keepID, poolTx := thinIDOf(t, d, "keep"), poolStatus(t, d).TransactionID
	must(t, d.Cleanup())
	cases := metaCases()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h := &metaHome{home: t.TempDir(), poolTx: poolTx, keepID: keepID, outside: newOutside(t)}
			must(t, gdtest.CopyTree(template, h.home))
			c.breakIt(t, h)
			d, err := gd.Init(h.home, walkOptions(), gd.IdentityMapping{})
			if c.initErr != "" {
				if err == nil || !strings.Contains(err.Error(), c.initErr) {
					t.Fatalf("Init: %v, want an error with %q", err, c.initErr)
				}
				h.outside.check(t)
				checkNoDevicesLeft(t)
				return
			}
			if err != nil {
				t.Fatalf("Init of a home with %s: %v", c.name, err)
			}
			defer d.Cleanup()
			c.check(t, h, d)
			h.outside.check(t)
		})
	}
	t.Logf("hostile metadata: %d damaged homes tried", len(cases))
}

// checkNoDevicesLeft: a failed Init leaves no device of ours behind.
func checkNoDevicesLeft(t *testing.T) {
	t.Helper()
	c, err := dm.Open()
	must(t, err)
	defer c.Close()
	devs, err := c.List()
	must(t, err)
	for _, d := range devs {
		if strings.HasPrefix(d.Name, "docker-") {
			t.Errorf("device %s left by a failed Init", d.Name)
		}
	}
}
