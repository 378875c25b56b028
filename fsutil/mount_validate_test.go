package fsutil

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func TestValidateMountOptions(t *testing.T) {
	ok := []string{"", "discard", "discard,noatime", "nouuid,inode64,logbsize=256k", "errors=remount-ro",
		"data=ordered,commit=5", "ro", "nodev,nosuid,noexec", "context=system_u:object_r:container_file_t:s0",
		"prjquota", "allocsize=64k", strings.Repeat("discard,", 255) + "discard"}
	for _, s := range ok {
		if err := ValidateMountOptions(s); err != nil {
			t.Errorf("ValidateMountOptions(%q): %v", s, err)
		}
	}
	bad := []string{`discard,"`, `"`, `context="a:b:c:s0:c1,c2"`, `x'`, ",discard", "discard,", "discard,,noatime",
		",", "rw", "RW", "remount", "bind", "rbind", "move", "private", "rprivate", "shared", "rshared",
		"slave", "rslave", "unbindable", "runbindable", "discard,rw", "a b", "a\x00b", "a\nb", `a\b`, "é",
		strings.Repeat("discard,", 511) + "discard"}
	for _, s := range bad {
		if err := ValidateMountOptions(s); !errors.Is(err, ErrMountOption) {
			t.Errorf("ValidateMountOptions(%q) = %v, want ErrMountOption", s, err)
		}
	}
}

// MountLayerReadOnly is read-only by mount(2)'s flag: no option text
// undoes it, and options that would are refused before any mount.
func TestMountLayerReadOnly(t *testing.T) {
	loop := newFSOnLoop(t, FSTypeExt4, 64<<20)
	target := mkdirTarget(t, "mnt")
	for _, opts := range []string{`discard,"`, strings.Repeat("discard,", 511) + `discard,"`, "rw", "remount", "bind"} {
		if err := MountLayerReadOnly(loop.Path, target, FSTypeExt4, opts, ""); !errors.Is(err, ErrMountOption) {
			t.Errorf("MountLayerReadOnly with %.40q: %v, want ErrMountOption", opts, err)
		}
		if mounted, _ := IsMounted(target); mounted {
			t.Fatalf("options %.40q mounted something", opts)
		}
	}
	if err := MountLayerReadOnly(loop.Path, target, FSTypeExt4, "", `x",rw,"`); !errors.Is(err, ErrMountOption) {
		t.Errorf("a mount label with a quote: %v", err)
	}
	if err := MountLayerReadOnly(loop.Path, target, FSTypeExt4, "discard,noatime", ""); err != nil {
		t.Fatalf("MountLayerReadOnly: %v", err)
	}
	defer func() {
		if err := Unmount(target, unix.MNT_DETACH); err != nil {
			t.Error(err)
		}
	}()
	m := onlyMountOf(t, loop)
	if !hasOption(m.Options, "ro") || !hasOption(m.VFSOptions, "ro") {
		t.Fatalf("mount options %q, superblock options %q: want ro", m.Options, m.VFSOptions)
	}
	if err := os.WriteFile(filepath.Join(target, "f"), nil, 0o644); !errors.Is(err, unix.EROFS) {
		t.Fatalf("write: %v, want EROFS", err)
	}
}

// Options that pass ValidateMountOptions never change what a mount is and
// never swallow what is joined after them.
func FuzzValidateMountOptions(f *testing.F) {
	for _, seed := range []string{"discard", `discard,"`, "rw", "nouuid,logbsize=256k", ",", "remount,ro", "a=b,c"} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if ValidateMountOptions(s) != nil {
			return
		}
		flags, data := ParseMountOptions(s)
		if bad := flags & (unix.MS_REMOUNT | unix.MS_BIND | propagationFlags); bad != 0 {
			t.Fatalf("%q passed and sets %#x", s, bad)
		}
		if flags, _ := ParseMountOptions(joinMountOptions(s, "ro")); flags&unix.MS_RDONLY == 0 {
			t.Fatalf("%q passed and swallows a following ro", s)
		}
		if strings.ContainsAny(data, "\"\x00") || len(data) > maxMountOptions {
			t.Fatalf("%q passed with data %q", s, data)
		}
	})
}
