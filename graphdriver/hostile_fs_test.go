package graphdriver_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/moby/sys/mountinfo"

	"github.com/thinlayer/thinlayer/deviceset"
	gd "github.com/thinlayer/thinlayer/graphdriver"
	"github.com/thinlayer/thinlayer/graphdriver/internal/gdtest"
)

// The home record's BaseDeviceFilesystem is input: a layer is only ever
// mounted as the filesystem its device's superblock holds, and only if
// that is one the driver makes (xfs, ext4). A record naming anything else
// (tmpfs would take every write) is refused with an error naming the
// record; a record left empty is probed, as Moby does.

// fsRecordCase sets BaseDeviceFilesystem to fs (the base is ext4).
type fsRecordCase struct {
	fs       string
	breakIt  func(t *testing.T, h *metaHome) // more damage, or nil
	refused  bool                            // Init (or, without it, Get) must refuse
	initWork bool                            // with refused: Init works, Get refuses
}

func fsRecordCases() map[string]fsRecordCase {
	noBase := func(t *testing.T, h *metaHome) { writeMeta(t, h, "base", "[]") }
	return map[string]fsRecordCase{
		"tmpfs":          {fs: "tmpfs", refused: true},
		"btrfs":          {fs: "btrfs", refused: true},
		"garbage":        {fs: "none,size=1\x00", refused: true},
		"proc":           {fs: "proc", refused: true},
		"mismatch-xfs":   {fs: "xfs", refused: true},
		"ext2":           {fs: "ext2", refused: true},
		"tmpfs-no-base":  {fs: "tmpfs", breakIt: noBase, refused: true, initWork: true},
		"empty-probed":   {fs: ""},
		"ext4":           {fs: "ext4"},
		"ext4-no-base":   {fs: "ext4", breakIt: noBase},
		"mismatch-nobas": {fs: "xfs", breakIt: noBase, refused: true, initWork: true},
	}
}

func TestHostileBaseFilesystemRecord(t *testing.T) {
	template := t.TempDir()
	d := newDriver(t, template, walkOptions())
	mustCreate(t, d, "keep", "")
	writeFile(t, get(t, d, "keep")+"/data", "precious", 0o644, 0, 0)
	put(t, d, "keep")
	must(t, d.Cleanup())
	for name, c := range fsRecordCases() {
		t.Run(name, func(t *testing.T) {
			h := &metaHome{home: t.TempDir(), outside: newOutside(t)}
			must(t, gdtest.CopyTree(template, h.home))
			editMeta(t, h, "deviceset-metadata", func(m map[string]any) { m["BaseDeviceFilesystem"] = c.fs })
			if c.breakIt != nil {
				c.breakIt(t, h)
			}
			record := metaFile(h, "deviceset-metadata")
			d, err := gd.Init(h.home, walkOptions(), gd.IdentityMapping{})
			if c.refused && !c.initWork {
				if err == nil {
					defer d.Cleanup()
					_, gerr := d.Get("keep", "")
					t.Fatalf("Init with BaseDeviceFilesystem %q worked (Get: %v); want it refused naming %s", c.fs, gerr, record)
				}
				if !strings.Contains(err.Error(), record) || !strings.Contains(err.Error(), "BaseDeviceFilesystem") {
					t.Errorf("Init's error %q does not name the record %s and its field", err, record)
				}
				checkNoDevicesLeft(t)
				checkReadOnlyOpenRefuses(t, h, c.fs, record)
				return
			}
			if err != nil {
				t.Fatalf("Init: %v", err)
			}
			defer func() { must(t, d.Cleanup()) }()
			if c.refused {
				_, err := d.Get("keep", "")
				if err == nil {
					put(t, d, "keep")
					t.Fatalf("Get with BaseDeviceFilesystem %q worked", c.fs)
				}
				if !strings.Contains(err.Error(), record) || !strings.Contains(err.Error(), "BaseDeviceFilesystem") {
					t.Errorf("Get's error %q does not name the record %s and its field", err, record)
				}
				return
			}
			writesPersist(t, d, "keep")
		})
	}
}

// writesPersist: the layer mounts as ext4, its data is there, and a write
// survives Put and Get.
func writesPersist(t *testing.T, d gd.Driver, id string) {
	t.Helper()
	root := get(t, d, id)
	ms, err := mountinfo.GetMounts(mountinfo.SingleEntryFilter(filepath.Dir(root)))
	must(t, err)
	if len(ms) != 1 || ms[0].FSType != "ext4" {
		t.Fatalf("layer mounted as %+v, want ext4", ms)
	}
	if got := readFileString(t, root+"/data"); got != "precious" {
		t.Fatalf("data reads %q", got)
	}
	writeFile(t, root+"/new", "kept", 0o644, 0, 0)
	put(t, d, id)
	if got := readFileString(t, get(t, d, id)+"/new"); got != "kept" {
		t.Fatalf("a write did not survive Put and Get: %q", got)
	}
	put(t, d, id)
}

// checkReadOnlyOpenRefuses: a read-only open (which does not look at the
// base) refuses to mount a layer under the broken record too.
func checkReadOnlyOpenRefuses(t *testing.T, h *metaHome, fs, record string) {
	t.Helper()
	cfg, err := deviceset.ParseOptions(walkOptions())
	must(t, err)
	ro, err := deviceset.Open(h.home, cfg, deviceset.OpenOptions{ReadOnly: true})
	must(t, err)
	defer func() { must(t, ro.Shutdown()) }()
	mnt := t.TempDir()
	err = ro.MountDevice("keep", mnt, "")
	if err == nil {
		_ = ro.UnmountDevice("keep", mnt)
		t.Fatalf("read-only open mounted a layer with BaseDeviceFilesystem %q", fs)
	}
	if !strings.Contains(err.Error(), record) || errors.Is(err, os.ErrNotExist) {
		t.Errorf("read-only open's mount error %q does not name %s", err, record)
	}
}
