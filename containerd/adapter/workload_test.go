package adapter_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	dm "github.com/thinlayer/thinlayer/devmapper"
	"github.com/thinlayer/thinlayer/testutil"
	"github.com/thinlayer/thinlayer/thinmeta"
)

const workloadImage = "docker.io/thinlayer/workload:latest"

// TestCtrWorkload is what an operator does with containerd, through ctr:
// import an OCI archive (two layers: a static busybox and 8 MiB of data,
// then a small change with a whiteout) into the snapshotter, run a
// container that writes and reads its rootfs (--rm), look at the
// snapshots' usage, remove the image and let containerd's garbage
// collector clean up. On thinlayer through the proxy plugin, and the same
// on containerd's own devmapper snapshotter on a pool of its own, the peer.
func TestCtrWorkload(t *testing.T) {
	testutil.RequireKernel(t)
	bin, ctr := requireBinaries(t)
	requireRuntime(t)
	mountCgroup2(t)
	layers := testImageLayers(t)
	archive := filepath.Join(t.TempDir(), "image.tar")
	writeOCIArchive(t, archive, workloadImage, layers)
	bigSize := len(layers[0][len(layers[0])-1].body)

	t.Run("thinlayer", func(t *testing.T) {
		dir := t.TempDir()
		s, sock := serveSnapshotter(t, dir)
		d := startContainerd(t, bin, ctr, dir, sock)
		w := workload{d: d, snapshotter: "thinlayer", bigSize: bigSize}
		w.importImage(t, archive)
		if l := ourLayers(t, s); len(l) != 2 {
			t.Errorf("after import the snapshotter holds layers %v, want the image's 2", l)
		}
		w.run(t)
		if l := ourLayers(t, s); len(l) != 2 {
			t.Errorf("after run --rm the snapshotter holds layers %v, want the image's 2", l)
		}
		w.checkUsage(t, poolUsedBytes(t, s.DeviceSet().PoolName()))
		ids := map[dm.ThinID]bool{}
		layersBefore := ourLayers(t, s)
		for _, h := range layersBefore {
			info, err := s.DeviceSet().Info(h)
			if err != nil {
				t.Fatal(err)
			}
			ids[info.DeviceID] = true
		}
		w.removeImage(t)
		waitLayersGone(t, s)
		checkPoolClean(t, s, layersBefore, ids)
	})

	t.Run("devmapper", func(t *testing.T) {
		dir := t.TempDir()
		pool := testutil.NewLoopPool(t, testutil.PoolOptions{DataSize: 2 << 30, MetadataSize: 64 << 20})
		d := startContainerdWith(t, bin, ctr, dir, devmapperConfig(dir, pool.Name))
		w := workload{d: d, snapshotter: "devmapper", bigSize: bigSize}
		base := poolThinIDsOf(t, pool.Control, pool.Name)
		w.importImage(t, archive)
		if ids := poolThinIDsOf(t, pool.Control, pool.Name); len(ids) != len(base)+2 {
			t.Errorf("after import the pool holds thin ids %v, want %v and the image's 2", ids, base)
		}
		w.run(t)
		w.checkUsage(t, poolUsedBytes(t, pool.Name))
		w.removeImage(t)
		waitFor(t, "the devmapper snapshotter's thin devices to go", func() bool {
			return slices.Equal(poolThinIDsOf(t, pool.Control, pool.Name), base)
		})
	})
}

// workload runs the operator's steps on one snapshotter.
type workload struct {
	d           *daemon
	snapshotter string
	bigSize     int
}

func (w workload) ctr(t testing.TB, args ...string) string {
	t.Helper()
	out, err := w.d.run(args...)
	if err != nil {
		t.Fatalf("%v\n%s", err, w.d.logTail())
	}
	return out
}

// importImage: ctr images import unpacks the archive into the
// snapshotter; the image is listed under its name.
func (w workload) importImage(t testing.TB, archive string) {
	t.Helper()
	start := time.Now()
	w.ctr(t, "images", "import", "--snapshotter", w.snapshotter, archive)
	t.Logf("%s: ctr images import (2 layers, %.1f MiB) took %v", w.snapshotter, float64(fileSize(t, archive))/(1<<20),
		time.Since(start).Round(time.Millisecond))
	if out := w.ctr(t, "images", "ls", "-q"); !slices.Contains(strings.Fields(out), workloadImage) {
		t.Fatalf("images ls: %q, want %s", out, workloadImage)
	}
	if out := w.ctr(t, "images", "check"); !strings.Contains(out, "complete") {
		t.Errorf("images check: %q, want the image complete", out)
	}
}

// run: a container writes to its rootfs and reads it back, sees the top
// layer's files over the bottom's, not the whited-out one, and all of the
// bottom layer's data; --rm removes it and its snapshot.
func (w workload) run(t testing.TB) {
	t.Helper()
	const script = `echo written by the container > /root/w && cat /root/w /etc/version /etc/greeting && ` +
		`test ! -e /etc/gone && echo whiteout-ok && wc -c < /data/big && rm /etc/version && ls /etc`
	start := time.Now()
	out := w.ctr(t, "run", "--snapshotter", w.snapshotter, "--rm", workloadImage, "workload-"+w.snapshotter, "sh", "-c", script)
	t.Logf("%s: ctr run --rm took %v", w.snapshotter, time.Since(start).Round(time.Millisecond))
	want := []string{"written by the container", "layer 2", "hello from layer 2", "whiteout-ok", strconv.Itoa(w.bigSize), "greeting", "passwd"}
	got := strings.Split(strings.TrimSpace(out), "\n")
	for i := range got {
		got[i] = strings.TrimSpace(got[i])
	}
	if !slices.Equal(got, want) {
		t.Errorf("the container printed %q, want %q", got, want)
	}
	if out := strings.TrimSpace(w.ctr(t, "containers", "ls", "-q")); out != "" {
		t.Errorf("containers left after run --rm: %q", out)
	}
	if keys := w.snapshotKeys(t); len(keys) != 2 {
		t.Errorf("snapshots after run --rm: %v, want the image's 2 layers", keys)
	}
}

// snapshotKeys lists the snapshots: key → parent.
func (w workload) snapshotKeys(t testing.TB) map[string]string {
	t.Helper()
	keys := map[string]string{}
	lines := strings.Split(strings.TrimSpace(w.ctr(t, "snapshots", "--snapshotter", w.snapshotter, "ls")), "\n")
	for _, l := range lines[1:] { // KEY PARENT KIND
		switch f := strings.Fields(l); len(f) {
		case 2:
			keys[f[0]] = ""
		case 3:
			keys[f[0]] = f[1]
		}
	}
	return keys
}

// checkUsage: ctr snapshots usage shows each layer's own usage: the
// bottom one its busybox and 8 MiB, the top one its few changed blocks,
// not its parent's again; the two together fit in what the pool uses.
func (w workload) checkUsage(t testing.TB, poolUsed int64) {
	t.Helper()
	keys := w.snapshotKeys(t)
	usage := map[string]int64{}
	out := w.ctr(t, "snapshots", "--snapshotter", w.snapshotter, "usage", "-b")
	for _, l := range strings.Split(strings.TrimSpace(out), "\n")[1:] { // KEY SIZE INODES
		f := strings.Fields(l)
		if len(f) < 2 {
			t.Fatalf("usage: odd line %q", l)
		}
		n, err := strconv.ParseInt(f[1], 10, 64)
		if err != nil {
			t.Fatalf("usage: %q: %v", l, err)
		}
		usage[f[0]] = n
	}
	var bottom, top string
	for k, p := range keys {
		if p == "" {
			bottom = k
		} else {
			top = k
		}
	}
	if bottom == "" || top == "" || keys[top] != bottom || len(usage) != 2 {
		t.Fatalf("snapshots %v, usage %v: want two layers, one on the other", keys, usage)
	}
	t.Logf("%s: ctr snapshots usage: bottom layer %d bytes, top layer %d bytes; the pool uses %d bytes",
		w.snapshotter, usage[bottom], usage[top], poolUsed)
	if usage[bottom] < int64(w.bigSize) {
		t.Errorf("bottom layer's usage %d bytes: want at least its %d-byte file", usage[bottom], w.bigSize)
	}
	if usage[top] <= 0 || usage[top] > 4<<20 {
		t.Errorf("top layer's usage %d bytes: want its few changed blocks, over 0 and under 4 MiB (its parent holds %d)",
			usage[top], usage[bottom])
	}
	if w.snapshotter == "thinlayer" && usage[bottom]+usage[top] > poolUsed {
		t.Errorf("usage of the layers adds up to %d bytes, more than the pool's %d in use", usage[bottom]+usage[top], poolUsed)
	}
}

// removeImage: ctr images rm --sync, which runs containerd's garbage
// collection; the image's snapshots go from containerd's view.
func (w workload) removeImage(t testing.TB) {
	t.Helper()
	start := time.Now()
	w.ctr(t, "images", "rm", "--sync", workloadImage)
	t.Logf("%s: ctr images rm --sync took %v", w.snapshotter, time.Since(start).Round(time.Millisecond))
	if out := strings.TrimSpace(w.ctr(t, "images", "ls", "-q")); out != "" {
		t.Errorf("images after rm: %q", out)
	}
	waitFor(t, "containerd to drop the image's snapshots", func() bool { return len(w.snapshotKeys(t)) == 0 })
}

// waitFor waits, bounded, until done says so.
func waitFor(t testing.TB, what string, done func() bool) {
	t.Helper()
	deadline := time.Now().Add(daemonWait)
	for !done() {
		if time.Now().After(deadline) {
			t.Fatalf("waited %v for %s", daemonWait, what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// requireRuntime finds what ctr run needs besides containerd: runc and
// the runc v2 shim (Debian's runc and containerd packages).
func requireRuntime(t testing.TB) {
	t.Helper()
	for _, name := range []string{"runc", "containerd-shim-runc-v2"} {
		if _, err := exec.LookPath(name); err != nil {
			if _, err := os.Stat(filepath.Join("/usr/sbin", name)); err != nil {
				t.Fatalf("ctr run needs %s (Debian packages runc and containerd; make deps installs them): %v", name, err)
			}
		}
	}
}

// mountCgroup2 mounts the cgroup2 hierarchy runc wants on /sys/fs/cgroup
// if nothing is there yet (the test kernel boots without one).
func mountCgroup2(t testing.TB) {
	t.Helper()
	if _, err := os.Stat("/sys/fs/cgroup/cgroup.controllers"); err == nil {
		return
	}
	if err := unix.Mount("cgroup2", "/sys/fs/cgroup", "cgroup2", 0, ""); err != nil {
		t.Fatalf("mount cgroup2 on /sys/fs/cgroup: %v", err)
	}
}

// devmapperConfig is containerd's configuration with its own devmapper
// snapshotter on pool (and no proxy plugin).
func devmapperConfig(dir, pool string) string {
	return baseConfig(dir) + fmt.Sprintf(`
[plugins."io.containerd.snapshotter.v1.devmapper"]
  pool_name = %q
  root_path = %q
  base_image_size = "128MB"
  async_remove = false
  discard_blocks = true
`, pool, filepath.Join(dir, "devmapper"))
}

// poolThinIDsOf are the thin ids in pool's metadata, read live.
func poolThinIDsOf(t testing.TB, c *dm.Control, pool string) []dm.ThinID {
	t.Helper()
	m, release, err := thinmeta.OpenLive(c, pool, "")
	if err != nil {
		t.Fatalf("open metadata of pool %s: %v", pool, err)
	}
	defer func() {
		if err := release(); err != nil {
			t.Errorf("release metadata snapshot: %v", err)
		}
	}()
	defer m.Close()
	devs, err := m.Devices()
	if err != nil {
		t.Fatal(err)
	}
	var ids []dm.ThinID
	for _, d := range devs {
		ids = append(ids, d.ID)
	}
	slices.Sort(ids)
	return ids
}

// poolUsedBytes is the data the pool has in use, from its status.
func poolUsedBytes(t testing.TB, pool string) int64 {
	t.Helper()
	c, err := dm.Open()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	st, err := c.PoolStatus(pool, false)
	if err != nil {
		t.Fatal(err)
	}
	tables, err := c.Table(pool)
	if err != nil || len(tables) != 1 {
		t.Fatalf("table of pool %s: %v", pool, err)
	}
	tp, err := dm.ParseThinPool(tables[0].Params)
	if err != nil {
		t.Fatal(err)
	}
	return int64(st.UsedDataBlocks) * int64(tp.DataBlockSize.Bytes())
}

func fileSize(t testing.TB, path string) int64 {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}
