package layertar

import (
	"archive/tar"
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// A running container owns its layer's files and can swap a directory for
// a symlink (or a file for another) at any moment: nothing read for a
// layer's changes or its tar may come from outside the layer root.

const (
	secret    = "HOST-SECRET-0123456789" // the same length as layerBody
	layerBody = "layer-content-abcdefgh"
	hostOnly  = "hostonly" // a name only the outside directory has
)

// outsideDir makes a directory outside any layer with what a container
// must not get into its diff: b/file and b/other holding the secret (with
// an xattr), hostonly (1 MiB) and file.
func outsideDir(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "outside")
	sx := map[string]string{"user.secret": secret}
	for _, n := range []node{
		{path: "b/file", kind: unix.S_IFREG, mode: 0o644, body: secret, xattrs: sx},
		{path: "b/other", kind: unix.S_IFREG, mode: 0o644, body: secret, xattrs: sx},
		{path: "file", kind: unix.S_IFREG, mode: 0o644, body: secret, xattrs: sx},
		{path: hostOnly, kind: unix.S_IFREG, mode: 0o644, body: strings.Repeat(secret, 1<<20/len(secret))},
		{path: "passwd", kind: unix.S_IFREG, mode: 0o644, body: secret},
	} {
		mkNode(t, dir, n)
	}
	return dir
}

// swapForSymlink moves the directory or file rel of root aside and puts a
// symlink to target in its place, as a container can.
func swapForSymlink(t *testing.T, root, rel, target string) {
	t.Helper()
	p := filepath.Join(root, rel)
	must(t, os.Rename(p, p+".moved"))
	must(t, os.Symlink(target, p))
}

func withReadByHand(t *testing.T, byHand bool) {
	old := readByHand.Load()
	readByHand.Store(byHand)
	t.Cleanup(func() { readByHand.Store(old) })
}

func withStatHook(t *testing.T, hook func(rel string)) {
	testHookStat = hook
	t.Cleanup(func() { testHookStat = nil })
}

// bothResolvers runs f with openat2 and with the by-hand walker.
func bothResolvers(t *testing.T, f func(t *testing.T)) {
	for _, byHand := range []bool{false, true} {
		name := "openat2"
		if byHand {
			name = "by-hand"
		}
		t.Run(name, func(t *testing.T) {
			withReadByHand(t, byHand)
			f(t)
		})
	}
}

type tarEnt struct {
	hdr  *tar.Header
	body string
}

func readTarEntries(t *testing.T, data []byte) map[string]tarEnt {
	t.Helper()
	out := make(map[string]tarEnt)
	tr := tar.NewReader(bytes.NewReader(data))
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return out
		}
		must(t, err)
		body, err := io.ReadAll(tr)
		must(t, err)
		out[strings.TrimSuffix(hdr.Name, "/")] = tarEnt{hdr: hdr, body: string(body)}
	}
}

// assertNoHostData fails t if the tar carries any byte or name of the
// outside directory.
func assertNoHostData(t *testing.T, data []byte) {
	t.Helper()
	if bytes.Contains(data, []byte(secret)) {
		t.Error("the tar carries the outside directory's secret (content or xattr)")
	}
	if bytes.Contains(data, []byte(hostOnly)) {
		t.Error("the tar names a file only the outside directory has")
	}
}

// exportLayer builds the layer tree, takes its Changes over an empty
// parent, lets swap change the tree, and exports.
func exportLayer(t *testing.T, swap func(root string)) (map[string]tarEnt, []byte) {
	t.Helper()
	root := filepath.Join(t.TempDir(), "layer")
	for _, n := range []node{
		{path: "a/b/file", kind: unix.S_IFREG, mode: 0o644, body: layerBody},
		{path: "a/b/other", kind: unix.S_IFREG, mode: 0o644, body: layerBody},
		{path: "x/file", kind: unix.S_IFREG, mode: 0o644, body: layerBody},
		{path: "keep", kind: unix.S_IFREG, mode: 0o644, body: layerBody},
	} {
		mkNode(t, root, n)
	}
	changes, err := Changes(root, "")
	must(t, err)
	swap(root)
	rc, err := ExportChanges(root, changes, IdentityMapping{})
	must(t, err)
	data := readAllClose(t, rc)
	return readTarEntries(t, data), data
}

// A directory swapped for a symlink between Changes and the export: what
// was below it is left out (as a path that vanished), the symlink itself
// is exported as a symlink.
func TestExportChangesSymlinkInPath(t *testing.T) {
	requireRoot(t)
	bothResolvers(t, func(t *testing.T) {
		out := outsideDir(t)
		ents, data := exportLayer(t, func(root string) {
			swapForSymlink(t, root, "a", out)
			swapForSymlink(t, root, "x", "../outside-rel/../../"+filepath.Base(filepath.Dir(out))+"/outside")
		})
		assertNoHostData(t, data)
		if e, ok := ents["a"]; !ok || e.hdr.Typeflag != tar.TypeSymlink || e.hdr.Linkname != out {
			t.Errorf("a: want a symlink to %s, got %+v", out, e.hdr)
		}
		if e, ok := ents["x"]; !ok || e.hdr.Typeflag != tar.TypeSymlink {
			t.Errorf("x: want a symlink, got %+v", e.hdr)
		}
		var names []string
		for n := range ents {
			names = append(names, n)
		}
		sort.Strings(names)
		if got := strings.Join(names, " "); got != "a keep x" {
			t.Errorf("entries %q, want \"a keep x\": nothing through a symlink", got)
		}
		if ents["keep"].body != layerBody {
			t.Errorf("keep: body %q", ents["keep"].body)
		}
	})
}

// Swaps between an entry's lstat and the read of its content: the content
// is the lstat's file, or nothing.
func TestExportChangesSwapAfterStat(t *testing.T) {
	requireRoot(t)
	swaps := map[string]func(t *testing.T, root, out string){
		"parent dir for symlink": func(t *testing.T, root, out string) { swapForSymlink(t, root, "a", out) },
		"grandparent for symlink": func(t *testing.T, root, out string) {
			must(t, os.Rename(filepath.Join(root, "a"), filepath.Join(root, "a.moved")))
			must(t, os.Mkdir(filepath.Join(root, "a"), 0o755))
			must(t, os.Symlink(filepath.Join(out, "b"), filepath.Join(root, "a", "b")))
		},
		"file for another file": func(t *testing.T, root, out string) {
			p := filepath.Join(root, "a/b/file")
			must(t, os.Rename(p, p+".moved"))
			must(t, os.WriteFile(p, []byte(secret), 0o644))
		},
		"file for a fifo": func(t *testing.T, root, out string) {
			p := filepath.Join(root, "a/b/file")
			must(t, os.Rename(p, p+".moved"))
			must(t, unix.Mkfifo(p, 0o644))
		},
	}
	for name, swap := range swaps {
		t.Run(name, func(t *testing.T) {
			bothResolvers(t, func(t *testing.T) {
				out := outsideDir(t)
				var root string
				withStatHook(t, func(rel string) {
					if rel == "a/b/file" {
						swap(t, root, out)
					}
				})
				ents, data := exportLayer(t, func(r string) { root = r })
				assertNoHostData(t, data)
				if e, ok := ents["a/b/file"]; ok && (e.hdr.Typeflag != tar.TypeReg || e.body != layerBody) {
					t.Errorf("a/b/file: type %c body %q, want the file that was stat'd", e.hdr.Typeflag, e.body)
				}
			})
		})
	}
}

// TarTree walks by descriptors: a directory swapped for a symlink after
// its lstat is still listed as the directory that was stat'd.
func TestTarTreeSwapDuringWalk(t *testing.T) {
	requireRoot(t)
	bothResolvers(t, func(t *testing.T) {
		out := outsideDir(t)
		root := filepath.Join(t.TempDir(), "layer")
		mkNode(t, root, node{path: "a/b/file", kind: unix.S_IFREG, mode: 0o644, body: layerBody})
		withStatHook(t, func(rel string) {
			if rel == "a" {
				swapForSymlink(t, root, "a", out)
			}
		})
		rc, err := TarTree(root, IdentityMapping{})
		must(t, err)
		data := readAllClose(t, rc)
		assertNoHostData(t, data)
		if e := readTarEntries(t, data)["a/b/file"]; e.body != layerBody {
			t.Errorf("a/b/file: body %q, want the stat'd directory's file", e.body)
		}
	})
}

// Changes and DiffSize walk by descriptors too: a directory swapped for a
// symlink after its lstat does not list (or count) the outside.
func TestChangesSwapDuringWalk(t *testing.T) {
	requireRoot(t)
	for _, swapped := range []string{"/new", "/etc"} { // added, and in both trees
		t.Run(swapped, func(t *testing.T) {
			out := outsideDir(t)
			parent, layer := filepath.Join(t.TempDir(), "p"), filepath.Join(t.TempDir(), "l")
			mkNode(t, parent, node{path: "etc/passwd", kind: unix.S_IFREG, mode: 0o644, body: "root"})
			copyTree(t, parent, layer)
			must(t, os.WriteFile(filepath.Join(layer, "etc/passwd"), []byte("root2"), 0o644))
			mkNode(t, layer, node{path: "new/f", kind: unix.S_IFREG, mode: 0o644, body: "f"})
			hook := func(rel string) {
				if rel == swapped {
					swapForSymlink(t, layer, strings.TrimPrefix(rel, "/"), out)
				}
			}
			withStatHook(t, hook)
			changes, err := Changes(layer, parent)
			must(t, err)
			for _, c := range changes {
				if strings.Contains(c.Path, hostOnly) || strings.Contains(c.Path, "/b") {
					t.Errorf("Changes lists %s from outside the layer", c)
				}
			}
			must(t, os.Remove(filepath.Join(layer, swapped)))
			must(t, os.Rename(filepath.Join(layer, swapped+".moved"), filepath.Join(layer, swapped)))
			size, err := DiffSize(layer, parent)
			must(t, err)
			if size >= 1<<20 {
				t.Errorf("DiffSize = %d: counts the outside directory", size)
			}
		})
	}
}

// A layer root that is a symlink is refused, not followed.
func TestLayerRootSymlinkRefused(t *testing.T) {
	requireRoot(t)
	out := outsideDir(t)
	link := filepath.Join(t.TempDir(), "rootfs")
	must(t, os.Symlink(out, link))
	if _, err := Changes(link, ""); err == nil {
		t.Error("Changes followed a symlinked layer root")
	}
	if _, err := Changes(t.TempDir(), link); err == nil {
		t.Error("Changes followed a symlinked parent root")
	}
	if _, err := DiffSize(link, ""); err == nil {
		t.Error("DiffSize followed a symlinked layer root")
	}
	if _, err := TarTree(link, IdentityMapping{}); err == nil {
		t.Error("TarTree followed a symlinked layer root")
	}
	if _, err := ExportChanges(link, []Change{{Path: "/file", Kind: ChangeAdd}}, IdentityMapping{}); err == nil {
		t.Error("ExportChanges followed a symlinked layer root")
	}
}

// openEntry resolves below the root without following any symlink but a
// final one (opened as itself), with the same errors either way.
func TestOpenEntry(t *testing.T) {
	requireRoot(t)
	root := t.TempDir()
	mkNode(t, root, node{path: "d/e/f", kind: unix.S_IFREG, mode: 0o644, body: "f"})
	mkNode(t, root, node{path: "l", kind: unix.S_IFLNK, target: "d"})
	mkNode(t, root, node{path: "abs", kind: unix.S_IFLNK, target: "/"})
	rootfd, err := openLayerRoot(root)
	must(t, err)
	defer unix.Close(rootfd)
	cases := []struct {
		rel   string
		mode  uint32 // the entry's type, or 0 for an error
		errno unix.Errno
	}{
		{"d/e", unix.S_IFDIR, 0},
		{"d/e/f", unix.S_IFREG, 0},
		{"l", unix.S_IFLNK, 0},
		{"abs", unix.S_IFLNK, 0},
		{"l/e", 0, unix.ELOOP},
		{"abs/etc", 0, unix.ELOOP},
		{"d/e/f/g", 0, unix.ENOTDIR},
		{"missing/x", 0, unix.ENOENT},
		{"d/missing", 0, unix.ENOENT},
	}
	open := map[string]func(int, string) (int, error){
		"openat2": func(fd int, rel string) (int, error) { return openEntry(fd, rel) },
		"by-hand": openEntryByHand,
	}
	for name, openFn := range open {
		for _, c := range cases {
			fd, err := openFn(rootfd, c.rel)
			if c.mode == 0 {
				if !errors.Is(err, c.errno) {
					t.Errorf("%s %s: err %v, want %v", name, c.rel, err, c.errno)
				}
				if err == nil {
					unix.Close(fd)
				}
				continue
			}
			if err != nil {
				t.Errorf("%s %s: %v", name, c.rel, err)
				continue
			}
			var st, want unix.Stat_t
			must(t, unix.Fstat(fd, &st))
			unix.Close(fd)
			must(t, unix.Lstat(filepath.Join(root, c.rel), &want))
			if st.Mode&unix.S_IFMT != c.mode || st.Ino != want.Ino {
				t.Errorf("%s %s: opened mode %o ino %d, want %o ino %d", name, c.rel, st.Mode, st.Ino, c.mode, want.Ino)
			}
		}
	}
	for _, bad := range []string{"/etc", "d/../d", "", "d//e"} {
		if fd, err := openEntryByHand(rootfd, bad); err == nil {
			unix.Close(fd)
			t.Errorf("by-hand %q: opened", bad)
		}
	}
}

// A name removed between the directory listing and its lstat (a running
// container's) is absent, as in Moby's walker: not an error.
func TestChangesNameGoneDuringWalk(t *testing.T) {
	requireRoot(t)
	parent, layer := filepath.Join(t.TempDir(), "p"), filepath.Join(t.TempDir(), "l")
	mkNode(t, parent, node{path: "c", kind: unix.S_IFREG, mode: 0o644, body: "c"})
	copyTree(t, parent, layer)
	must(t, os.WriteFile(filepath.Join(layer, "c"), []byte("c2"), 0o644))
	mkNode(t, layer, node{path: "a", kind: unix.S_IFREG, mode: 0o644, body: "a"})
	mkNode(t, layer, node{path: "b", kind: unix.S_IFREG, mode: 0o644, body: "b"})
	withStatHook(t, func(rel string) {
		if rel == "/a" || rel == "a" {
			for _, n := range []string{"b", "c"} {
				if err := os.Remove(filepath.Join(layer, n)); err != nil && !os.IsNotExist(err) {
					t.Error(err)
				}
			}
		}
	})
	changes, err := Changes(layer, parent)
	must(t, err)
	if s := changeString(changes); s != "A /a; D /c" {
		t.Errorf("Changes = %s, want A /a; D /c", s)
	}
	must(t, os.WriteFile(filepath.Join(layer, "b"), []byte("b"), 0o644))
	rc, err := TarTree(layer, IdentityMapping{})
	must(t, err)
	ents := readTarEntries(t, readAllClose(t, rc))
	if _, ok := ents["b"]; ok || len(ents) != 1 {
		t.Errorf("TarTree entries %v, want only a", ents)
	}
}

// ExportChanges (entries opened below the root by openat2 or by hand)
// writes what TarTree (a descriptor walk) writes, xattrs of directories,
// symlinks and FIFOs included; the round trip tests check TarTree's.
func TestExportChangesEqualsTarTree(t *testing.T) {
	requireRoot(t)
	bothResolvers(t, func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "l")
		must(t, os.Mkdir(dir, 0o755))
		buildTree(t, dir)
		must(t, unix.Lsetxattr(filepath.Join(dir, "bin/sh"), "trusted.onlink", []byte("L"), 0))
		must(t, unix.Lsetxattr(filepath.Join(dir, "run/fifo"), "trusted.onfifo", []byte("F"), 0))
		changes, err := Changes(dir, "")
		must(t, err)
		rc, err := ExportChanges(dir, changes, IdentityMapping{})
		must(t, err)
		exported := readAllClose(t, rc)
		rc, err = TarTree(dir, IdentityMapping{})
		must(t, err)
		if tree := readAllClose(t, rc); !bytes.Equal(exported, tree) {
			t.Error("ExportChanges of an all-added tree differs from TarTree")
		}
		ents := readTarEntries(t, exported)
		if ents["bin/sh"].hdr.PAXRecords[xattrPAXPrefix+"trusted.onlink"] != "L" ||
			ents["run/fifo"].hdr.PAXRecords[xattrPAXPrefix+"trusted.onfifo"] != "F" ||
			ents["home/user"].hdr.PAXRecords[xattrPAXPrefix+"user.dirattr"] != "d" {
			t.Errorf("xattrs of a symlink, a FIFO, a directory: %v %v %v", ents["bin/sh"].hdr.PAXRecords,
				ents["run/fifo"].hdr.PAXRecords, ents["home/user"].hdr.PAXRecords)
		}
	})
}
