//go:build linux && cgo

package compat_test

import (
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/daemon/graphdriver"
	"github.com/thinlayer/thinlayer/compat/mobyhome"
	"github.com/thinlayer/thinlayer/testutil"
	"golang.org/x/sys/unix"
)

func TestMain(m *testing.M) { testutil.Main(m) }

// chain is a 3-layer image (base files, a modify, a delete) and a
// container's read-write layer on top of it.
var chain = []mobyhome.Layer{
	{ID: "img-base", Files: map[string]string{
		"etc/hostname":          "base\n",
		"etc/os-release":        "ID=thinlayer-test\n",
		"bin/tool":              "tool v1\n",
		"usr/share/doc/README":  "read me\n",
		"var/lib/app/state":     "state 1\n",
		"var/lib/gone/one":      "to be deleted 1\n",
		"var/lib/gone/sub/two":  "to be deleted 2\n",
		"space in/name (x).txt": "odd name\n",
		"empty":                 "",
	}},
	{ID: "img-modify", Parent: "img-base", Files: map[string]string{
		"bin/tool":          "tool v2, longer than v1\n",
		"var/lib/app/state": "state 2\n",
		"etc/added":         "added in layer 2\n",
	}},
	{ID: "img-delete", Parent: "img-modify", Deletes: []string{
		"var/lib/gone",
		"etc/os-release",
	}},
	{ID: "ctr-rw", Parent: "img-delete", ReadWrite: true, Files: map[string]string{
		"etc/hostname": "container\n",
		"tmp/scratch":  strings.Repeat("rw layer data ", 1000),
	}},
}

// TestMobyReopensOwnHome: Moby's driver writes a home (a 3-layer image and
// a container layer), shuts down, opens the same home again and reads every
// layer back. It logs the home's on-disk layout in between.
func TestMobyReopensOwnHome(t *testing.T) {
	testutil.RequireKernel(t)
	for _, c := range []struct {
		name     string
		opts     []string
		deferred bool
	}{
		{"ext4", []string{"dm.fs=ext4"}, false},
		{"xfs", []string{"dm.fs=xfs"}, false},
		// Moby's production default where udev runs.
		{"ext4-deferred", []string{"dm.fs=ext4", "dm.use_deferred_removal=true", "dm.use_deferred_deletion=true"}, true},
	} {
		t.Run(c.name, func(t *testing.T) { testMobyReopen(t, c.opts, c.deferred) })
	}
}

func testMobyReopen(t *testing.T, opts []string, deferred bool) {
	want, err := mobyhome.Expected(chain)
	if err != nil {
		t.Fatal(err)
	}
	home := filepath.Join(t.TempDir(), "devicemapper")

	// First life: write the chain, read it back, shut down.
	d := openMoby(t, home, opts, deferred)
	if err := mobyhome.WriteLayers(d, chain); err != nil {
		t.Fatalf("write layers: %v", err)
	}
	checkNode(t, d, "ctr-rw", deferred)
	checkLayers(t, d, want)
	d.close(t)

	layout, err := mobyhome.Describe(home)
	if err != nil {
		t.Fatalf("describe home: %v", err)
	}
	t.Logf("home %s after Cleanup:\n%s", home, layout)

	// Second life: the same home opens and reads back the same.
	d = openMoby(t, home, opts, deferred)
	for _, l := range chain {
		if !d.Exists(l.ID) {
			t.Errorf("after reopen: layer %s does not exist", l.ID)
		}
	}
	checkLayers(t, d, want)
	if m, err := d.GetMetadata("ctr-rw"); err != nil {
		t.Errorf("GetMetadata(ctr-rw): %v", err)
	} else {
		t.Logf("GetMetadata(ctr-rw): %v", m)
	}
	t.Logf("driver status after reopen: %v", d.Status())
	d.close(t)
}

// mobyDriver is an open Moby driver of a test, cleaned up at test end if
// the test has not done so.
type mobyDriver struct {
	graphdriver.Driver
	home     string
	deferred bool // deferred removal: stale /dev/mapper nodes are expected
	closed   bool
}

func openMoby(t *testing.T, home string, opts []string, deferred bool) *mobyDriver {
	t.Helper()
	d, err := mobyhome.Open(home, opts)
	if err != nil {
		t.Fatalf("open %s with Moby's devicemapper: %v", home, err)
	}
	md := &mobyDriver{Driver: d, home: home, deferred: deferred}
	t.Cleanup(func() {
		if !md.closed {
			md.close(t)
		}
	})
	return md
}

// close shuts the driver down and checks that nothing of its home is left
// live: no device, node, loop device or mount.
func (d *mobyDriver) close(t *testing.T) {
	t.Helper()
	d.closed = true
	if err := d.Cleanup(); err != nil {
		t.Errorf("cleanup driver: %v", err)
	}
	if d.deferred {
		stale, err := mobyhome.RemoveStaleNodes(d.home)
		if err != nil {
			t.Errorf("remove stale nodes: %v", err)
		}
		t.Logf("deferred removal without udev: removed %d stale /dev/mapper nodes after Cleanup", len(stale))
	}
	checkNoLeftovers(t, d.home)
}

// checkNoLeftovers fails t if any device, node, loop device or mount of home
// is still there. Loop devices are autoclear and may take a moment.
func checkNoLeftovers(t *testing.T, home string) {
	t.Helper()
	var left []string
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		var err error
		left, err = mobyhome.Leftovers(home)
		if err != nil {
			t.Errorf("leftovers of %s: %v", home, err)
			return
		}
		if len(left) == 0 || time.Now().After(deadline) {
			break
		}
	}
	for _, l := range left {
		t.Errorf("left behind after Cleanup: %s", l)
	}
}

func checkLayers(t *testing.T, d graphdriver.Driver, want map[string]map[string]string) {
	t.Helper()
	for _, l := range chain {
		got, err := mobyhome.ReadFiles(d, l.ID)
		if err != nil {
			t.Errorf("read layer %s: %v", l.ID, err)
			continue
		}
		if !reflect.DeepEqual(got, want[l.ID]) {
			t.Errorf("layer %s:\n got %s\nwant %s", l.ID, short(got), short(want[l.ID]))
		}
	}
}

// checkNode checks that, without udev, libdevmapper made the /dev/mapper
// node Moby mounts from while the layer is got, and that Put removed the
// device and (unless removal was deferred) the node.
func checkNode(t *testing.T, d *mobyDriver, id string, deferred bool) {
	t.Helper()
	prefix, err := mobyhome.DevicePrefix(d.home)
	if err != nil {
		t.Fatal(err)
	}
	node := "/dev/mapper/" + prefix + "-" + id
	if _, err := d.Get(id, ""); err != nil {
		t.Fatalf("get %s: %v", id, err)
	}
	var st unix.Stat_t
	if err := unix.Stat(node, &st); err != nil {
		t.Errorf("while %s is got: %v", id, err)
	} else if st.Mode&unix.S_IFMT != unix.S_IFBLK {
		t.Errorf("%s is not a block device (mode %o)", node, st.Mode)
	} else {
		t.Logf("while got: node %s is block %d:%d", node, unix.Major(st.Rdev), unix.Minor(st.Rdev))
	}
	logTables(t, prefix+"-pool", prefix+"-"+id)
	if err := d.Put(id); err != nil {
		t.Fatalf("put %s: %v", id, err)
	}
	if _, err := os.Stat(fmt.Sprintf("/sys/dev/block/%d:%d/dm", unix.Major(st.Rdev), unix.Minor(st.Rdev))); !os.IsNotExist(err) {
		t.Errorf("after Put: device %d:%d still there (%v)", unix.Major(st.Rdev), unix.Minor(st.Rdev), err)
	}
	_, err = os.Lstat(node)
	switch {
	case !deferred && !os.IsNotExist(err):
		t.Errorf("after Put: %s still there (%v)", node, err)
	case deferred && err != nil:
		t.Errorf("after Put with deferred removal: expected the stale node %s to stay (no udev removes it): %v", node, err)
	case deferred:
		t.Logf("after Put with deferred removal: device gone, stale node %s stays (libdm fallback disabled, no udev)", node)
	}
}

// logTables logs the device-mapper tables and status Moby loaded, through
// dmsetup where it is installed (not needed otherwise).
func logTables(t *testing.T, names ...string) {
	t.Helper()
	if _, err := exec.LookPath("dmsetup"); err != nil {
		t.Logf("no dmsetup, not showing tables: %v", err)
		return
	}
	for _, n := range names {
		for _, what := range []string{"table", "status"} {
			out, err := exec.Command("dmsetup", what, n).CombinedOutput()
			t.Logf("dmsetup %s %s: %s (err=%v)", what, n, strings.TrimSpace(string(out)), err)
		}
	}
}

// short shows a file map with long contents cut.
func short(m map[string]string) string {
	var b strings.Builder
	b.WriteString("{")
	for _, k := range slices.Sorted(maps.Keys(m)) {
		v := m[k]
		if len(v) > 40 {
			v = v[:40] + "..."
		}
		b.WriteString(" " + k + "=" + strings.TrimSuffix(v, "\n"))
	}
	b.WriteString(" }")
	return b.String()
}
