package adapter_test

import (
	"flag"
	"path/filepath"
	"strings"
	"testing"
	"time"

	dm "github.com/thinlayer/thinlayer/devmapper"
	"github.com/thinlayer/thinlayer/testutil"
)

// containerd with the thinlayer snapshotter (through the proxy plugin)
// against containerd's own devmapper snapshotter on a pool of its own: a
// row of docs/benchmarks.md's engine table, run by scripts/bench.sh's
// "engine" group, each udev condition in a process of its own.

var rounds = flag.Int("rounds", 1, "rounds of each scenario; snapshotters alternate within a round")

// benchHomeOptions match the devmapper peer's pool and base: a 2 GB pool,
// a 128 MB ext4 base, removal at once.
var benchHomeOptions = []string{"dm.loopdatasize=2GB", "dm.loopmetadatasize=64MB", "dm.basesize=128MB",
	"dm.fs=ext4", "dm.min_free_space=1%", "dm.use_deferred_removal=false", "dm.use_deferred_deletion=false"}

// BenchmarkNoUdev: no udevd in the test kernel.
func BenchmarkNoUdev(b *testing.B) {
	testutil.RequireKernel(b)
	if dm.UdevRunning() {
		b.Fatal("udevd runs here: the no-udev condition is measured in the test kernel")
	}
	runCtrBench(b)
}

// BenchmarkUdev: systemd-udevd runs; containerd's dmsetup and thinlayer
// both synchronise with it.
func BenchmarkUdev(b *testing.B) {
	testutil.RequireKernel(b)
	testutil.StartUdevd(b)
	runCtrBench(b)
}

// runCtrBench: CtrImportRun is `ctr images import` of the 2-layer archive
// of TestCtrWorkload and `ctr run --rm` of a container that writes to its
// rootfs; `ctr images rm --sync` and the wait for the garbage collector
// are untimed.
func runCtrBench(b *testing.B) {
	bin, ctr := requireBinaries(b)
	requireRuntime(b)
	mountCgroup2(b)
	archive := filepath.Join(b.TempDir(), "image.tar")
	writeOCIArchive(b, archive, workloadImage, testImageLayers(b))

	dir := b.TempDir()
	_, sock := serveSnapshotterWith(b, dir, benchHomeOptions)
	ws := map[string]workload{"thinlayer": {d: startContainerd(b, bin, ctr, dir, sock), snapshotter: "thinlayer"}}
	dir = b.TempDir()
	pool := testutil.NewLoopPool(b, testutil.PoolOptions{DataSize: 2 << 30, MetadataSize: 64 << 20})
	ws["devmapper"] = workload{d: startContainerdWith(b, bin, ctr, dir, devmapperConfig(dir, pool.Name)), snapshotter: "devmapper"}

	b.Run("CtrImportRun", func(b *testing.B) {
		for round := range *rounds {
			order := []string{"thinlayer", "devmapper"}
			if round%2 == 1 {
				order = []string{"devmapper", "thinlayer"}
			}
			for _, name := range order {
				b.Run("driver="+name, func(b *testing.B) { benchImportRun(b, ws[name], archive) })
			}
		}
	})
}

func benchImportRun(b *testing.B, w workload, archive string) {
	b.StopTimer()
	var imp, run time.Duration // the two commands' shares, reported apart
	for range b.N {
		start := time.Now()
		b.StartTimer()
		w.ctr(b, "images", "import", "--snapshotter", w.snapshotter, archive)
		mid := time.Now()
		out := w.ctr(b, "run", "--snapshotter", w.snapshotter, "--rm", workloadImage, "bench-"+w.snapshotter,
			"sh", "-c", "echo written > /root/w && cat /root/w /etc/version")
		b.StopTimer()
		imp, run = imp+mid.Sub(start), run+time.Since(mid)
		if got := strings.Fields(out); len(got) != 3 || got[0] != "written" || got[2] != "2" {
			b.Fatalf("%s: the container printed %q", w.snapshotter, out)
		}
		w.ctr(b, "images", "rm", "--sync", workloadImage)
		waitFor(b, "containerd to drop the image's snapshots", func() bool { return len(w.snapshotKeys(b)) == 0 })
	}
	b.ReportMetric(float64(imp.Milliseconds())/float64(b.N), "import-ms/op")
	b.ReportMetric(float64(run.Milliseconds())/float64(b.N), "run-ms/op")
}
