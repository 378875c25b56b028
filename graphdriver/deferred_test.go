package graphdriver_test

import (
	"bufio"
	"encoding/json"
	"errors"
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
	gd "github.com/thinlayer/thinlayer/graphdriver"
	"github.com/thinlayer/thinlayer/graphdriver/internal/gdtest"
)

// A leaked mount: the layer mounted in another mount namespace, as when a
// container bind-mounts /var/lib/docker. A process in a new, private
// namespace holds the mount (and so the device open) until it is killed.
//
// A copy of the mount at the same path goes when the driver removes the
// mount point (rmdir of a mount point unmounts it in every namespace,
// since Linux 3.18 — why Moby removes it); elsewhere names a bind mount of
// the layer's root at another path, which nothing on our side can end.
type leak struct {
	cmd *exec.Cmd
}

func leakMount(t *testing.T, mountpoint string, elsewhere bool) *leak {
	t.Helper()
	script := `grep -q " ` + mountpoint + ` " /proc/self/mountinfo && echo held && exec sleep 600`
	if elsewhere {
		dir := t.TempDir()
		script = `mount --bind ` + mountpoint + `/rootfs ` + dir + ` && echo held && exec sleep 600`
	}
	cmd := exec.Command("unshare", "--mount", "--propagation", "private", "sh", "-c", script)
	out, err := cmd.StdoutPipe()
	must(t, err)
	must(t, cmd.Start())
	l := &leak{cmd: cmd}
	t.Cleanup(l.end)
	line, _ := bufio.NewReader(out).ReadString('\n')
	if strings.TrimSpace(line) != "held" {
		t.Fatalf("the other namespace does not hold %s (%q)", mountpoint, line)
	}
	return l
}

// end kills the holder; its namespace, and the mount, go with it.
func (l *leak) end() {
	if l.cmd.ProcessState == nil {
		_ = l.cmd.Process.Kill()
		_ = l.cmd.Wait()
	}
}

// deviceInfo is the kernel's view of a layer's device.
func deviceInfo(t *testing.T, d gd.Driver, id string) (dm.Info, error) {
	m, err := d.GetMetadata(id)
	must(t, err)
	c, err := dm.Open()
	must(t, err)
	defer c.Close()
	return c.Info(m["DeviceName"])
}

func eventually(t *testing.T, what string, limit time.Duration, ok func() bool) {
	t.Helper()
	for deadline := time.Now().Add(limit); !ok(); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, limit)
		}
	}
}

func thinIDOf(t *testing.T, d gd.Driver, id string) int {
	m, err := d.GetMetadata(id)
	must(t, err)
	n, err := strconv.Atoi(m["DeviceId"])
	must(t, err)
	return n
}

// Deferred removal: Put of a device still open elsewhere schedules its
// removal for the last close; a Get before that cancels it and reuses the
// same device. Deferred deletion: Remove marks the layer and returns at
// once, and the worker deletes it after the leak ends.
func TestDeferredRemovalAndDeletionWithLeakedMount(t *testing.T) {
	home := t.TempDir()
	d := newDriver(t, home, walkOptions()) // Moby's defaults: both on
	mustCreate(t, d, "a", "")
	writeFile(t, get(t, d, "a")+"/f", "leaked", 0o644, 0, 0)
	l := leakMount(t, filepath.Join(home, "mnt", "a"), true)
	put(t, d, "a") // unmounted here; the device stays open there
	before, err := deviceInfo(t, d, "a")
	if err != nil || !before.DeferredRemove {
		t.Fatalf("after Put of a device open elsewhere: %+v %v, want a deferred removal pending", before, err)
	}
	root := get(t, d, "a")
	after, err := deviceInfo(t, d, "a")
	if err != nil || after.DeferredRemove || after.Minor != before.Minor {
		t.Fatalf("Get did not cancel the deferred removal and reuse the device: %+v -> %+v %v", before, after, err)
	}
	if b, err := os.ReadFile(root + "/f"); err != nil || string(b) != "leaked" {
		t.Fatalf("reused device reads %q %v", b, err)
	}
	put(t, d, "a")

	id := thinIDOf(t, d, "a")
	start := time.Now()
	must(t, d.Remove("a"))
	if took := time.Since(start); took > 2*time.Second {
		t.Fatalf("Remove of a busy device took %v", took)
	}
	if !d.Exists("a") || statusRow(d, "Deferred Deleted Device Count") != "1" {
		t.Fatalf("busy layer not marked deleted: exists=%v count=%s", d.Exists("a"), statusRow(d, "Deferred Deleted Device Count"))
	}
	if _, err := d.Get("a", ""); err == nil {
		t.Fatal("a layer marked deleted can be mounted")
	}
	if !slices.Contains(gdtest.PoolThinIDs(t, d), id) {
		t.Fatal("thin device gone while still open elsewhere")
	}
	l.end()
	eventually(t, "deferred deletion after the leak ended", 15*time.Second, func() bool { return !d.Exists("a") })
	if slices.Contains(gdtest.PoolThinIDs(t, d), id) || statusRow(d, "Deferred Deleted Device Count") != "0" {
		t.Fatalf("thin id %d still in the pool (count %s)", id, statusRow(d, "Deferred Deleted Device Count"))
	}
}

// The common leak — another namespace's copy of the very mount, as a
// container that bind-mounts /var/lib/docker has — ends when Put removes
// the mount point: the device closes, and Remove deletes it for real.
func TestLeakedMountAtSamePathEndsWithPut(t *testing.T) {
	home := t.TempDir()
	d := newDriver(t, home, walkOptions())
	mustCreate(t, d, "a", "")
	get(t, d, "a")
	leakMount(t, filepath.Join(home, "mnt", "a"), false)
	id := thinIDOf(t, d, "a")
	put(t, d, "a")
	eventually(t, "device closed after Put", 10*time.Second, func() bool {
		info, err := deviceInfo(t, d, "a") // gone, or kept idle with nothing holding it
		return err != nil || info.OpenCount == 0
	})
	must(t, d.Remove("a"))
	if d.Exists("a") || slices.Contains(gdtest.PoolThinIDs(t, d), id) {
		t.Fatalf("layer or thin id %d left after Remove", id)
	}
}

// Without deferred removal and deletion, a leaked mount makes Remove fail
// at once with EBUSY — no retry loop — and leaves the layer whole; once the
// leak is gone Remove works and the thin device goes with it.
func TestLeakedMountWithoutDeferral(t *testing.T) {
	home := t.TempDir()
	d := newDriver(t, home, crashOptions())
	mustCreate(t, d, "a", "")
	writeFile(t, get(t, d, "a")+"/f", "still here", 0o644, 0, 0)
	l := leakMount(t, filepath.Join(home, "mnt", "a"), true)
	if err := d.Put("a"); !errors.Is(err, unix.EBUSY) {
		t.Fatalf("Put with the device open elsewhere: %v, want EBUSY from the deactivation", err)
	}
	if isMounted(t, filepath.Join(home, "mnt", "a")) {
		t.Fatal("still mounted here after Put")
	}
	id := thinIDOf(t, d, "a")
	start := time.Now()
	err := d.Remove("a")
	if !errors.Is(err, unix.EBUSY) || time.Since(start) > 2*time.Second {
		t.Fatalf("Remove with a leaked mount: %v after %v, want EBUSY at once", err, time.Since(start))
	}
	if !d.Exists("a") || !slices.Contains(gdtest.PoolThinIDs(t, d), id) {
		t.Fatal("a failed Remove lost the layer or its thin device")
	}
	l.end()
	eventually(t, "Remove after the leak ended", 10*time.Second, func() bool { return d.Remove("a") == nil })
	if d.Exists("a") || slices.Contains(gdtest.PoolThinIDs(t, d), id) {
		t.Fatalf("layer or thin id %d left after Remove", id)
	}
}

// Cleanup stops the deletion worker at once even with work pending; the
// layer stays marked on disk, and the next Init's worker deletes it.
func TestDeferredDeletionSurvivesRestart(t *testing.T) {
	home := t.TempDir()
	d := newDriver(t, home, walkOptions())
	mustCreate(t, d, "a", "")
	get(t, d, "a")
	l := leakMount(t, filepath.Join(home, "mnt", "a"), true)
	put(t, d, "a")
	id := thinIDOf(t, d, "a")
	must(t, d.Remove("a"))
	start := time.Now()
	_ = d.Cleanup() // the pool is still in use by the leaked device: an error is fine
	if took := time.Since(start); took > 5*time.Second {
		t.Fatalf("Cleanup with a deletion pending took %v", took)
	}
	var info struct {
		Deleted bool `json:"deleted"`
	}
	b, err := os.ReadFile(filepath.Join(home, "metadata", "a"))
	must(t, err)
	if must(t, json.Unmarshal(b, &info)); !info.Deleted {
		t.Fatal("pending deletion not recorded on disk")
	}
	l.end()
	d2 := newDriver(t, home, walkOptions())
	eventually(t, "deletion resumed by the next Init", 15*time.Second, func() bool { return !d2.Exists("a") })
	if slices.Contains(gdtest.PoolThinIDs(t, d2), id) {
		t.Fatalf("thin id %d still in the pool", id)
	}
}

// Regression: a layer marked deleted and then removed by a later Remove
// stayed queued in the worker, which then deleted a new layer made under
// the same id.
func TestDeferredDeletionSparesRecreatedLayer(t *testing.T) {
	home := t.TempDir()
	d := newDriver(t, home, walkOptions())
	mustCreate(t, d, "a", "")
	get(t, d, "a")
	must(t, d.Remove("a")) // mounted here: marked deleted
	put(t, d, "a")
	must(t, d.Remove("a")) // not busy any more: deleted now
	mustCreate(t, d, "a", "")
	writeFile(t, get(t, d, "a")+"/f", "new", 0o644, 0, 0)
	put(t, d, "a")
	if n := statusRow(d, "Deferred Deleted Device Count"); n != "0" {
		t.Fatalf("worker still holds %s deletions", n)
	}
	time.Sleep(1500 * time.Millisecond) // past the worker's first retry
	if b, err := os.ReadFile(get(t, d, "a") + "/f"); err != nil || string(b) != "new" {
		t.Fatalf("new layer a reads %q %v", b, err)
	}
	put(t, d, "a")
}
