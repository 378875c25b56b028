package devmapper_test

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	dm "github.com/thinlayer/thinlayer/devmapper"
	"github.com/thinlayer/thinlayer/testutil"
)

func TestMain(m *testing.M) { testutil.Main(m) }

const thinSize = dm.Sectors(512 << 11) // 512 MiB: mkfs.xfs wants 300 MB

func TestVersionAndTargets(t *testing.T) {
	testutil.RequireKernel(t)
	c := open(t)
	v, err := c.Version()
	if err != nil {
		t.Fatal(err)
	}
	if v[0] != 4 {
		t.Fatalf("ioctl version %v, want major 4", v)
	}
	for _, name := range []string{"thin-pool", "thin", "linear", "error"} {
		tv, ok, err := c.HasTarget(name)
		if err != nil || !ok {
			t.Fatalf("target %s: present=%v err=%v", name, ok, err)
		}
		t.Logf("ioctl %v, target %s %v", v, name, tv)
	}
}

func TestPoolStatus(t *testing.T) {
	pool := testutil.NewLoopPool(t, testutil.PoolOptions{DataSize: 1 << 30})
	st, err := pool.Control.PoolStatus(pool.Name, false)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode != dm.PoolModeReadWrite || st.TransactionID != 0 || st.NeedsCheck {
		t.Fatalf("fresh pool status %+v", st)
	}
	if want := dm.DataBlocks((1 << 30) / (128 * 512)); st.TotalDataBlocks != want || st.UsedDataBlocks != 0 {
		t.Fatalf("data blocks %d/%d, want 0/%d", st.UsedDataBlocks, st.TotalDataBlocks, want)
	}
	if st.TotalMetaBlocks != (64<<20)/4096 || st.UsedMetaBlocks == 0 {
		t.Fatalf("metadata blocks %d/%d", st.UsedMetaBlocks, st.TotalMetaBlocks)
	}
	table, err := pool.Control.Table(pool.Name)
	if err != nil {
		t.Fatal(err)
	}
	got, err := dm.ParseThinPool(table[0].Params)
	if err != nil || got.DataBlockSize != 128 || table[0].Length != dm.BytesToSectors(1<<30) {
		t.Fatalf("pool table %v parsed %+v err %v", table, got, err)
	}
}

func TestTransactionID(t *testing.T) {
	pool := testutil.NewLoopPool(t, testutil.PoolOptions{})
	c := pool.Control
	if err := c.SetTransactionID(pool.Name, 0, 7); err != nil {
		t.Fatal(err)
	}
	if err := c.SetTransactionID(pool.Name, 3, 8); !errors.Is(err, unix.EINVAL) {
		t.Fatalf("set_transaction_id from a stale id: %v, want EINVAL", err)
	}
	st, err := c.PoolStatus(pool.Name, false)
	if err != nil || st.TransactionID != 7 {
		t.Fatalf("transaction id %d (err %v), want 7", st.TransactionID, err)
	}
}

func TestThinIDErrors(t *testing.T) {
	pool := testutil.NewLoopPool(t, testutil.PoolOptions{})
	c := pool.Control
	if err := c.CreateThin(pool.Name, 1); err != nil {
		t.Fatal(err)
	}
	err := c.CreateThin(pool.Name, 1)
	if !errors.Is(err, unix.EEXIST) || !errors.Is(err, dm.ErrExists) {
		t.Fatalf("duplicate thin id: %v, want EEXIST", err)
	}
	if !strings.Contains(err.Error(), pool.Name) || !strings.Contains(err.Error(), "create_thin 1") {
		t.Fatalf("error %q does not name the pool and op", err)
	}
	err = c.DeleteThin(pool.Name, 99)
	if !errors.Is(err, unix.ENODATA) || !errors.Is(err, dm.ErrNoThinDevice) {
		t.Fatalf("delete of missing id: %v, want ENODATA", err)
	}
	if err := c.DeleteThin(pool.Name, 1); err != nil {
		t.Fatal(err)
	}
	if err := c.CreateThin(pool.Name, 1); err != nil {
		t.Fatalf("id 1 not free after delete: %v", err)
	}
	if _, err := c.Info("tl-no-such-device"); !errors.Is(err, dm.ErrNotFound) || !errors.Is(err, unix.ENXIO) {
		t.Fatalf("info of missing device: %v, want ENXIO", err)
	}
}

// The lifecycle a layer goes through: create_thin, activate, mkfs, mount,
// write, unmount, deactivate, delete — on both filesystems the driver uses.
func TestThinFilesystemLifecycle(t *testing.T) {
	pool := testutil.NewLoopPool(t, testutil.PoolOptions{})
	for i, fs := range []string{"ext4", "xfs"} {
		t.Run(fs, func(t *testing.T) {
			id := dm.ThinID(10 + i)
			name := fmt.Sprintf("%s-thin-%d", pool.Name, id)
			if err := pool.Control.CreateThin(pool.Name, id); err != nil {
				t.Fatal(err)
			}
			info := pool.Activate(t, name, id, thinSize)
			mkfs(t, fs, info.Path())
			dir := t.TempDir()
			if err := unix.Mount(info.Path(), dir, fs, 0, ""); err != nil {
				t.Fatalf("mount %s: %v", info.Path(), err)
			}
			payload := bytes.Repeat([]byte("thinlayer"), 100000)
			if err := os.WriteFile(dir+"/f", payload, 0o644); err != nil {
				t.Fatal(err)
			}
			if err := unix.Unmount(dir, 0); err != nil {
				t.Fatal(err)
			}
			st, err := pool.Control.ThinDeviceStatus(name)
			if err != nil || st.MappedSectors < dm.BytesToSectors(uint64(len(payload))) {
				t.Fatalf("thin status %+v err %v: fewer sectors mapped than written", st, err)
			}
			if err := pool.Control.Remove(name, 0); err != nil {
				t.Fatal(err)
			}
			if _, err := os.Stat(info.Path()); !errors.Is(err, os.ErrNotExist) && pool.Control.UdevMode() == dm.UdevOff {
				t.Fatalf("node %s left after remove: %v", info.Path(), err)
			}
			if err := pool.Control.DeleteThin(pool.Name, id); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestSnapshotOfActiveOrigin(t *testing.T) {
	pool := testutil.NewLoopPool(t, testutil.PoolOptions{})
	c := pool.Control
	if err := c.CreateThin(pool.Name, 1); err != nil {
		t.Fatal(err)
	}
	origin := pool.Activate(t, pool.Name+"-origin", 1, thinSize)
	poolInfo, err := c.Info(pool.Name)
	if err != nil {
		t.Fatal(err)
	}
	if deps, err := c.Deps(origin.Name); err != nil || len(deps) != 1 || deps[0] != poolInfo.Dev() {
		t.Fatalf("deps of a thin device: %v %v, want [%d] (the pool)", deps, err, poolInfo.Dev())
	}
	writeAt(t, origin.Path(), 4096, []byte("origin data"))
	// An active origin must be suspended around create_snap so that its
	// written blocks are in the snapshot; resume it whatever happens.
	if err := c.Suspend(origin.Name, 0); err != nil {
		t.Fatal(err)
	}
	snapErr := c.CreateSnap(pool.Name, 2, 1)
	if err := c.Resume(origin.Name, 0); err != nil {
		t.Fatal(err)
	}
	if snapErr != nil {
		t.Fatal(snapErr)
	}
	if info, _ := c.Info(origin.Name); info.Suspended {
		t.Fatal("origin still suspended")
	}
	snap := pool.Activate(t, pool.Name+"-snap", 2, thinSize)
	if got := readAt(t, snap.Path(), 4096, 11); string(got) != "origin data" {
		t.Fatalf("snapshot reads %q, want the origin's data", got)
	}
	writeAt(t, snap.Path(), 4096, []byte("snap data!!"))
	if got := readAt(t, origin.Path(), 4096, 11); string(got) != "origin data" {
		t.Fatalf("origin reads %q after a write to the snapshot", got)
	}
	if got := readAt(t, snap.Path(), 4096, 11); string(got) != "snap data!!" {
		t.Fatalf("snapshot reads %q after its own write", got)
	}
}

func TestRemoveBusyAndDeferred(t *testing.T) {
	pool := testutil.NewLoopPool(t, testutil.PoolOptions{})
	c := pool.Control
	if err := c.CreateThin(pool.Name, 1); err != nil {
		t.Fatal(err)
	}
	info := pool.Activate(t, pool.Name+"-busy", 1, thinSize)
	f, err := os.Open(info.Path())
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	err = c.Remove(info.Name, 0)
	if !errors.Is(err, unix.EBUSY) || !errors.Is(err, dm.ErrBusy) || !strings.Contains(err.Error(), info.Name) {
		t.Fatalf("remove of an open device: %v, want EBUSY naming the device", err)
	}
	deferred, err := c.RemoveDeferred(info.Name, 0)
	if err != nil || !deferred {
		t.Fatalf("deferred remove: deferred=%v err=%v", deferred, err)
	}
	if got, _ := c.Info(info.Name); !got.DeferredRemove {
		t.Fatalf("info after deferred remove: %+v, want DeferredRemove", got)
	}
	if err := c.CancelDeferredRemove(info.Name); err != nil {
		t.Fatalf("cancel: %v", err)
	}
	if got, _ := c.Info(info.Name); got.DeferredRemove {
		t.Fatal("deferred remove still pending after cancel")
	}
	if err := c.CancelDeferredRemove(info.Name); err != nil {
		t.Fatalf("cancel with nothing pending: %v, want success (the kernel's answer)", err)
	}
	if err := c.CancelDeferredRemove("tl-no-such-device"); !errors.Is(err, dm.ErrNotFound) {
		t.Fatalf("cancel on a missing device: %v, want ENXIO", err)
	}
	if _, err := c.RemoveDeferred(info.Name, 0); err != nil {
		t.Fatal(err)
	}
	// The last close completes the removal, in a kernel workqueue: wait
	// for the device's remove uevent (the name is unhashed before it).
	w := watchUevents(t)
	f.Close()
	w.waitRemove(t, info.Minor, 30*time.Second)
	if ok, err := c.Exists(info.Name); ok || err != nil {
		t.Fatalf("device still there after last close (exists=%v err=%v)", ok, err)
	}
}

func TestListManyDevices(t *testing.T) {
	testutil.RequireKernel(t)
	c := open(t)
	const n = 320
	prefix := fmt.Sprintf("tltest-%d-list-", os.Getpid())
	for i := 0; i < n; i++ {
		name := fmt.Sprintf("%s%03d", prefix, i)
		if _, err := c.Create(name, "TLTEST-"+name); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Remove(name, 0) })
	}
	devs, err := c.List()
	if err != nil {
		t.Fatal(err)
	}
	seen := 0
	for _, d := range devs {
		if strings.HasPrefix(d.Name, prefix) {
			seen++
			if d.UUID != "TLTEST-"+d.Name {
				t.Fatalf("device %s has uuid %q", d.Name, d.UUID)
			}
		}
	}
	if seen != n {
		t.Fatalf("listed %d of our %d devices", seen, n)
	}
}

func TestRenameAndTable(t *testing.T) {
	testutil.RequireKernel(t)
	c := open(t)
	name := fmt.Sprintf("tltest-%d-err", os.Getpid())
	if _, err := c.CreateAndLoad(name, "", []dm.TableLine{dm.Line(0, 2048, dm.ErrorTarget{})}, 0); err != nil {
		t.Fatal(err)
	}
	if err := c.SetUUID(name, "TLTEST-UUID-"+name); err != nil {
		t.Fatal(err)
	}
	if info, err := c.Info(name); err != nil || info.UUID != "TLTEST-UUID-"+name {
		t.Fatalf("uuid after SetUUID: %+v %v", info, err)
	}
	renamed := name + "-renamed"
	if err := c.Rename(name, renamed); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Remove(renamed, 0) })
	if ok, _ := c.Exists(name); ok {
		t.Fatal("old name still exists")
	}
	table, err := c.Table(renamed)
	if err != nil || len(table) != 1 || table[0].Type != "error" || table[0].Length != 2048 {
		t.Fatalf("table %v err %v", table, err)
	}
	if _, err := os.Stat(dm.DevicePath(renamed)); err != nil {
		t.Fatalf("node for renamed device: %v", err)
	}
}

func BenchmarkActivateDeactivate(b *testing.B) {
	pool := testutil.NewLoopPool(b, testutil.PoolOptions{})
	if err := pool.Control.CreateThin(pool.Name, 1); err != nil {
		b.Fatal(err)
	}
	table := []dm.TableLine{dm.Line(0, thinSize, dm.Thin{PoolDev: pool.Path(), DeviceID: 1})}
	name := pool.Name + "-bench"
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := pool.Control.CreateAndLoad(name, "", table, 0); err != nil {
			b.Fatal(err)
		}
		if err := pool.Control.Remove(name, 0); err != nil {
			b.Fatal(err)
		}
	}
}
