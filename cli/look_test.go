package cli_test

import (
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/thinlayer/thinlayer/cli"
	"github.com/thinlayer/thinlayer/deviceset"
)

// status gives the rows the driver's Status gives, and the pool's usage as
// the kernel reports it.
func TestStatusMatchesDriver(t *testing.T) {
	h := newHome(t)
	d := openDriver(t, h)
	driverRows := d.Status()
	closeDriver(t, d)

	r, err := h.Status()
	must(t, err)
	var keys, driverKeys []string
	for _, row := range r.Driver {
		keys = append(keys, row.Key)
	}
	for _, row := range driverRows {
		driverKeys = append(driverKeys, row[0])
	}
	if !slices.Equal(keys, driverKeys) {
		t.Fatalf("status rows\n %q\nthe driver's\n %q", keys, driverKeys)
	}
	for i, row := range driverRows {
		switch row[0] {
		case "Pool Name", "Pool Blocksize", "Base Device Size", "Backing Filesystem", "Data loop file",
			"Metadata loop file", "Data Space Total", "Metadata Space Total", "Library Version":
			if r.Driver[i].Value != row[1] {
				t.Errorf("%s: %q, the driver says %q", row[0], r.Driver[i].Value, row[1])
			}
		}
	}
	p := r.Pool
	if p.DataTotal != 1<<30 || p.MetadataTotal != 16<<20 {
		t.Errorf("pool sizes %d/%d, want the 1GB/16MB the options gave", p.DataTotal, p.MetadataTotal)
	}
	if p.DataUsed < 4<<20 || p.DataPercent <= 0 || p.DataPercent > 100 {
		t.Errorf("data used %d (%.1f%%): the home holds at least 4 MiB", p.DataUsed, p.DataPercent)
	}
	// The pool was down: the look brought it up read-only.
	if p.Mode != "ro" || !p.ReadOnlyTable {
		t.Errorf("pool mode %q, read-only table %v", p.Mode, p.ReadOnlyTable)
	}
}

// ls lists every layer with the thin id its DevInfo holds and the space
// the pool maps for it; the layer with 4 MiB of its own has that much
// exclusive space.
func TestListLayers(t *testing.T) {
	h := newHome(t)
	d := openDriver(t, h)
	ids := map[string]string{}
	for _, id := range []string{"img", "mod", "ctr"} {
		m, err := d.GetMetadata(id)
		must(t, err)
		ids[id] = m["DeviceId"]
	}
	closeDriver(t, d)

	l, err := h.List()
	must(t, err)
	if l.Warning != "" {
		t.Fatalf("warning: %s", l.Warning)
	}
	got := map[string]cli.Layer{}
	for _, x := range l.Layers {
		got[x.ID] = x
	}
	if names := slices.Sorted(maps.Keys(got)); !slices.Equal(names, []string{"base", "ctr", "img", "mod"}) {
		t.Fatalf("layers %q", names)
	}
	for id, devID := range ids {
		x := got[id]
		if x.Mapped == nil || x.Exclusive == nil || x.Shared == nil || x.Active || x.Deleted || x.Missing {
			t.Fatalf("layer %s: %+v", id, x)
		}
		if devID != x.DeviceID.String() {
			t.Errorf("layer %s: thin id %d, the driver says %s", id, x.DeviceID, devID)
		}
		if *x.Mapped != *x.Exclusive+*x.Shared || *x.Mapped == 0 {
			t.Errorf("layer %s: mapped %d != exclusive %d + shared %d", id, *x.Mapped, *x.Exclusive, *x.Shared)
		}
	}
	if ex := *got["ctr"].Exclusive; ex < 4<<20 || ex > 6<<20 {
		t.Errorf("ctr holds 4 MiB of its own, exclusive %d", ex)
	}
	if ex := *got["img"].Exclusive; ex > 1<<20 {
		t.Errorf("img shares nearly all with mod, exclusive %d", ex)
	}
	must(t, cli.SortLayers(l.Layers, "exclusive", false))
	if l.Layers[0].ID != "ctr" {
		t.Errorf("sorted by exclusive space: %s first", l.Layers[0].ID)
	}
	rc, out, errOut := run(t, nil, "ls", "--home", h.Dir, "--json", "--sort", "device")
	var js cli.Listing
	decode(t, out, &js)
	if rc != 0 || len(js.Layers) != 4 || js.Layers[0].ID != "base" && js.Layers[0].DeviceID > js.Layers[1].DeviceID {
		t.Fatalf("ls --json: rc %d, %+v, stderr %s", rc, js.Layers, errOut)
	}
	rc, out, _ = run(t, nil, "ls", "--home", h.Dir)
	if rc != 0 || !strings.Contains(out, "THIN-ID") || strings.Count(out, "\n") != 5 {
		t.Fatalf("ls: rc %d\n%s", rc, out)
	}
}

// Read-only commands leave the home's files and the pool's metadata byte
// for byte as they were, and take down the pool they brought up.
func TestReadOnlyCommandsChangeNothing(t *testing.T) {
	h := newHome(t)
	before := homeDigest(t, h.Dir)
	for _, args := range [][]string{
		{"status"}, {"ls"}, {"check"}, {"gc", "--dry-run"}, {"export", "mod", "--parent", "img", "-o", t.TempDir() + "/x.tar"},
	} {
		rc, _, errOut := run(t, nil, append(args, "--home", h.Dir)...)
		if rc != 0 {
			t.Fatalf("%v: rc %d: %s", args, rc, errOut)
		}
		if left := activeDevices(t, h.Dir); len(left) > 0 {
			t.Fatalf("%v left active: %v", args, left)
		}
	}
	after := homeDigest(t, h.Dir)
	if !maps.Equal(before, after) {
		t.Fatalf("the home changed:\n before %v\n after  %v", before, after)
	}
}

// A read-only command on a home a live engine holds is refused by the
// home lock; and so is a writing one.
func TestHomeLockKeepsCommandsOut(t *testing.T) {
	h := newHome(t)
	d := openDriver(t, h)
	for _, args := range [][]string{{"status"}, {"ls"}, {"check"}, {"gc"}, {"import", "x"}} {
		rc, _, errOut := run(t, strings.NewReader(""), append(args, "--home", h.Dir)...)
		if rc != cli.ExitProblems || !strings.Contains(errOut, "in use by another process") || !strings.Contains(errOut, "what to do:") {
			t.Errorf("%v on a home in use: rc %d, %s", args, rc, errOut)
		}
	}
	if !d.Exists("ctr") {
		t.Fatal("layer gone")
	}
	closeDriver(t, d)
}

// Read-only commands leave a home in use as they found it: a layer an
// engine that takes no home lock (Moby's driver) has mounted under
// <home>/mnt stays mounted and active through status, ls, check and an
// export of another layer.
func TestLooksLeaveEngineMounts(t *testing.T) {
	h := newHome(t)
	cfg, err := deviceset.ParseOptions(h.StorageOpts)
	must(t, err)
	ds, err := deviceset.New(h.Dir, cfg)
	must(t, err)
	mp := filepath.Join(h.Dir, "mnt", "ctr")
	must(t, os.MkdirAll(mp, 0o755))
	must(t, ds.MountDevice("ctr", mp, ""))
	t.Cleanup(func() { _ = unix.Unmount(mp, unix.MNT_DETACH) })
	ds.Release() // as Moby's driver: mounted, no lock held
	for _, args := range [][]string{{"status"}, {"ls"}, {"check"}, {"export", "mod", "-o", filepath.Join(t.TempDir(), "x.tar")}} {
		if rc, _, errOut := run(t, nil, append(args, "--home", h.Dir)...); rc != 0 {
			t.Errorf("%v: rc %d: %s", args, rc, errOut)
		}
		if m, _ := isMounted(mp); !m {
			t.Fatalf("%v unmounted the engine's mount %s", args, mp)
		}
		if _, err := os.Stat(filepath.Join(mp, "rootfs", "data.bin")); err != nil {
			t.Fatalf("after %v: %v", args, err)
		}
	}
}
