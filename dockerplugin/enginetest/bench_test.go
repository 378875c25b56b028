package enginetest

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	dm "github.com/thinlayer/thinlayer/devmapper"
	"github.com/thinlayer/thinlayer/graphdriver"
	"github.com/thinlayer/thinlayer/testutil"
)

// Docker Engine on the thinlayer plugin against Docker on its built-in
// devicemapper driver (the peer), in the same kernel and run: the rows of
// docs/benchmarks.md's engine table. scripts/bench.sh runs them (its
// "engine" group), each udev condition in a process of its own, with
// -benchtime 1x: one docker operation takes seconds in the test kernel,
// and rounds (the drivers taking turns) tame the noise.

// rounds repeats every scenario, the drivers alternating within a round.
var rounds = flag.Int("rounds", 1, "rounds of each scenario; drivers alternate within a round")

// Driver names as benchtable reads them: thinlayer, and "moby" for
// Docker's own devicemapper driver (Moby's code in dockerd 20.10).
const (
	benchThin  = "thinlayer"
	benchPeer  = "moby"
	benchFloor = "floor" // dockerd on vfs, no device-mapper
)

// layersInHome is how many layers the daemon-start scenario finds.
const layersInHome = 500

// BenchmarkNoUdev: no udevd; device nodes are the drivers' business.
func BenchmarkNoUdev(b *testing.B) {
	testutil.RequireKernel(b)
	if dm.UdevRunning() {
		b.Fatal("udevd runs here: the no-udev condition is measured in the test kernel")
	}
	runEngineBench(b)
}

// BenchmarkUdev: systemd-udevd runs, as on a real host; both drivers
// synchronise with it through cookies.
func BenchmarkUdev(b *testing.B) {
	testutil.RequireKernel(b)
	testutil.StartUdevd(b)
	runEngineBench(b)
}

// engineScenario is a row; floor: also run on dockerd with vfs on an
// empty home (what dockerd's start costs with no device-mapper at all).
type engineScenario struct {
	name  string
	run   func(b *testing.B, e *benchEngine)
	floor bool
}

var engineScenarios = []engineScenario{
	{name: "DockerLoad10", run: func(b *testing.B, e *benchEngine) { benchLoad(b, e, 10) }},
	{name: "DockerLoad50", run: func(b *testing.B, e *benchEngine) { benchLoad(b, e, 50) }},
	{name: "DockerCreateRm", run: benchCreateRm},
	{name: "DockerCommit", run: benchCommit},
	{name: "DockerRmi50", run: benchRmi50},
	{name: "DockerRunRm", run: benchRunRm},
	{name: "DockerdStart500", run: benchDaemonStart, floor: true},
}

func runEngineBench(b *testing.B) {
	docker, busybox := requireEngine(b)
	root := b
	engines := map[string]*benchEngine{}
	get := func(b *testing.B, name string) *benchEngine {
		if engines[name] == nil {
			engines[name] = newBenchEngine(lifetime{b, root}, root, docker, busybox, name)
		}
		return engines[name]
	}
	for _, s := range engineScenarios {
		b.Run(s.name, func(b *testing.B) {
			for round := range *rounds {
				order := []string{benchThin, benchPeer}
				if round%2 == 1 { // what one driver leaves behind must not always favour the same one
					order = []string{benchPeer, benchThin}
				}
				if s.floor {
					order = append(order, benchFloor)
				}
				for _, name := range order {
					b.Run("driver="+name, func(b *testing.B) {
						e := get(b, name)
						e.hopCalls, e.hopNs = 0, 0
						s.run(b, e)
						e.hopReport(b)
					})
				}
			}
		})
	}
	for _, e := range engines { // dockerd's Cleanup unmounts; a kill would leave the home busy
		e.shutdown(b)
	}
}

// shutdown stops dockerd and the plugin with SIGTERM; with
// THINLAYER_BENCH_LOGS set, their logs are kept in that directory.
func (e *benchEngine) shutdown(b *testing.B) {
	e.dockerd.stop(b)
	if e.name == benchThin {
		e.plugin.stop(b)
	}
	if dir := os.Getenv("THINLAYER_BENCH_LOGS"); dir != "" {
		for _, f := range []string{"dockerd.log", "plugin.log"} {
			if data, err := os.ReadFile(filepath.Join(e.dir, f)); err == nil {
				writeFile(b, filepath.Join(dir, e.name+"-"+f), string(data))
			}
		}
	}
}

// benchEngine is one engine (containerd, dockerd, the plugin for
// thinlayer) kept running across scenarios, and its images.
type benchEngine struct {
	*engine
	root      testing.TB // outlives the sub-benchmarks: the processes' lifetime
	name      string
	busybox   []byte
	archives  map[int]string // layers -> docker load archive
	baseOK    bool
	populated bool
	seq       int
	rtt       float64 // ns of an Exists round trip to the plugin
	pluginUp  time.Duration
	hopCalls  int64 // plugin requests in this benchmark's timed spans
	hopNs     int64 // and their time in the plugin // the last plugin start: exec until its socket answers
}

// lifetime is a sub-benchmark whose temporary directories and cleanups
// (processes' kills) belong to root: an engine made or restarted inside
// one scenario serves the next ones.
type lifetime struct {
	testing.TB
	root testing.TB
}

func (l lifetime) Cleanup(f func())             { l.root.Cleanup(f) }
func (l lifetime) TempDir() string              { return l.root.TempDir() }
func (e *benchEngine) lt(b testing.TB) lifetime { return lifetime{b, e.root} }

// newBenchEngine starts an engine whose lifetime is the whole condition.
func newBenchEngine(b lifetime, root testing.TB, docker string, busybox []byte, name string) *benchEngine {
	e := &benchEngine{root: root, name: name, busybox: busybox, archives: map[int]string{}}
	e.engine = newBareEngine(b, docker)
	if name == benchPeer {
		e.home = filepath.Join(e.dir, "data", "devicemapper") // where Docker's driver keeps it
	}
	e.startAll(b)
	if name == benchThin {
		e.rtt = e.measureRTT(b)
		b.Logf("plugin round trip (Exists, keep-alive, from the bench process): %.0f µs", e.rtt/1e3)
	}
	return e
}

// image writes, once, a docker load archive of an n-layer image: the
// busybox layer, then one small file a layer. Names carry n so that no
// layer is shared with another image.
func (e *benchEngine) image(b *testing.B, n int) (tag, archive string) {
	tag = fmt.Sprintf("bench/l%d:1", n)
	if a := e.archives[n]; a != "" {
		return tag, a
	}
	base := append(imageLayers(e.busybox)[0], entry{name: "etc/image", body: tag + "\n"})
	layers := [][]entry{base}
	for i := 1; i < n; i++ {
		layers = append(layers, []entry{{name: "etc/"}, {name: fmt.Sprintf("etc/l%d-%03d", n, i), body: strings.Repeat(tag, 256)}})
	}
	archive = filepath.Join(e.dir, fmt.Sprintf("l%d.tar", n))
	writeImage(b, archive, tag, layers)
	e.archives[n] = archive
	return tag, archive
}

// base loads the 3-layer test image once.
func (e *benchEngine) base(b *testing.B) string {
	if !e.baseOK {
		archive := filepath.Join(e.dir, "image.tar")
		writeImage(b, archive, image, imageLayers(e.busybox))
		e.mustDocker(b, "load", "-i", archive)
		// dockerd's first container costs more than the next (its
		// runtime and network setup); no scenario should time that.
		id := strings.TrimSpace(e.mustDocker(b, "create", "--network", "none", image, "true"))
		e.mustDocker(b, "rm", id)
		e.baseOK = true
	}
	return image
}

func benchLoad(b *testing.B, e *benchEngine, layers int) {
	b.StopTimer()
	tag, archive := e.image(b, layers)
	e.rmiIfPresent(b, tag)
	for range b.N {
		var out string
		e.span(b, func() { out = e.mustDocker(b, "load", "-i", archive) })
		if !strings.Contains(out, "Loaded image: "+tag) {
			b.Fatalf("%s: docker load: %q", e.name, out)
		}
		e.mustDocker(b, "rmi", tag)
	}
}

func (e *benchEngine) rmiIfPresent(b *testing.B, tag string) {
	if out := e.mustDocker(b, "images", "-q", tag); strings.TrimSpace(out) != "" {
		e.mustDocker(b, "rmi", tag)
	}
}

func benchCreateRm(b *testing.B, e *benchEngine) {
	b.StopTimer()
	img := e.base(b)
	for range b.N {
		e.span(b, func() {
			id := strings.TrimSpace(e.mustDocker(b, "create", "--network", "none", img, "true"))
			e.mustDocker(b, "rm", id)
		})
	}
}

// benchCommit commits a container with a file copied in (a real diff).
func benchCommit(b *testing.B, e *benchEngine) {
	b.StopTimer()
	img := e.base(b)
	in := filepath.Join(e.dir, "commit-in")
	writeFile(b, in, strings.Repeat("committed\n", 1000))
	for range b.N {
		e.seq++
		c, tag := fmt.Sprintf("commit%d", e.seq), fmt.Sprintf("bench/commit:%d", e.seq)
		e.mustDocker(b, "create", "--network", "none", "--name", c, img, "true")
		e.mustDocker(b, "cp", in, c+":/etc/committed")
		e.span(b, func() { e.mustDocker(b, "commit", c, tag) })
		e.mustDocker(b, "rm", c)
		e.mustDocker(b, "rmi", tag)
	}
}

func benchRmi50(b *testing.B, e *benchEngine) {
	b.StopTimer()
	tag, archive := e.image(b, 50)
	e.rmiIfPresent(b, tag)
	for range b.N {
		e.mustDocker(b, "load", "-i", archive)
		e.span(b, func() { e.mustDocker(b, "rmi", tag) })
	}
	if out := e.mustDocker(b, "images", "-q", tag); strings.TrimSpace(out) != "" {
		b.Fatalf("%s: %s still listed after rmi: %q", e.name, tag, out)
	}
}

// benchRunRm: docker run --rm (runc and the shim dominate it in UML).
func benchRunRm(b *testing.B, e *benchEngine) {
	b.StopTimer()
	img := e.base(b)
	for range b.N {
		e.span(b, func() { e.mustDocker(b, "run", "--rm", "--network", "none", img, "true") })
	}
}

// benchDaemonStart: dockerd (and, for thinlayer, the plugin first) from
// exec until `docker info` answers, on a home with 500 extra layers.
func benchDaemonStart(b *testing.B, e *benchEngine) {
	b.StopTimer()
	e.populate(b)
	var total, pluginUp time.Duration
	for range b.N {
		e.dockerd.stop(b)
		if e.name == benchThin {
			e.plugin.stop(b)
		}
		start := time.Now()
		e.spanFrom(b, e.hopMark(b, false), func() { // the plugin is down: its log is complete
			e.startAll(e.lt(b))
			e.mustDocker(b, "info")
		})
		total += time.Since(start)
		pluginUp += e.pluginUp
	}
	if e.name == benchThin { // the plugin's exec until its socket answers, and dockerd's share
		b.ReportMetric(float64(pluginUp.Milliseconds())/float64(b.N), "plugin-up-ms/op")
		b.ReportMetric(float64((total-pluginUp).Milliseconds())/float64(b.N), "dockerd-up-ms/op")
	}
}

// populate puts 500 layers (snapshots of the base) into the engine's home
// once, with thinlayer's driver in this process while the engine is down:
// both drivers read the same on-disk format (TestMigrateFromBuiltinDevicemapper).
// Docker's layer store does not know them; each driver's Init reads them.
func (e *benchEngine) populate(b *testing.B) {
	if e.populated {
		return
	}
	if e.name == benchFloor { // vfs: no device-mapper home to fill
		e.populated = true
		return
	}
	e.dockerd.stop(b)
	if e.name == benchThin {
		e.plugin.stop(b)
	}
	d, err := graphdriver.Init(e.home, pluginOpts, graphdriver.IdentityMapping{})
	if err != nil {
		b.Fatalf("%s: open %s to add layers: %v", e.name, e.home, err)
	}
	for i := range layersInHome {
		if err := d.Create(fmt.Sprintf("bench-home-%03d", i), "", nil); err != nil {
			b.Fatalf("%s: add layer %d: %v", e.name, i, err)
		}
	}
	if err := d.Cleanup(); err != nil {
		b.Fatalf("%s: cleanup after adding layers: %v", e.name, err)
	}
	e.startAll(e.lt(b))
	e.populated = true
}

// startAll starts the plugin (thinlayer) and dockerd on the engine's driver.
func (e *benchEngine) startAll(b testing.TB) {
	if e.name == benchThin {
		start := time.Now()
		e.startPlugin(b)
		e.pluginUp = time.Since(start)
		e.startDockerd(b)
		return
	}
	if e.name == benchFloor {
		e.startDockerdOn(b, "vfs")
		return
	}
	e.startDockerdOn(b, "devicemapper", builtinOpts...)
}
