package graphdriver_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"

	"github.com/thinlayer/thinlayer/deviceset"
	dm "github.com/thinlayer/thinlayer/devmapper"
)

// A read-only open mounts read-only whatever dm.mountopt holds and whatever
// state a read-write open left the layer's device in: the mount is ro in
// the kernel's flags, its device is read-only, and a write fails with
// EROFS. (An unbalanced quote in dm.mountopt used to swallow the appended
// ",ro", and a device left active read-write was mounted from its rw table.)

// hostileMountOptions would each turn a read-only open's mount read-write
// (or into something else) if passed to mount(2) as text.
func hostileMountOptions() map[string]string {
	// 511 "discard," and "discard" are 4095 bytes: the kernel copies one
	// page of mount data and cuts it there, after the ro a quote hid.
	pad := strings.Repeat("discard,", 511) + "discard"
	return map[string]string{
		"benign":         "discard",
		"quote-swallows": `discard,"`,
		"quote-page-cut": pad + `,"`,
		"rw":             "rw",
		"remount":        "remount",
		"bind":           "bind",
		"private":        "rprivate",
	}
}

func TestReadOnlyOpenMountsReadOnly(t *testing.T) {
	home := t.TempDir()
	cfg, err := deviceset.ParseOptions(testOptions("ext4"))
	must(t, err)
	ds, err := deviceset.New(home, cfg)
	must(t, err)
	must(t, ds.AddDevice("a", "", nil))
	must(t, ds.AddDevice("busy", "", nil))
	must(t, ds.Shutdown())
	t.Cleanup(func() { // the pool a writer's Release left up
		if ds, err := deviceset.New(home, cfg); err == nil {
			_ = ds.Shutdown()
		}
	})

	for name, opts := range hostileMountOptions() {
		t.Run(name, func(t *testing.T) {
			leaveActiveRW(t, home, cfg, "a", false)
			c := cfg
			c.MountOptions = opts
			ro, err := deviceset.Open(home, c, deviceset.OpenOptions{ReadOnly: true})
			if err != nil {
				if name == "benign" {
					t.Fatalf("read-only open with dm.mountopt=%q: %v", opts, err)
				}
				t.Logf("refused at Open: %v", err)
				return
			}
			defer func() { must(t, ro.Shutdown()) }()
			mnt := t.TempDir()
			if err := ro.MountDevice("a", mnt, ""); err != nil {
				if name == "benign" {
					t.Fatalf("MountDevice: %v", err)
				}
				t.Logf("refused at mount: %v", err)
				return
			}
			defer func() { must(t, ro.UnmountDevice("a", mnt)) }()
			checkReadOnlyMount(t, ro, "a", mnt)
		})
	}

	// A device still mounted read-write elsewhere is not remounted from a
	// read-only open (nor reloaded under that mount): refused.
	t.Run("open-rw-elsewhere", func(t *testing.T) {
		rwMnt := leaveActiveRW(t, home, cfg, "busy", true)
		defer func() { must(t, unix.Unmount(rwMnt, unix.MNT_DETACH)) }()
		ro, err := deviceset.Open(home, cfg, deviceset.OpenOptions{ReadOnly: true})
		must(t, err)
		defer func() { _ = ro.Shutdown() }()
		mnt := t.TempDir()
		if err := ro.MountDevice("busy", mnt, ""); !errors.Is(err, deviceset.ErrReadOnly) {
			if err == nil {
				defer func() { _ = ro.UnmountDevice("busy", mnt) }()
				checkReadOnlyMount(t, ro, "busy", mnt)
			}
			t.Errorf("read-only open's mount of a device open read-write elsewhere: %v, want ErrReadOnly", err)
		}
		if b, err := os.ReadFile(filepath.Join(rwMnt, "f")); err != nil || string(b) != "rw" {
			t.Errorf("the read-write mount elsewhere reads %q %v", b, err)
		}
		if err := os.WriteFile(filepath.Join(rwMnt, "g"), []byte("still writable"), 0o644); err != nil {
			t.Errorf("the read-write mount elsewhere was broken: %v", err)
		}
	})
}

// leaveActiveRW mounts hash read-write from a writer's open, writes a file
// and lets go of the home leaving the device active (and, with keepMount,
// mounted; otherwise unmounted behind the DeviceSet's back). It returns the
// mount point.
func leaveActiveRW(t *testing.T, home string, cfg deviceset.Config, hash string, keepMount bool) string {
	t.Helper()
	ds, err := deviceset.New(home, cfg)
	must(t, err)
	mnt := t.TempDir()
	must(t, ds.MountDevice(hash, mnt, ""))
	must(t, os.WriteFile(filepath.Join(mnt, "f"), []byte("rw"), 0o644))
	ds.Release()
	if !keepMount {
		must(t, unix.Unmount(mnt, 0))
	}
	c, err := dm.Open()
	must(t, err)
	defer c.Close()
	name := deviceName(t, home, hash)
	if info, err := c.Info(name); err != nil || info.ReadOnly {
		t.Fatalf("setup: %s should be active read-write: %+v %v", name, info, err)
	}
	return mnt
}

func deviceName(t *testing.T, home, hash string) string {
	t.Helper()
	prefix, err := deviceset.DevicePrefix(home)
	must(t, err)
	return prefix + "-" + hash
}

// checkReadOnlyMount: mnt is read-only in the kernel's mount and superblock
// flags, hash's device is read-only, and a write fails with EROFS.
func checkReadOnlyMount(t *testing.T, ds *deviceset.DeviceSet, hash, mnt string) {
	t.Helper()
	ms, err := mountinfo.GetMounts(mountinfo.SingleEntryFilter(mnt))
	must(t, err)
	if len(ms) != 1 {
		t.Fatalf("%d mounts on %s", len(ms), mnt)
	}
	m := ms[0]
	if !hasOpt(m.Options, "ro") || !hasOpt(m.VFSOptions, "ro") || m.FSType != "ext4" {
		t.Errorf("mount of a read-only open: type %s, mount options %q, superblock options %q; want ext4, ro and ro",
			m.FSType, m.Options, m.VFSOptions)
	}
	md, err := ds.Metadata(hash)
	must(t, err)
	c, err := dm.Open()
	must(t, err)
	defer c.Close()
	if info, err := c.Info(md.DeviceName); err != nil || !info.ReadOnly {
		t.Errorf("device %s of a read-only open's mount: %+v %v, want read-only", md.DeviceName, info, err)
	}
	if err := os.WriteFile(filepath.Join(mnt, "new"), nil, 0o644); !errors.Is(err, unix.EROFS) {
		t.Errorf("write to a read-only open's mount: %v, want EROFS", err)
	}
}

func hasOpt(opts, opt string) bool {
	for _, o := range strings.Split(opts, ",") {
		if o == opt {
			return true
		}
	}
	return false
}
