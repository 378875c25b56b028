package fsutil

import (
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/moby/sys/mountinfo"
)

// TestUnmountUnder: nested mounts under a directory all go, deepest first,
// and a mount beside it stays.
func TestUnmountUnder(t *testing.T) {
	if os.Geteuid() != 0 {
		skipOrFailKernel(t, "mount tests need root")
	}
	base := t.TempDir()
	dir, beside := filepath.Join(base, "home"), filepath.Join(base, "homeward")
	outer, inner := filepath.Join(dir, "mnt", "a"), filepath.Join(dir, "mnt", "a", "b")
	for _, p := range []string{outer, beside} {
		if err := os.MkdirAll(p, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range []string{outer, inner, beside} {
		if p == inner {
			if err := os.Mkdir(p, 0o755); err != nil {
				t.Fatal(err)
			}
		}
		if err := Mount("tmpfs", p, "tmpfs", 0, "size=1m"); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = Unmount(p, 0) })
	}
	done, err := UnmountUnder(dir)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{inner, outer}; !slices.Equal(done, want) {
		t.Errorf("unmounted %q, want %q (deepest first)", done, want)
	}
	for _, p := range []string{outer, beside} {
		mounted, err := mountinfo.Mounted(p)
		if err != nil {
			t.Fatal(err)
		}
		if want := p == beside; mounted != want {
			t.Errorf("%s mounted = %v, want %v", p, mounted, want)
		}
	}
}
