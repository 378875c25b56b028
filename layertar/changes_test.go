package layertar

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// buildParent makes the parent tree of the Changes tests.
func buildParent(t *testing.T, root string) {
	R, D, L := uint32(unix.S_IFREG), uint32(unix.S_IFDIR), uint32(unix.S_IFLNK)
	for _, n := range []node{
		{path: "etc/passwd", kind: R, mode: 0o644, body: "root"},
		{path: "etc/hosts", kind: R, mode: 0o644, body: "localhost"},
		{path: "etc/link", kind: L, target: "aaaa"},
		{path: "bin/ls", kind: R, mode: 0o755, body: "ls v1"},
		{path: "bin/cat", kind: R, mode: 0o755, body: "cat"},
		{path: "var/log/old.log", kind: R, mode: 0o644, body: "log"},
		{path: "var/cache/x/y", kind: R, mode: 0o644, body: "y"},
		{path: "home/u", kind: D, mode: 0o700, uid: 1000, gid: 1000},
		{path: "home/u/f", kind: R, mode: 0o600, uid: 1000, gid: 1000, body: "f"},
		{path: "opt/replace/inner", kind: R, mode: 0o644, body: "inner"},
		{path: "usr/lib/libc.so", kind: R, mode: 0o755, body: "libc"},
		{path: "data/keep", kind: R, mode: 0o644, body: "keep"},
		{path: "data/hl1", kind: R, mode: 0o644, body: "hl"},
		{path: "data/hl2", target: "data/hl1"},
		{path: "dir2", kind: D, mode: 0o755},
	} {
		mkNode(t, root, n)
	}
	setTimes(t, root)
}

// editChild applies to a copy of the parent the edits whose changes
// TestChanges expects.
func editChild(t *testing.T, root string) {
	p := func(s string) string { return filepath.Join(root, s) }
	mkNode(t, root, node{path: "etc/new", kind: unix.S_IFREG, mode: 0o644, body: "new"})
	must(t, os.WriteFile(p("bin/ls"), []byte("ls version 2"), 0o755))
	must(t, os.Chmod(p("bin/cat"), 0o700))
	must(t, os.Lchown(p("home/u/f"), 2000, 2000))
	must(t, os.Remove(p("var/log/old.log")))
	must(t, os.RemoveAll(p("var/cache/x")))
	must(t, os.RemoveAll(p("opt/replace")))
	must(t, os.WriteFile(p("opt/replace"), []byte("was a dir"), 0o644))
	mkNode(t, root, node{path: "srv/new/a", kind: unix.S_IFREG, mode: 0o644, body: "a"})
	mkNode(t, root, node{path: "srv/new/a2", target: "srv/new/a"})
	must(t, unix.Lsetxattr(p("usr/lib/libc.so"), capabilityXattr, []byte(capV2()), 0))
	must(t, os.Chtimes(p("etc/hosts"), time1, time1))
	// Same length and mtime, other target: only the target tells.
	var st unix.Stat_t
	must(t, unix.Lstat(p("etc/link"), &st))
	must(t, os.Remove(p("etc/link")))
	must(t, os.Symlink("bbbb", p("etc/link")))
	must(t, unix.UtimesNanoAt(unix.AT_FDCWD, p("etc/link"), []unix.Timespec{st.Atim, st.Mtim}, unix.AT_SYMLINK_NOFOLLOW))
	// A directory whose only change is its mtime is not a change.
	must(t, os.Chtimes(p("dir2"), time1, time1))
	// Put back the mtimes of directories the edits touched, as
	// ExportChanges carries them only for listed directories.
	for _, d := range []string{"etc", "bin", "var/log", "var/cache", "opt", "home/u", "usr/lib", "srv", "srv/new"} {
		must(t, os.Chtimes(p(d), time1, time1))
	}
}

var time1 = mustTime("2021-02-03T04:05:06Z")

func mustTime(s string) time.Time {
	tm, err := time.Parse(time.RFC3339, s)
	if err != nil {
		panic(err)
	}
	return tm
}

func TestChanges(t *testing.T) {
	requireRoot(t)
	parent, child := filepath.Join(t.TempDir(), "p"), filepath.Join(t.TempDir(), "c")
	must(t, os.Mkdir(parent, 0o755))
	buildParent(t, parent)
	copyTree(t, parent, child)
	if got, err := Changes(child, parent); err != nil || len(got) != 0 {
		t.Fatalf("identical copy: %v %v", got, err)
	}
	editChild(t, child)
	got, err := Changes(child, parent)
	must(t, err)
	want := "C /bin; C /bin/cat; C /bin/ls; C /etc; C /etc/hosts; C /etc/link; A /etc/new; " +
		"C /home; C /home/u; C /home/u/f; C /opt; C /opt/replace; A /srv; A /srv/new; A /srv/new/a; A /srv/new/a2; " +
		"C /usr; C /usr/lib; C /usr/lib/libc.so; C /var; C /var/cache; D /var/cache/x; C /var/log; D /var/log/old.log"
	if s := changeString(got); s != want {
		t.Errorf("Changes:\n got %s\nwant %s", s, want)
	}

	// The exported changes turn a copy of the parent into the child (but
	// for the unlisted mtime of dir2).
	fi, err := os.Stat(filepath.Join(parent, "dir2"))
	must(t, err)
	must(t, os.Chtimes(filepath.Join(child, "dir2"), fi.ModTime(), fi.ModTime()))
	rc, err := ExportChanges(child, got, IdentityMapping{})
	must(t, err)
	data := readAllClose(t, rc)
	applied := filepath.Join(t.TempDir(), "applied")
	copyTree(t, parent, applied)
	_, err = ApplyLayer(applied, strings.NewReader(string(data)), ApplyOptions{})
	must(t, err)
	compareTrees(t, child, applied)
	if again, err := Changes(applied, child); err != nil || len(again) != 0 {
		t.Errorf("Changes(applied, child) = %v, %v; want none", again, err)
	}

	// DiffSize: non-directories added or modified, hard links once.
	size, err := DiffSize(child, parent)
	must(t, err)
	wantSize := int64(len("cat") + len("ls version 2") + len("localhost") + len("bbbb") + len("new") +
		len("f") + len("was a dir") + len("a") + len("libc"))
	if size != wantSize {
		t.Errorf("DiffSize = %d, want %d", size, wantSize)
	}
}

func TestChangesEmptyParent(t *testing.T) {
	requireRoot(t)
	dir := t.TempDir()
	mkNode(t, dir, node{path: "d/a", kind: unix.S_IFREG, mode: 0o644, body: "0123456789"})
	mkNode(t, dir, node{path: "d/b", target: "d/a"})
	mkNode(t, dir, node{path: "c", kind: unix.S_IFREG, mode: 0o644, body: "12345"})
	mkNode(t, dir, node{path: "s", kind: unix.S_IFLNK, target: "xyz"})
	got, err := Changes(dir, "")
	must(t, err)
	if s := changeString(got); s != "A /c; A /d; A /d/a; A /d/b; A /s" {
		t.Errorf("Changes(dir, \"\") = %s", s)
	}
	size, err := DiffSize(dir, "")
	must(t, err)
	if size != 18 {
		t.Errorf("DiffSize = %d, want 18", size)
	}
	// The parent "" export equals the tree export entry for entry.
	rc, err := ExportChanges(dir, got, IdentityMapping{})
	must(t, err)
	exported := readAllClose(t, rc)
	rc, err = TarTree(dir, IdentityMapping{})
	must(t, err)
	if tree := readAllClose(t, rc); !reflect.DeepEqual(exported, tree) {
		t.Error("ExportChanges of all-added tree differs from TarTree")
	}
}

func TestChangeKindString(t *testing.T) {
	for k, want := range map[ChangeKind]string{ChangeModify: "C", ChangeAdd: "A", ChangeDelete: "D", 7: "ChangeKind(7)"} {
		if k.String() != want {
			t.Errorf("%d.String() = %q, want %q", int(k), k.String(), want)
		}
	}
	if s := (Change{Path: "/x", Kind: ChangeAdd}).String(); s != "A /x" {
		t.Errorf("Change.String() = %q", s)
	}
}

func changeString(cs []Change) string {
	parts := make([]string, len(cs))
	for i, c := range cs {
		parts[i] = fmt.Sprint(c)
	}
	return strings.Join(parts, "; ")
}
