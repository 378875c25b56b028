//go:build linux && cgo

package bench_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/docker/docker/daemon/graphdriver"
	"github.com/thinlayer/thinlayer/compat/mobyhome"
	dm "github.com/thinlayer/thinlayer/devmapper"
	"golang.org/x/sys/unix"
)

// Driver names, as they appear in benchmark names (driver=<name>).
const (
	thinlayer = "thinlayer"
	peer      = "moby"
	floorName = "floor"
)

// openers open a home with each driver, with the same storage options
// (mobyhome.DefaultOptions: 2 GB/200 MB sparse loop files on the guest's
// tmpfs, 512 MB ext4 base, no deferred removal or deletion).
var openers = map[string]func(home string) (graphdriver.Driver, error){
	thinlayer: func(home string) (graphdriver.Driver, error) { return mobyhome.OpenThinlayer(home, nil) },
	peer:      openPeer,
}

// peerUdev records whether udevd ran when Moby's driver first started in
// this process: libdevmapper checks for udev once per process and keeps the
// answer, so each udev condition needs a process of its own.
var peerUdev *bool

func openPeer(home string) (graphdriver.Driver, error) {
	udev := dm.UdevRunning()
	if peerUdev != nil && *peerUdev != udev {
		return nil, fmt.Errorf("libdevmapper decided on udev=%v earlier in this process and keeps that answer: run each udev condition in a process of its own (-bench '^BenchmarkNoUdev' and '^BenchmarkUdev' separately)", *peerUdev)
	}
	peerUdev = &udev
	return mobyhome.Open(home, nil)
}

// env is one udev condition: the drivers' homes (opened on first use and
// shared by all scenarios), the fixture layers made so far, and the big
// home of the Init scenarios.
type env struct {
	udev    bool
	dir     string
	drivers map[string]*driver
	big     *bigHome
	fl      *floor
	snap    *snapHome // thinlayer's containerd snapshotter, on first use
	seq     int
}

// driver is an open driver and the fixtures made on it.
type driver struct {
	graphdriver.Driver
	name string
	home string
	made map[string]bool
}

func newEnv(b *testing.B, udev bool) *env {
	return &env{udev: udev, dir: b.TempDir(), drivers: map[string]*driver{}}
}

// driver opens the named driver's home on first use.
func (e *env) driver(b *testing.B, name string) *driver {
	b.Helper()
	if d := e.drivers[name]; d != nil {
		return d
	}
	home := filepath.Join(e.dir, name)
	gd, err := openers[name](home)
	if err != nil {
		b.Fatalf("open %s on %s: %v", name, home, err)
	}
	d := &driver{Driver: gd, name: name, home: home, made: map[string]bool{}}
	e.drivers[name] = d
	return d
}

// close shuts every open driver (and the snapshotter) down; a benchmark
// that leaves a driver's devices or mounts behind fails here.
func (e *env) close(b *testing.B) {
	for name, d := range e.drivers {
		if err := d.Cleanup(); err != nil {
			b.Errorf("cleanup %s: %v", name, err)
		}
		if left, err := mobyhome.Leftovers(d.home); err != nil || len(left) > 0 {
			b.Errorf("%s left behind after Cleanup: %v %v", name, left, err)
		}
	}
	if e.big != nil {
		e.big.close(b)
	}
	if e.fl != nil {
		e.fl.close()
	}
	if e.snap != nil {
		e.snap.close(b)
	}
}

// id returns a layer id not used before in this process.
func (e *env) id(prefix string) string {
	e.seq++
	return prefix + "-" + strconv.Itoa(e.seq)
}

// fixture writes layers on d once; later calls find them made.
func (e *env) fixture(b *testing.B, d *driver, f fixture) {
	b.Helper()
	if d.made[f.name] {
		return
	}
	if err := mobyhome.WriteLayers(d, f.layers()); err != nil {
		b.Fatalf("%s: make fixture %s: %v", d.name, f.name, err)
	}
	d.made[f.name] = true
}

// isMountPoint reports whether dir is the root of a mount (its device
// differs from its parent's).
func isMountPoint(dir string) (bool, error) {
	var st, parent unix.Stat_t
	if err := unix.Stat(dir, &st); err != nil {
		return false, err
	}
	if err := unix.Stat(filepath.Dir(dir), &parent); err != nil {
		return false, err
	}
	return st.Dev != parent.Dev, nil
}

// checkGetPut gets and puts id once, outside the timed loop, and fails b
// unless Get mounted a filesystem and Put took it away again.
func checkGetPut(b *testing.B, d *driver, id string) {
	b.Helper()
	root, err := d.Get(id, "")
	if err != nil {
		b.Fatalf("%s: get %s: %v", d.name, id, err)
	}
	mp := filepath.Dir(root)
	if m, err := isMountPoint(mp); err != nil || !m {
		b.Fatalf("%s: get %s: %s is not a mount point (%v)", d.name, id, mp, err)
	}
	if err := d.Put(id); err != nil {
		b.Fatalf("%s: put %s: %v", d.name, id, err)
	}
	if m, err := isMountPoint(mp); err == nil && m {
		b.Fatalf("%s: put %s: %s still mounted", d.name, id, mp)
	}
}

// deviceActive reports whether layer id's thin device is active, from the
// device name the driver reports.
func deviceActive(b *testing.B, d *driver, id string) bool {
	b.Helper()
	meta, err := d.GetMetadata(id)
	if err != nil {
		b.Fatalf("%s: metadata of %s: %v", d.name, id, err)
	}
	ctl, err := dm.OpenWith(dm.Options{Udev: dm.UdevOff})
	if err != nil {
		b.Fatal(err)
	}
	defer ctl.Close()
	ok, err := ctl.Exists(meta["DeviceName"])
	if err != nil {
		b.Fatalf("info %s: %v", meta["DeviceName"], err)
	}
	return ok
}

func must(b *testing.B, what string, err error) {
	b.Helper()
	if err != nil {
		b.Fatalf("%s: %v", what, err)
	}
}

func removeAll(b *testing.B, d *driver, ids []string) {
	b.Helper()
	for _, id := range ids {
		must(b, d.name+": remove "+id, d.Remove(id))
	}
}

func fileSize(path string) int64 {
	fi, err := os.Stat(path)
	if err != nil {
		return -1
	}
	return fi.Size()
}
