package layertar

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// TestLayerRootOpenFile: regular files are read by any spelling of their
// tar name; a symlink (final or on the way), a FIFO, a directory and a
// name climbing out are refused, with openat2 and by hand.
func TestLayerRootOpenFile(t *testing.T) {
	dir := t.TempDir()
	outside := filepath.Join(t.TempDir(), "secret")
	must(t, os.WriteFile(outside, []byte("host"), 0o600))
	must(t, os.MkdirAll(filepath.Join(dir, "a/b"), 0o755))
	must(t, os.WriteFile(filepath.Join(dir, "a/b/f"), []byte("inside"), 0o644))
	must(t, os.Symlink(outside, filepath.Join(dir, "abs")))
	must(t, os.Symlink("a", filepath.Join(dir, "dirlink")))
	must(t, os.Symlink("a/b/f", filepath.Join(dir, "rellink")))
	must(t, unix.Mkfifo(filepath.Join(dir, "fifo"), 0o644))
	for _, byHand := range []bool{false, true} {
		old := readByHand.Load()
		readByHand.Store(byHand)
		r, err := OpenLayerRoot(dir)
		must(t, err)
		for _, name := range []string{"a/b/f", "./a/b/f", "/a/b/f", "a//b/./f"} {
			f, err := r.OpenFile(name)
			if err != nil {
				t.Fatalf("byHand=%v: open %q: %v", byHand, name, err)
			}
			b, _ := io.ReadAll(f)
			f.Close()
			if string(b) != "inside" {
				t.Fatalf("byHand=%v: %q read %q", byHand, name, b)
			}
		}
		for name, want := range map[string]error{
			"abs": ErrNotRegular, "rellink": ErrNotRegular, "fifo": ErrNotRegular, "a": ErrNotRegular,
			"dirlink/b/f": unix.ELOOP, "../secret": errEscape, "a/../../secret": errEscape, ".": errEscape,
			"missing": unix.ENOENT,
		} {
			f, err := r.OpenFile(name)
			if f != nil {
				f.Close()
			}
			if !errors.Is(err, want) {
				t.Errorf("byHand=%v: open %q: %v, want %v", byHand, name, err, want)
			}
		}
		r.Close()
		readByHand.Store(old)
	}
	if _, err := OpenLayerRoot(filepath.Join(dir, "dirlink")); err == nil {
		t.Fatal("a symlinked root was opened")
	}
}

func FuzzLayerRel(f *testing.F) {
	for _, s := range []string{"a", "./a/b", "/a", "..", "a/../b", "", "a\x00b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		rel, err := layerRel(name)
		if err != nil {
			return
		}
		if rel == "" || rel[0] == '/' || filepath.Clean(rel) != rel || slices.Contains(strings.Split(rel, "/"), "..") {
			t.Fatalf("layerRel(%q) = %q", name, rel)
		}
	})
}
