package enginetest

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/moby/sys/mountinfo"

	"github.com/thinlayer/thinlayer/cli"
	"github.com/thinlayer/thinlayer/deviceset"
	dm "github.com/thinlayer/thinlayer/devmapper"
)

const bigImage = "thinlayer/big:1"

// bigLayers is a 4-layer image: busybox, then three layers of 4 MiB of
// incompressible data each, so that the ApplyDiff the test kills the
// plugin in is still reading its tar (seconds in the test kernel). It
// returns the container command that prints the big files' digests, and
// what it prints.
func bigLayers(busybox []byte) (layers [][]entry, script, want string) {
	layers = [][]entry{imageLayers(busybox)[0]}
	rng := rand.NewChaCha8([32]byte{'k', 'i', 'l', 'l'})
	for i := 1; i <= 3; i++ {
		b := make([]byte, 4<<20)
		rng.Read(b)
		name := fmt.Sprintf("data/%d", i)
		layers = append(layers, []entry{{name: "data/"}, {name: name, body: string(b)}})
		sum := sha256.Sum256(b)
		script += " /" + name
		want += fmt.Sprintf("%s  /%s\n", hex.EncodeToString(sum[:]), name)
	}
	return layers, "sha256sum" + script, want
}

// TestDockerPluginKilled kills the plugin (SIGKILL) while Docker is in a
// docker load, a docker rm and a docker rmi; each time the plugin comes
// back at once, as a supervisor restarts it, and dockerd is restarted,
// which a user must do: Docker calls Init once per daemon start, and the
// new plugin process has no driver until then. After each, Docker's view
// is consistent and usable; at the end the home checks clean, with no
// device left active and no thin id that no layer names, and the only
// layer Docker does not name is the one the killed ApplyDiff was filling.
func TestDockerPluginKilled(t *testing.T) {
	docker, busybox := requireEngine(t)
	e := newEngine(t, docker)
	layers, script, wantRun := bigLayers(busybox)
	archive := filepath.Join(e.dir, "big.tar")
	writeImage(t, archive, bigImage, layers)

	// docker load: killed once the third layer is mounted, mid-untar.
	line, out, err := e.killPluginDuring(t, "fsutil: mounted", 3, "load", "-i", archive)
	if err == nil || !strings.Contains(err.Error(), "GraphDriver.ApplyDiff") {
		t.Fatalf("docker load with the plugin killed in an ApplyDiff: %q %v", out, err)
	}
	inFlight := mountedID(t, line)
	e.checkDriverGone(t)
	e.restartDockerd(t)
	e.checkNoMounts(t)
	if out := e.mustDocker(t, "images", "-a", "-q"); out != "" {
		t.Errorf("after the interrupted load, docker images -a: %q, want none", out)
	}
	if out := e.mustDocker(t, "load", "-i", archive); !strings.Contains(out, "Loaded image: "+bigImage) {
		t.Fatalf("docker load again: %q", out)
	}
	if out := e.mustDocker(t, "run", "--name", "victim", "--network", "none", bigImage, "sh", "-c", "echo w > /w; "+script); out != wantRun {
		t.Fatalf("docker run of the reloaded image: %q, want %q", out, wantRun)
	}

	// docker rm: killed in the first Remove (the container's layer). The
	// container is left Dead (or gone, had the Remove got through).
	_, _, err = e.killPluginDuring(t, "method=Remove", 1, "rm", "victim")
	t.Logf("docker rm with the plugin killed in it: %v", err)
	e.restartDockerd(t)
	switch ps := e.mustDocker(t, "ps", "-a", "--format", "{{.Names}} {{.State}}"); ps {
	case "victim dead\n":
		e.mustDocker(t, "rm", "victim")
	case "":
	default:
		t.Errorf("after the interrupted docker rm and a restart, docker ps -a: %q", ps)
	}
	if out := e.mustDocker(t, "ps", "-a", "-q"); out != "" {
		t.Errorf("docker ps -a after docker rm: %q", out)
	}

	// docker rmi: killed in the first Remove (the top layer). Docker has
	// dropped the image before it removes layers.
	_, _, err = e.killPluginDuring(t, "method=Remove", 1, "rmi", bigImage)
	t.Logf("docker rmi with the plugin killed in it: %v", err)
	e.restartDockerd(t)
	if out := e.mustDocker(t, "images", "-a", "-q"); out != "" {
		t.Errorf("after the interrupted docker rmi and a restart, docker images -a: %q", out)
	}

	e.dockerd.stop(t) // its layer store's Cleanup removes the layers it was removing
	e.plugin.stop(t)
	e.checkHomeClean(t)
	e.checkOrphans(t, inFlight)
	e.sweepOrphans(t, inFlight)
}

// sweepOrphans: thinlayer docker-orphans finds the layer Docker left (and
// nothing else), --remove removes it, and the home stays clean.
func (e *engine) sweepOrphans(t *testing.T, inFlight string) {
	t.Helper()
	h := cli.Home{Dir: e.home, StorageOpts: pluginOpts}
	dataRoot := filepath.Join(e.dir, "data")
	found, err := h.DockerOrphans(dataRoot, pluginName, false)
	if err != nil {
		t.Fatalf("thinlayer docker-orphans: %v", err)
	}
	var ids []string
	for _, o := range found.Orphans {
		ids = append(ids, o.ID)
	}
	t.Logf("thinlayer docker-orphans: %v", ids)
	if len(ids) > 1 || len(ids) == 1 && ids[0] != inFlight {
		t.Errorf("docker-orphans found %v, want at most the killed ApplyDiff's %s", ids, inFlight)
	}
	removed, err := h.DockerOrphans(dataRoot, pluginName, true)
	if err != nil || removed.Err() != nil {
		t.Fatalf("thinlayer docker-orphans --remove: %v %v", err, removed.Err())
	}
	after, err := h.DockerOrphans(dataRoot, pluginName, false)
	if err != nil || len(after.Orphans) > 0 {
		t.Errorf("after --remove: %v %+v", err, after)
	}
	ls, err := h.List()
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range ls.Layers {
		if l.ID == inFlight && inFlight != "" {
			t.Errorf("layer %s still in the home after docker-orphans --remove", inFlight)
		}
	}
	e.checkHomeClean(t)
}

// mountedID is the layer id in an "fsutil: mounted" line's target.
func mountedID(t testing.TB, line string) string {
	t.Helper()
	_, after, ok := strings.Cut(line, "/home/mnt/")
	id, _, _ := strings.Cut(after, " ")
	if !ok || id == "" {
		t.Fatalf("no layer mount in %q", line)
	}
	return id
}

// killPluginDuring runs docker with args and SIGKILLs the plugin on the
// n-th log line that contains want, restarts the plugin at once, and
// returns that line and what docker did.
func (e *engine) killPluginDuring(t testing.TB, want string, n int, args ...string) (line, out string, err error) {
	t.Helper()
	p := e.plugin
	type kill struct {
		line string
		at   time.Time
	}
	killed := make(chan kill, 1)
	e.pluginTap.arm(want, n, func(line string) {
		_ = p.cmd.Process.Signal(syscall.SIGKILL)
		killed <- kill{line, time.Now()}
	})
	type result struct {
		out string
		err error
	}
	done := make(chan result, 1)
	started := time.Now()
	go func() {
		out, err := e.dockerCmd(nil, args...)
		done <- result{out, err}
	}()
	var k kill
	select {
	case k = <-killed:
	case r := <-done:
		t.Fatalf("docker %s finished (%v) before the plugin logged %q %d times\n%s", args[0], r.err, want, n, p.tail())
	}
	p.kill() // reaps it
	e.startPlugin(t)
	t.Logf("docker %s: plugin killed %v in, serving again %v later", args[0], k.at.Sub(started).Round(time.Millisecond), time.Since(k.at).Round(time.Millisecond))
	r := <-done
	t.Logf("docker %s returned %v after the kill", args[0], time.Since(k.at).Round(time.Millisecond))
	return k.line, r.out, r.err
}

// checkDriverGone: until dockerd restarts, the restarted plugin has no
// driver, and a layer operation says so.
func (e *engine) checkDriverGone(t testing.TB) {
	t.Helper()
	tarball := layerTar(t, []entry{{name: "probe", body: "probe\n"}})
	_, err := e.dockerCmd(tarball, "import", "-", "thinlayer/probe:1")
	if err == nil || !strings.Contains(err.Error(), "GraphDriver.Init has not been called") {
		t.Errorf("docker import against a restarted plugin before a dockerd restart: %v, want the plugin's not-initialized error", err)
	}
}

func (e *engine) restartDockerd(t testing.TB) {
	t.Helper()
	start := time.Now()
	e.dockerd.stop(t)
	e.startDockerd(t)
	t.Logf("dockerd restarted in %v", time.Since(start).Round(time.Millisecond))
}

// checkNoMounts: the plugin's Init unmounted what the killed one left.
func (e *engine) checkNoMounts(t testing.TB) {
	t.Helper()
	ms, err := mountinfo.GetMounts(mountinfo.PrefixFilter(filepath.Join(e.home, "mnt")))
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range ms {
		t.Errorf("%s still mounted after the plugin's restart and Init", m.Mountpoint)
	}
}

// checkOrphans compares the home's layers with the graphdriver ids
// Docker's layer store names (each layer's cache-id, each container's
// mount-id and init-id): the one layer none names must be the one whose
// ApplyDiff was killed — Docker created it, and its removal failed on the
// restarted plugin — and Docker has finished every removal it started.
func (e *engine) checkOrphans(t testing.TB, inFlight string) {
	t.Helper()
	db := filepath.Join(e.dir, "data", "image", pluginName, "layerdb")
	named := map[string]bool{}
	var removing, dockerLayers int
	for _, pat := range []string{"sha256/*/cache-id", "mounts/*/mount-id", "mounts/*/init-id"} {
		files, _ := filepath.Glob(filepath.Join(db, pat))
		for _, f := range files {
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			named[string(b)] = true
			switch {
			case strings.HasSuffix(filepath.Dir(f), "-removing"):
				removing++
			case strings.HasPrefix(pat, "sha256"):
				dockerLayers++
			}
		}
	}
	if removing > 0 {
		t.Errorf("%d layers Docker was removing are still in its layer store after a clean stop", removing)
	}
	ls, err := cli.Home{Dir: e.home, StorageOpts: pluginOpts}.List()
	if err != nil {
		t.Fatalf("thinlayer ls: %v", err)
	}
	var orphans []string
	var homeLayers int
	for _, l := range ls.Layers {
		if l.Base {
			continue
		}
		homeLayers++
		if !named[l.ID] {
			orphans = append(orphans, l.ID)
		}
	}
	t.Logf("with no image or container left: the home has %d layers; Docker's layer store names %d layers; %d layers no Docker layer names: %v (the killed ApplyDiff's: %s)",
		homeLayers, dockerLayers, len(orphans), orphans, inFlight)
	if len(orphans) > 1 || len(orphans) == 1 && orphans[0] != inFlight {
		t.Errorf("layers no Docker layer names: %v, want at most the killed ApplyDiff's %s", orphans, inFlight)
	}
}

// checkHomeClean: none of the home's devices is left active, and thinlayer
// check finds the home consistent (so no thin id without a layer).
func (e *engine) checkHomeClean(t testing.TB) {
	t.Helper()
	prefix, err := deviceset.DevicePrefix(e.home)
	if err != nil {
		t.Fatal(err)
	}
	ctl, err := dm.Open()
	if err != nil {
		t.Fatal(err)
	}
	defer ctl.Close()
	devs, err := ctl.List()
	if err != nil {
		t.Fatal(err)
	}
	var active []string
	for _, d := range devs {
		if strings.HasPrefix(d.Name, prefix+"-") {
			active = append(active, d.Name)
		}
	}
	if len(active) > 0 {
		t.Errorf("devices of the home active after the plugin's Cleanup: %v", active)
	}
	rep, err := cli.Home{Dir: e.home, StorageOpts: pluginOpts}.Check()
	if err != nil || !rep.OK() {
		t.Errorf("thinlayer check: %v %+v", err, rep)
	}
}
