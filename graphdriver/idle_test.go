package graphdriver_test

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"testing"

	"github.com/thinlayer/thinlayer/deviceset"
	dm "github.com/thinlayer/thinlayer/devmapper"
	gd "github.com/thinlayer/thinlayer/graphdriver"
	"github.com/thinlayer/thinlayer/graphdriver/internal/gdtest"
)

// Put leaves a layer's device active for the next Get (the same device,
// not a new one), a snapshot of such an idle origin sees all of its data,
// the set stays bounded, Remove of an idle layer takes its device and thin
// id, and Cleanup leaves nothing active.
func TestIdleDevices(t *testing.T) {
	d := newDriver(t, t.TempDir(), testOptions("ext4", "dm.blkdiscard=true"))
	mustCreate(t, d, "a", "")
	writeFile(t, get(t, d, "a")+"/f", "idle data", 0o644, 0, 0)
	put(t, d, "a")
	first := idleInfo(t, d, "a")
	if idleCount(t, d) != 1 {
		t.Fatalf("Idle Active Device Count = %d after one Put, want 1", idleCount(t, d))
	}
	if got := readFileString(t, get(t, d, "a")+"/f"); got != "idle data" {
		t.Fatalf("a reads %q through its idle device", got)
	}
	put(t, d, "a")
	if again := idleInfo(t, d, "a"); again.Minor != first.Minor {
		t.Fatalf("second Get made a new device (minor %d, was %d)", again.Minor, first.Minor)
	}

	// A snapshot of an idle origin: the origin is taken down, not suspended.
	mustCreate(t, d, "b", "a")
	if _, err := deviceInfo(t, d, "a"); !errors.Is(err, dm.ErrNotFound) {
		t.Fatalf("idle origin still active after a snapshot of it: %v", err)
	}
	if got := readFileString(t, get(t, d, "b")+"/f"); got != "idle data" {
		t.Fatalf("snapshot of an idle origin reads %q", got)
	}
	put(t, d, "b")

	// Bounded: the oldest go first.
	var many []string
	for i := range deviceset.DefaultIdleDevices + 3 {
		id := fmt.Sprintf("l%02d", i)
		many = append(many, id)
		mustCreate(t, d, id, "b")
		get(t, d, id)
		put(t, d, id)
	}
	if n := idleCount(t, d); n != deviceset.DefaultIdleDevices {
		t.Fatalf("%d idle devices, want the bound %d", n, deviceset.DefaultIdleDevices)
	}
	for i, id := range many {
		_, err := deviceInfo(t, d, id)
		if active := err == nil; active != (i >= 3) {
			t.Errorf("layer %s (put %d of %d): active=%v (err %v)", id, i+1, len(many), active, err)
		}
	}

	// Remove of an idle layer: discarded through its device, then gone.
	last := many[len(many)-1]
	id := thinIDOf(t, d, last)
	must(t, d.Remove(last))
	if slices.Contains(gdtest.PoolThinIDs(t, d), id) {
		t.Fatalf("thin id %d of removed idle layer %s still in the pool", id, last)
	}
	if n := idleCount(t, d); n != deviceset.DefaultIdleDevices-1 {
		t.Fatalf("%d idle devices after removing one, want %d", n, deviceset.DefaultIdleDevices-1)
	}
	prefix := poolPrefix(d)
	must(t, d.Cleanup())
	if n := gdtest.ActiveDevices(t, prefix); n != 0 {
		t.Fatalf("%d devices of the home active after Cleanup", n)
	}
}

func idleInfo(t *testing.T, d gd.Driver, id string) dm.Info {
	t.Helper()
	info, err := deviceInfo(t, d, id)
	if err != nil {
		t.Fatalf("device of %s not kept active after Put: %v", id, err)
	}
	if info.OpenCount != 0 || info.DeferredRemove {
		t.Fatalf("idle device of %s: %+v, want closed and no removal pending", id, info)
	}
	return info
}

func idleCount(t *testing.T, d gd.Driver) int {
	t.Helper()
	n, err := strconv.Atoi(statusRow(d, "Idle Active Device Count"))
	must(t, err)
	return n
}

func poolPrefix(d gd.Driver) string {
	p := statusRow(d, "Pool Name")
	return p[:len(p)-len("-pool")]
}
