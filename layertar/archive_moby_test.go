package layertar

import (
	"archive/tar"
	"bytes"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// mobyLower is the lower tree of the cases below: c/ holds b/old,
// b/d/deep and f; s→c, f is a file, e/ holds .wh.x and .wh.y (which no
// tar entry can make).
func mobyLower(t *testing.T, root string) {
	R, D, L := uint32(unix.S_IFREG), uint32(unix.S_IFDIR), uint32(unix.S_IFLNK)
	for _, n := range []node{
		{path: "c/b/old", kind: R, mode: 0o644, body: "old"},
		{path: "c/b/d/deep", kind: R, mode: 0o644, body: "deep"},
		{path: "c/f", kind: R, mode: 0o644, body: "cf"},
		{path: "s", kind: L, target: "c"},
		{path: "f", kind: R, mode: 0o644, body: "f"},
		{path: "e", kind: D, mode: 0o700},
	} {
		mkNode(t, root, n)
	}
}

// shortListing lists the tree as "path" (file: "path=content", dir:
// "path/", symlink: "path->target"), sorted.
func shortListing(t *testing.T, root string) string {
	t.Helper()
	var out []string
	must(t, filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == root {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		switch {
		case d.IsDir():
			rel += "/"
		case d.Type()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			must(t, err)
			rel += "->" + target
		default:
			body, err := os.ReadFile(p)
			must(t, err)
			rel += "=" + string(body)
		}
		out = append(out, rel)
		return nil
	}))
	sort.Strings(out)
	return strings.Join(out, " ")
}

const mobyLowerListing = "c/ c/b/ c/b/d/ c/b/d/deep=deep c/b/old=old c/f=cf e/ e/.wh.x= e/.wh.y= f=f s->c"

// TestApplyLikeMoby: each case is a tar where ApplyLayer's result differed
// from Moby v24's chrootarchive.ApplyUncompressedLayer (issue 17, item 10);
// want is the tree Moby makes (compat's FuzzApplyMatchesMoby checks these
// against Moby itself).
func TestApplyLikeMoby(t *testing.T) {
	requireRoot(t)
	dir := func(name string) te { return te{name: name, typ: tar.TypeDir, mode: 0o755} }
	for _, c := range []struct {
		name    string
		entries []te
		want    string
	}{
		{"opaque below a dir replaced by a symlink",
			[]te{dir("a2/"), dir("a2/b/"), {name: "a2", typ: tar.TypeSymlink, link: "c"}, {name: "a2/b/.wh..wh..opq"}},
			"a2->c c/ c/b/ c/f=cf e/ e/.wh.x= e/.wh.y= f=f s->c"},
		{"entries below a dir replaced by a symlink land in its target",
			[]te{dir("a2/"), dir("a2/b/"), {name: "a2", typ: tar.TypeSymlink, link: "c"}, {name: "a2/b/new", body: "n"}, dir("a2/b/q/"), {name: "a2/b/q/r", body: "r"}},
			"a2->c c/ c/b/ c/b/d/ c/b/d/deep=deep c/b/new=n c/b/old=old c/b/q/ c/b/q/r=r c/f=cf e/ e/.wh.x= e/.wh.y= f=f s->c"},
		{"implied dirs in a setgid dir inherit setgid (fuzz)",
			[]te{{name: "s/", typ: tar.TypeDir, mode: 0o2750}, {name: "s/q/z", body: "z"}},
			"c/ c/b/ c/b/d/ c/b/d/deep=deep c/b/old=old c/f=cf e/ e/.wh.x= e/.wh.y= f=f s/ s/q/ s/q/z=z"},
		{"a global header removes what is at its name, and counts as written",
			[]te{{name: "f", typ: tar.TypeXGlobalHeader, pax: map[string]string{"comment": "x"}},
				{name: "c/b", typ: tar.TypeXGlobalHeader, pax: map[string]string{"comment": "x"}},
				{name: "e/new/g", typ: tar.TypeXGlobalHeader, pax: map[string]string{"comment": "x"}},
				{name: "e/new/.wh..wh..opq"}, {name: "pax_global_header", typ: tar.TypeXGlobalHeader, pax: map[string]string{"comment": "x"}}},
			"c/ c/f=cf e/ e/.wh.x= e/.wh.y= e/new/ s->c"},
		{"opaque in a symlink", []te{{name: "s/.wh..wh..opq"}}, mobyLowerListing},
		{"opaque in a file", []te{{name: "f/.wh..wh..opq"}}, mobyLowerListing},
		{"whiteout implies its directory", []te{{name: "nodir/.wh.x"}}, "c/ c/b/ c/b/d/ c/b/d/deep=deep c/b/old=old c/f=cf e/ e/.wh.x= e/.wh.y= f=f nodir/ s->c"},
		{"opaque after a write through a symlink",
			[]te{dir("c/q/"), {name: "s/q/z", body: "z"}, {name: "c/.wh..wh..opq"}},
			"c/ c/q/ e/ e/.wh.x= e/.wh.y= f=f s->c"},
		{"hard links into .wh..wh.plnk are copies",
			[]te{{name: ".wh..wh.plnk/7", body: "aufs file"}, {name: "x", typ: tar.TypeLink, link: ".wh..wh.plnk/7"},
				{name: "c/y", typ: tar.TypeLink, link: "./.wh..wh.plnk/7"}},
			".wh..wh.plnk/ c/ c/b/ c/b/d/ c/b/d/deep=deep c/b/old=old c/f=cf c/y=aufs file e/ e/.wh.x= e/.wh.y= f=f s->c x=aufs file"},
		{"a shorter second aufs file keeps the first one's tail",
			[]te{{name: ".wh..wh.plnk/7", body: "long content"}, {name: ".wh..wh.plnk/7", body: "LONG"},
				{name: "x", typ: tar.TypeLink, link: ".wh..wh.plnk/7"}},
			".wh..wh.plnk/ " + mobyLowerListing + " x=LONG content"},
		{"opaque removes implied dirs", []te{{name: "c/n/m", body: "m"}, {name: "c/.wh..wh..opq"}},
			"c/ e/ e/.wh.x= e/.wh.y= f=f s->c"},
		{"nested .wh..wh.x is a whiteout of .wh.x", []te{{name: "c/.wh.f"}, {name: "e/.wh..wh.x"}},
			"c/ c/b/ c/b/d/ c/b/d/deep=deep c/b/old=old e/ e/.wh.y= f=f s->c"},
	} {
		t.Run(c.name, func(t *testing.T) {
			root := t.TempDir()
			mobyLower(t, root)
			for _, n := range []string{"e/.wh.x", "e/.wh.y"} { // no tar entry can make these
				mkNode(t, root, node{path: n, kind: unix.S_IFREG, mode: 0o644})
			}
			if _, err := ApplyLayer(root, bytes.NewReader(makeTar(t, c.entries...)), ApplyOptions{}); err != nil {
				t.Fatal(err)
			}
			if got := shortListing(t, root); got != c.want {
				t.Errorf("tree\n got %s\nwant %s", got, c.want)
			}
			if fi, err := os.Lstat(filepath.Join(root, "s/q")); err == nil && strings.Contains(c.name, "setgid") && fi.Mode() != fs.ModeDir|fs.ModeSetgid|0o755 {
				t.Errorf("implied s/q: mode %v, want dgrwxr-xr-x (0755 and the setgid of s)", fi.Mode())
			}
		})
	}
}

// A tar cut right after an entry whose content ends in zero blocks has no
// end-of-archive marker even though its last 512 bytes are zeros.
func TestApplyCutAfterZeroContent(t *testing.T) {
	data := makeTar(t, te{name: "zeros", body: string(make([]byte, 1024))})
	cut := data[:len(data)-1024] // the two zero blocks of the marker
	_, err := ApplyLayer(t.TempDir(), bytes.NewReader(cut), ApplyOptions{NoLchown: true})
	if !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("tar cut after a zero-filled entry: err %v, want io.ErrUnexpectedEOF", err)
	}
	for _, keep := range []int{512, 1024} { // one zero block is enough for archive/tar
		if _, err := ApplyLayer(t.TempDir(), bytes.NewReader(data[:len(cut)+keep]), ApplyOptions{NoLchown: true}); err != nil {
			t.Errorf("%d zero bytes after the last entry: %v", keep, err)
		}
	}
}

// Header-only entries (symlinks, directories...) may carry any size in a
// base-256 size field; the size ApplyLayer reports is the content it
// wrote, which cannot overflow.
func TestApplySizeOfHeaderOnlyEntries(t *testing.T) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, name := range []string{"l1", "l2", "l3"} {
		must(t, tw.WriteHeader(&tar.Header{Name: name, Typeflag: tar.TypeSymlink, Linkname: "x", Size: 1 << 62, Format: tar.FormatGNU}))
	}
	must(t, tw.WriteHeader(&tar.Header{Name: "f", Typeflag: tar.TypeReg, Size: 3, Mode: 0o644}))
	_, err := tw.Write([]byte("abc"))
	must(t, err)
	must(t, tw.Close())
	size, err := ApplyLayer(t.TempDir(), &buf, ApplyOptions{NoLchown: true})
	if err != nil || size != 3 {
		t.Fatalf("size %d, err %v; want 3 (the content of f)", size, err)
	}
}

// Moby sets directory times at the end on what the name leads to then:
// through a symlink that replaced the directory, and failing when the
// name leads nowhere.
func TestApplyDirTimesLikeMoby(t *testing.T) {
	requireRoot(t)
	dir := te{name: "a/", typ: tar.TypeDir, mode: 0o755} // makeTar's mtime: 1700000000
	root := t.TempDir()
	mobyLower(t, root)
	_, err := ApplyLayer(root, bytes.NewReader(makeTar(t, dir, te{name: "a", typ: tar.TypeSymlink, link: "/c"})), ApplyOptions{})
	must(t, err)
	var st unix.Stat_t
	must(t, unix.Lstat(filepath.Join(root, "c"), &st))
	if st.Mtim.Sec != 1700000000 {
		t.Errorf("c (a's symlink target) has mtime %d, want the times of a's entry", st.Mtim.Sec)
	}
	for name, later := range map[string]te{
		"whited out":                   {name: ".wh.a"},
		"replaced by dangling symlink": {name: "a", typ: tar.TypeSymlink, link: "nowhere"},
	} {
		_, err := ApplyLayer(t.TempDir(), bytes.NewReader(makeTar(t, dir, later)), ApplyOptions{})
		if !errors.Is(err, unix.ENOENT) {
			t.Errorf("directory entry then %s: err %v, want ENOENT (Moby fails the layer)", name, err)
		}
	}
}
