package graphdriver_test

import (
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/thinlayer/thinlayer/deviceset"
	gd "github.com/thinlayer/thinlayer/graphdriver"
	"github.com/thinlayer/thinlayer/graphdriver/internal/gdtest"
)

// 8 goroutines × 200 mixed operations on one driver, on shared parents,
// against the kernel (User-Mode Linux: no race detector there; the
// driver's own locking is race-tested on the host, TestDriverRace). At the
// end: no goroutine stuck, every surviving layer holds what was last
// written to it, nothing is mounted, no layer device is left active but
// the few kept idle for a quick next mount, and
// the pool's thin ids are exactly the DevInfos' — one per surviving layer.
func TestConcurrentStress(t *testing.T) {
	home := t.TempDir()
	d := newDriver(t, home, walkOptions("dm.blkdiscard=true")) // Moby's defaults: deferred removal and deletion, discard
	start := time.Now()
	r := gd.RunStress(t, d, gd.StressConfig{Workers: 8, Ops: 200, Timeout: 8 * time.Minute})
	took := time.Since(start)
	if len(r.Corrupted) > 0 {
		t.Fatalf("layers not as written: %v", r.Corrupted)
	}
	leakedMounts := 0
	if err := gdtest.CheckMountsUnder(home); err != nil {
		leakedMounts = 1
		t.Error(err)
	}
	prefix := strings.TrimSuffix(statusRow(d, "Pool Name"), "-pool")
	// The pool, and the devices kept active for a quick next mount.
	idle, _ := strconv.Atoi(statusRow(d, "Idle Active Device Count"))
	active := gdtest.ActiveDevices(t, prefix) - 1 - idle
	if active != 0 || idle > deviceset.DefaultIdleDevices {
		t.Errorf("%d layer devices active with nothing mounted beyond the %d idle ones (at most %d)", active, idle, deviceset.DefaultIdleDevices)
	}
	eventually(t, "deferred deletions done", 30*time.Second, func() bool {
		return statusRow(d, "Deferred Deleted Device Count") == "0"
	})
	ours, pool := gdtest.DevInfoIDs(t, home), gdtest.PoolThinIDs(t, d)
	if !reflect.DeepEqual(ours, pool) || len(ours) != len(r.Layers)+1 { // and the base
		t.Errorf("pool thin ids %v, DevInfo ids %v, %d layers survive", pool, ours, len(r.Layers))
	}
	t.Logf("stress: 8 goroutines × 200 ops in %v: %s; %d leaked mounts, %d leaked devices, %d stray thin ids",
		took.Round(time.Second), r, leakedMounts, active, len(gdtest.SymmetricDiff(ours, pool)))
}
