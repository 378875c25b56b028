package graphdriver_test

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/thinlayer/thinlayer/deviceset"
	dm "github.com/thinlayer/thinlayer/devmapper"
	gd "github.com/thinlayer/thinlayer/graphdriver"
	"github.com/thinlayer/thinlayer/testutil"
)

// Layer ids whose device-mapper name (<prefix>-<id>) is one the home owns:
// the pool's (<prefix>-pool), the base's, the names LVM gives a pool's
// parts, a user's dm.thinpooldev under the home's prefix. Before they were
// reserved, Create+Get+Put+Remove of "pool" succeeded and took the pool
// device down (the next Create: "create_snap ... no such device or
// address"). Every call must refuse them with ErrInvalidID, and the pool
// must work after.
func TestHostileDeviceNames(t *testing.T) {
	home := t.TempDir()
	d := newDriver(t, home, walkOptions())
	mustCreate(t, d, "keep", "")
	writeFile(t, get(t, d, "keep")+"/data", "precious", 0o644, 0, 0)
	put(t, d, "keep")
	// `a\x20b`: udev's /dev/mapper link of "a b" (libdevmapper mangling).
	ids := []string{"pool", "base", "pool_tdata", "pool_tmeta", "pool-tpool", `a\x20b`}
	for _, id := range ids {
		refuseEverywhere(t, d, id)
	}
	poolStillWorks(t, d)
	t.Logf("hostile device names: %d ids naming the home's own devices, each refused by every call; the pool works after", len(ids))
}

// The same for a user's pool (dm.thinpooldev) whose name lies under the
// home's prefix: a layer must not be able to take its name either.
func TestHostileDeviceNamesUserPool(t *testing.T) {
	pool := testutil.NewLoopPool(t, testutil.PoolOptions{})
	home := t.TempDir()
	prefix, err := deviceset.DevicePrefix(home)
	must(t, err)
	name := prefix + "-mine"
	must(t, pool.Control.Rename(pool.Name, name))
	pool.Name = name // the fixture's teardown removes it under this name
	d := newDriver(t, home, testOptions("ext4", "dm.thinpooldev="+name))
	for _, id := range []string{"mine", "mine_tdata", "pool", "base"} {
		refuseEverywhere(t, d, id)
	}
	poolStillWorks(t, d)
}

// A DevInfo file or a transaction record that names "pool" (planted, or
// from an older version): Init works, the layer is refused, and neither
// Get (a thin table loaded onto the pool) nor the settling of the record
// (the pool device removed) touches the pool.
func TestHostileDeviceNamesOnDisk(t *testing.T) {
	home := t.TempDir()
	d := newDriver(t, home, walkOptions())
	mustCreate(t, d, "keep", "")
	mustCreate(t, d, "other", "keep")
	keepID, poolTx := thinIDOf(t, d, "keep"), poolStatus(t, d).TransactionID
	must(t, d.Cleanup())
	b, err := os.ReadFile(filepath.Join(home, "metadata", "other"))
	must(t, err)
	var planted map[string]any
	must(t, json.Unmarshal(b, &planted))
	planted["deleted"] = true // the deferred deletion worker must leave it too
	b, err = json.Marshal(planted)
	must(t, err)
	must(t, os.WriteFile(filepath.Join(home, "metadata", "pool"), b, 0o600))
	tx, err := json.Marshal(map[string]any{"open_transaction_id": poolTx + 1, "device_hash": "pool", "device_id": keepID + 100})
	must(t, err)
	must(t, os.WriteFile(filepath.Join(home, "metadata", "transaction-metadata"), tx, 0o600))

	d = newDriver(t, home, walkOptions())
	refuseEverywhere(t, d, "pool")
	poolStillWorks(t, d)
	if _, err := os.Lstat(filepath.Join(home, "metadata", "pool")); err != nil {
		t.Errorf("the planted DevInfo was touched: %v", err)
	}
}

// refuseEverywhere: Create with id as the layer and as the parent, Get,
// Put, Remove and GetMetadata all fail with ErrInvalidID; Exists is false.
func refuseEverywhere(t *testing.T, d gd.Driver, id string) {
	t.Helper()
	if err := d.Create(id, "", nil); !errors.Is(err, gd.ErrInvalidID) {
		t.Errorf("Create(%q): %v, want ErrInvalidID", id, err)
	}
	if err := d.Create("child-of-"+id, id, nil); !errors.Is(err, gd.ErrInvalidID) {
		t.Errorf("Create(child, %q): %v, want ErrInvalidID", id, err)
	}
	checkOtherCallsRefuse(t, d, id)
}

// poolStillWorks: the pool device is there with its thin-pool table, and
// a layer can be made, written, read back and removed.
func poolStillWorks(t *testing.T, d gd.Driver) {
	t.Helper()
	c, err := dm.Open()
	must(t, err)
	defer c.Close()
	name := statusRow(d, "Pool Name")
	table, err := c.Table(name)
	if err != nil || len(table) != 1 || table[0].Type != dm.TypeThinPool {
		t.Fatalf("pool %s after the hostile names: table %v, %v", name, table, err)
	}
	mustCreate(t, d, "after", "")
	writeFile(t, get(t, d, "after")+"/f", "still works", 0o644, 0, 0)
	put(t, d, "after")
	if got := readFileString(t, get(t, d, "after")+"/f"); got != "still works" {
		t.Errorf("after: %q", got)
	}
	put(t, d, "after")
	must(t, d.Remove("after"))
}
