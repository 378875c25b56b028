package snapshotter_test

import (
	"bytes"
	"errors"
	"fmt"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	dm "github.com/thinlayer/thinlayer/devmapper"
	"github.com/thinlayer/thinlayer/snapshotter"
)

// TestUsageExcludesParent: containerd's Usage is what a snapshot uses
// beyond its parent. A parent holds a 32 MiB file, its child adds 8 KiB:
// the child's usage is the blocks it changed (the small file, the
// filesystem's metadata and journal it touched), not the parent's 32 MiB
// again — and equal, block for block, to what thin_delta reports between
// the two thin devices; the parent's is what it adds over the base.
func TestUsageExcludesParent(t *testing.T) {
	s := newSnapshotter(t, "ext4")
	const big, small = 32 << 20, 8 << 10

	m, err := s.Prepare(ctx, "p", "")
	if err != nil {
		t.Fatal(err)
	}
	pLayer := ourLayers(t, s)[0]
	dir := mountSpec(t, m)
	writeFile(t, dir, "big", string(bytes.Repeat([]byte("parent's data "), big/14)))
	unmount(t, dir)
	if err := s.Commit(ctx, "P", "p"); err != nil {
		t.Fatal(err)
	}

	if m, err = s.Prepare(ctx, "c", "P"); err != nil {
		t.Fatal(err)
	}
	cLayer := newLayer(t, s, pLayer)
	dir = mountSpec(t, m)
	writeFile(t, dir, "small", string(bytes.Repeat([]byte("c"), small)))
	unix.Sync()
	active := usage(t, s, "c") // active and mounted
	checkUsageWithoutMetadataSnapshot(t, s, big)
	unmount(t, dir)
	if err := s.Commit(ctx, "C", "c"); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	child := usage(t, s, "C")
	took := time.Since(start)
	parent := usage(t, s, "P")
	t.Logf("usage: parent %d bytes, child %d (%d while active and mounted); one Usage call %v",
		parent.Size, child.Size, active.Size, took.Round(time.Microsecond))

	if child.Size < small || child.Size > 4<<20 {
		t.Errorf("child's usage %d bytes: want the 8 KiB file and the metadata it touched, under 4 MiB (the parent holds %d MiB)",
			child.Size, big>>20)
	}
	if active.Size < small || active.Size > child.Size {
		t.Errorf("active child's usage %d bytes, committed %d: want 8 KiB up to the committed one", active.Size, child.Size)
	}
	if parent.Size < big || parent.Size > big+8<<20 {
		t.Errorf("parent's usage %d bytes: want the 32 MiB file and the metadata it touched over the base", parent.Size)
	}
	base, err := s.DeviceSet().Info("")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		key           string
		got           int64
		parent, layer string
	}{{"C", child.Size, pLayer, cLayer}, {"P", parent.Size, "", pLayer}} {
		want := thinDeltaAdded(t, s, thinID(t, s, c.parent), thinID(t, s, c.layer))
		if c.got != want {
			t.Errorf("usage of %s: %d bytes, thin_delta says %d over its parent (thin id %d; base %d)",
				c.key, c.got, want, thinID(t, s, c.parent), base.DeviceID)
		}
	}
	if u := usage(t, s, "C"); u.Inodes != 0 {
		t.Errorf("usage of C: %d inodes, want 0 (not counted for block devices)", u.Inodes)
	}
}

// checkUsageWithoutMetadataSnapshot: while another tool holds the pool's
// one metadata snapshot, the active snapshot "c" still answers (CRI polls
// the usage of every snapshot) with its thin device's mapped bytes, its parent's
// included; the committed "P", whose device is not active, fails with
// EBUSY.
func checkUsageWithoutMetadataSnapshot(t *testing.T, s *snapshotter.Snapshotter, parentBytes int64) {
	t.Helper()
	c, err := dm.Open()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	pool := s.DeviceSet().PoolName()
	if err := c.ReserveMetadataSnap(pool); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := c.ReleaseMetadataSnap(pool); err != nil {
			t.Error(err)
		}
	}()
	if u, err := s.Usage(ctx, "c"); err != nil || u.Size < parentBytes {
		t.Errorf("Usage(c) while the metadata snapshot is taken: %+v, %v; want all its mapped bytes (over %d)", u, err, parentBytes)
	}
	if _, err := s.Usage(ctx, "P"); !errors.Is(err, unix.EBUSY) {
		t.Errorf("Usage(P) while the metadata snapshot is taken: %v, want EBUSY", err)
	}
}

func usage(t *testing.T, s *snapshotter.Snapshotter, key string) snapshotter.Usage {
	t.Helper()
	u, err := s.Usage(ctx, key)
	if err != nil {
		t.Fatalf("Usage(%s): %v", key, err)
	}
	return u
}

// newLayer is the one layer of s other than those in old.
func newLayer(t *testing.T, s *snapshotter.Snapshotter, old ...string) string {
	t.Helper()
	l := slices.DeleteFunc(ourLayers(t, s), func(h string) bool { return slices.Contains(old, h) })
	if len(l) != 1 {
		t.Fatalf("new layers %v, want one", l)
	}
	return l[0]
}

func thinID(t *testing.T, s *snapshotter.Snapshotter, layer string) dm.ThinID {
	t.Helper()
	info, err := s.DeviceSet().Info(layer)
	if err != nil {
		t.Fatal(err)
	}
	return info.DeviceID
}

var deltaChanged = regexp.MustCompile(`<(different|right_only) begin="\d+" length="(\d+)"/>`)

// thinDeltaAdded runs thin_delta on a metadata snapshot of the live pool
// and returns the bytes of the blocks right maps differently from left
// or alone.
func thinDeltaAdded(t *testing.T, s *snapshotter.Snapshotter, left, right dm.ThinID) int64 {
	t.Helper()
	st, err := s.DeviceSet().Status()
	if err != nil {
		t.Fatal(err)
	}
	c, err := dm.Open()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.ReserveMetadataSnap(st.PoolName); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := c.ReleaseMetadataSnap(st.PoolName); err != nil {
			t.Error(err)
		}
	}()
	out, err := exec.Command("thin_delta", "-m", "--snap1", fmt.Sprint(left), "--snap2", fmt.Sprint(right), st.MetadataFile).CombinedOutput()
	if err != nil {
		t.Fatalf("thin_delta on %s: %v\n%s", st.MetadataFile, err, out)
	}
	var blocks int64
	for _, m := range deltaChanged.FindAllSubmatch(out, -1) {
		n, err := strconv.ParseInt(string(m[2]), 10, 64)
		if err != nil {
			t.Fatal(err)
		}
		blocks += n
	}
	t.Logf("thin_delta %d → %d: %d blocks changed or added", left, right, blocks)
	return blocks * int64(st.PoolBlockSize)
}
