//go:build linux && cgo

package bench_test

import (
	"os"
	"path/filepath"
	"testing"
)

// scenario is one row of the table. run gets b.N iterations of the work on
// one driver; floor, if set, is the same work done with raw ioctls (and the
// least file syscalls); tar, if set, is the file work done by GNU tar; only,
// if set, is the one driver the scenario runs on (the snapshotter's
// scenarios: thinlayer, no peer).
type scenario struct {
	name  string
	run   func(b *testing.B, e *env, name string)
	floor func(b *testing.B, e *env)
	tar   func(b *testing.B, e *env)
	only  string
}

// Scenarios, in table order. quick ones take milliseconds an iteration and
// run with many iterations; slow ones take seconds (see scripts/bench.sh).
var scenarios = []scenario{
	{name: "Exists", run: benchExists},
	{name: "GetPutWarm", run: benchGetPutWarm, floor: benchFloorWarm},
	{name: "GetPutCold", run: benchGetPutCold, floor: benchFloorCold},
	{name: "CreateRemove", run: benchCreateRemove},
	{name: "SnapPrepareCommit", run: benchSnapPrepareCommit, only: thinlayer},
	{name: "SnapRemove", run: benchSnapRemove, only: thinlayer},
	{name: "Lifecycle", run: benchLifecycle},
	{name: "ApplyDiff100", run: benchApplyDiff100, floor: benchFloorApplyDiff100, tar: benchTarApplyDiff100},
	{name: "DiffBase", run: benchDiffBase, floor: benchFloorDiffBase, tar: benchTarDiffBase},
	{name: "Changes", run: benchChanges},
	{name: "DiffSize", run: benchDiffSize},
	{name: "ReadChain20", run: benchReadChain},
	{name: "ApplyDiff64M", run: benchApplyDiff64M},
	{name: "Remove100", run: benchRemove100},
	{name: "Init500", run: benchInit(500)},
	{name: "Init5000", run: benchInit(5000)},
	{name: "Init10000", run: benchInit(10000)},
	{name: "Concurrent1", run: benchConcurrent(1)},
	{name: "Concurrent8", run: benchConcurrent(8)},
	{name: "Concurrent32", run: benchConcurrent(32)},
	{name: "Pull8", run: benchPull8},
}

// existsBatch calls of Exists make one timed iteration: one call takes
// about a microsecond, too little to time on its own.
const existsBatch = 100000

func benchExists(b *testing.B, e *env, name string) {
	d := e.driver(b, name)
	e.fixture(b, d, fxImage)
	if d.Exists("no-such-layer") {
		b.Fatalf("%s: Exists of a missing layer", d.name)
	}
	b.ResetTimer()
	for range b.N {
		for range existsBatch {
			if !d.Exists("img") {
				b.Fatalf("%s: layer img does not exist", d.name)
			}
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*existsBatch), "ns/op")
}

// benchGetPutWarm gets and puts the same layer over and over: a driver
// may keep what it learnt (or activated) the time before.
func benchGetPutWarm(b *testing.B, e *env, name string) {
	d := e.driver(b, name)
	e.fixture(b, d, fxEmpty)
	checkGetPut(b, d, "empty")
	b.ResetTimer()
	for range b.N {
		if _, err := d.Get("empty", ""); err != nil {
			b.Fatal(err)
		}
		if err := d.Put("empty"); err != nil {
			b.Fatal(err)
		}
	}
}

// benchGetPutCold gets and puts layers whose devices were never active:
// fresh snapshots of a layer that has been mounted before, so that its
// rootfs/ and id file exist as they would for any image layer.
func benchGetPutCold(b *testing.B, e *env, name string) {
	d := e.driver(b, name)
	e.fixture(b, d, fxEmpty)
	ids := make([]string, b.N)
	for i := range ids {
		ids[i] = e.id("cold")
		must(b, "create", d.Create(ids[i], "empty", nil))
	}
	for _, id := range ids {
		if deviceActive(b, d, id) {
			b.Fatalf("%s: device of fresh layer %s is active: not a cold Get", d.name, id)
		}
	}
	b.ResetTimer()
	for _, id := range ids {
		if _, err := d.Get(id, ""); err != nil {
			b.Fatal(err)
		}
		if err := d.Put(id); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	removeAll(b, d, ids)
}

// benchCreateRemove snapshots an image layer and removes the snapshot.
func benchCreateRemove(b *testing.B, e *env, name string) {
	d := e.driver(b, name)
	e.fixture(b, d, fxImage)
	b.ResetTimer()
	for i := range b.N {
		id := e.id("snap")
		must(b, "create", d.Create(id, "img", nil))
		if i == 0 && !d.Exists(id) {
			b.Fatalf("%s: created layer %s does not exist", d.name, id)
		}
		must(b, "remove", d.Remove(id))
		if i == 0 && d.Exists(id) {
			b.Fatalf("%s: removed layer %s still exists", d.name, id)
		}
	}
}

// benchLifecycle is a container's storage life: a read-write layer on an
// image, mounted, a file written, unmounted, removed.
func benchLifecycle(b *testing.B, e *env, name string) {
	d := e.driver(b, name)
	e.fixture(b, d, fxImage)
	want := []byte("container\n")
	b.ResetTimer()
	for i := range b.N {
		id := e.id("ctr")
		must(b, "create", d.CreateReadWrite(id, "img", nil))
		root, err := d.Get(id, "")
		must(b, "get", err)
		must(b, "write", os.WriteFile(filepath.Join(root, "etc", "hostname"), want, 0o644))
		if i == 0 {
			if got, err := os.ReadFile(filepath.Join(root, "etc", "d00", "f0000")); err != nil || len(got) != 512 {
				b.Fatalf("%s: image file not visible in container layer: %v", d.name, err)
			}
		}
		must(b, "put", d.Put(id))
		must(b, "remove", d.Remove(id))
	}
}
