package layertar

import (
	"archive/tar"
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

const pwned = "pwned-thinlayer"

// jail is a layer root inside a base directory that also holds a
// sentinel file and a directory; root starts with symlinks that lead out
// of it when followed naively.
type jail struct {
	base, root string
	listing    []string
	outside    unix.Stat_t
	sentinel   unix.Stat_t
}

func newJail(t testing.TB) *jail {
	t.Helper()
	base := t.TempDir()
	j := &jail{base: base, root: filepath.Join(base, "root")}
	must(t, os.Mkdir(j.root, 0o755))
	mkNode(t, base, node{path: "sentinel", kind: unix.S_IFREG, mode: 0o644, body: "original"})
	mkNode(t, base, node{path: "outside/o", kind: unix.S_IFREG, mode: 0o644, body: "o"})
	for name, target := range map[string]string{
		"pre":      base,
		"prerel":   "../",
		"prefile":  filepath.Join(base, "sentinel"),
		"predeep":  "../../../../../../..",
		"preouter": filepath.Join(base, "outside"),
	} {
		must(t, os.Symlink(target, filepath.Join(j.root, name)))
	}
	j.listing = listDir(t, base)
	must(t, unix.Lstat(filepath.Join(base, "outside"), &j.outside))
	must(t, unix.Lstat(filepath.Join(base, "sentinel"), &j.sentinel))
	j.outside.Atim, j.sentinel.Atim = unix.Timespec{}, unix.Timespec{}
	return j
}

// check fails t if anything outside root changed.
func (j *jail) check(t testing.TB) {
	t.Helper()
	if got := listDir(t, j.base); !reflect.DeepEqual(got, j.listing) {
		t.Errorf("base dir now holds %v, was %v", got, j.listing)
	}
	if got := listDir(t, filepath.Join(j.base, "outside")); len(got) != 1 || got[0] != "o" {
		t.Errorf("outside dir now holds %v", got)
	}
	var st unix.Stat_t
	must(t, unix.Lstat(filepath.Join(j.base, "sentinel"), &st))
	st.Atim = unix.Timespec{}
	if st != j.sentinel {
		t.Errorf("sentinel stat changed:\n%+v\n%+v", st, j.sentinel)
	}
	must(t, unix.Lstat(filepath.Join(j.base, "outside"), &st))
	st.Atim = unix.Timespec{}
	if st != j.outside {
		t.Errorf("outside dir stat changed")
	}
	if data, err := os.ReadFile(filepath.Join(j.base, "sentinel")); err != nil || string(data) != "original" {
		t.Errorf("sentinel now %q, %v", data, err)
	}
	if x := xattrString(t, filepath.Join(j.base, "sentinel")); x != "" {
		t.Errorf("sentinel got xattrs %s", x)
	}
	if _, err := os.Lstat("/" + pwned); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("/%s exists: %v", pwned, err)
	}
}

type route struct {
	name    string
	entries []te
	wantErr string // "" when the tar may apply as long as it stays inside
	inside  string // a path that must exist in root afterwards
}

func hostileRoutes(base string) []route {
	evil := te{name: "x", body: "pwned", mode: 0o777, uid: 1234,
		pax: map[string]string{"SCHILY.xattr.user.evil": "1", "SCHILY.xattr.security.capability": capV2()}}
	with := func(name string) te { e := evil; e.name = name; return e }
	link := func(name, target string) te {
		return te{name: name, typ: tar.TypeLink, link: target, mode: 0o777, uid: 1234}
	}
	sym := func(name, target string) te { return te{name: name, typ: tar.TypeSymlink, link: target} }
	dir := func(name string) te { return te{name: name, typ: tar.TypeDir, mode: 0o777, uid: 1234} }
	return []route{
		{name: "dotdot", entries: []te{with("../" + pwned)}, wantErr: "escapes the layer root"},
		{name: "dotdot-deep", entries: []te{with("a/../../sentinel")}, wantErr: "escapes the layer root"},
		{name: "dotdot-dir", entries: []te{dir("../outside/"), with("../outside/" + pwned)}, wantErr: "escapes the layer root"},
		{name: "absolute", entries: []te{with("/" + pwned)}, inside: pwned},
		{name: "absolute-dotdot", entries: []te{with("/../" + pwned)}, inside: pwned},
		{name: "symlink-escape", entries: []te{sym("esc", "../")}, wantErr: "escapes the layer root"},
		{name: "symlink-escape-deep", entries: []te{sym("sub/esc", "../../outside")}, wantErr: "escapes the layer root"},
		{name: "symlink-root-write", entries: []te{sym("etc", "/"), with("etc/" + pwned)}, inside: pwned},
		{name: "symlink-abs-write", entries: []te{sym("esc", base), with("esc/sentinel")}},
		{name: "symlink-abs-dir", entries: []te{sym("esc", base), dir("esc/outside/"), with("esc/outside/" + pwned)}},
		{name: "symlink-abs-file", entries: []te{sym("esc", base+"/sentinel"), with("esc")}, inside: "esc"},
		{name: "symlink-chain", entries: []te{sym("a", "b"), sym("b", "/c/../../.."), with("a/sentinel")}, inside: "sentinel"},
		{name: "symlink-loop", entries: []te{sym("l1", "l2"), sym("l2", "l1"), with("l1/x")}, wantErr: "too many levels"},
		{name: "symlink-xattr", entries: []te{{name: "s", typ: tar.TypeSymlink, link: base + "/sentinel", uid: 1234,
			pax: map[string]string{"SCHILY.xattr.user.evil": "1"}}}},
		{name: "pre-abs-write", entries: []te{with("pre/sentinel")}},
		{name: "pre-abs-dir", entries: []te{dir("preouter/"), with("preouter/" + pwned)}, inside: "preouter/" + pwned},
		{name: "pre-rel-write", entries: []te{with("prerel/sentinel")}, inside: "sentinel"},
		{name: "pre-deep-write", entries: []te{with("predeep/" + pwned)}, inside: pwned},
		{name: "pre-file-meta", entries: []te{dir("./"), with("prefile/x")}},
		{name: "hardlink-dotdot", entries: []te{link("hl", "../sentinel")}, wantErr: "escapes the layer root"},
		{name: "hardlink-pre", entries: []te{link("hl", "pre/sentinel")}},
		{name: "hardlink-prerel", entries: []te{link("hl", "prerel/sentinel")}},
		{name: "hardlink-planted", entries: []te{sym("s", base), link("hl", "s/sentinel")}},
		{name: "hardlink-to-symlink", entries: []te{link("hl", "prefile")}, inside: "hl"},
		{name: "hardlink-root", entries: []te{link("hl", "/")}, wantErr: "layer root"},
		{name: "whiteout-dotdot", entries: []te{{name: ".wh.."}}, wantErr: "escapes the layer root"},
		{name: "whiteout-dotdot-sub", entries: []te{dir("sub/"), {name: "sub/.wh.."}}, wantErr: "escapes the layer root"},
		{name: "whiteout-pre", entries: []te{{name: "pre/.wh.sentinel"}, {name: "preouter/.wh.o"}}},
		{name: "whiteout-prerel", entries: []te{{name: "prerel/.wh.sentinel"}, {name: "prerel/.wh.outside"}}},
		{name: "opaque-pre", entries: []te{{name: "pre/.wh..wh..opq"}}},
		{name: "opaque-preouter", entries: []te{{name: "preouter/.wh..wh..opq"}}},
		{name: "opaque-prerel", entries: []te{{name: "prerel/.wh..wh..opq"}}},
		// Moby sets directory times through symlinks and fails when the
		// name leads nowhere in the root.
		{name: "dirtimes-through-symlink", entries: []te{dir("d/"), sym("d", base+"/outside"), dir("preouter/")}, wantErr: "no such file"},
		{name: "dirtimes-through-pre", entries: []te{dir("d/"), sym("d", "/prerel")}, inside: "d"},
		{name: "device-through-pre", entries: []te{{name: "pre/" + pwned, typ: tar.TypeChar, mode: 0o666}}},
		{name: "fifo-through-planted", entries: []te{sym("s", "/../../"), {name: "s/" + pwned, typ: tar.TypeFifo}}, inside: pwned},
	}
}

func TestApplyHostile(t *testing.T) {
	requireRoot(t)
	for _, byHand := range []bool{false, true} {
		for _, r := range hostileRoutes("BASE") {
			name := r.name
			if byHand {
				name += "/by-hand"
			}
			t.Run(name, func(t *testing.T) {
				withResolver(t, byHand)
				j := newJail(t)
				r := routeFor(j, r.name)
				_, err := ApplyLayer(j.root, bytes.NewReader(makeTar(t, r.entries...)), ApplyOptions{})
				switch {
				case r.wantErr != "" && (err == nil || !strings.Contains(err.Error(), r.wantErr)):
					t.Errorf("err %v, want %q", err, r.wantErr)
				case err != nil && !strings.HasPrefix(err.Error(), "layertar: apply layer: entry "):
					t.Errorf("error does not name the entry: %v", err)
				case r.inside != "" && err == nil:
					if _, err := os.Lstat(filepath.Join(j.root, r.inside)); err != nil {
						t.Errorf("want %s inside the root: %v", r.inside, err)
					}
				}
				t.Logf("err: %v", err)
				j.check(t)
			})
		}
	}
}

// routeFor rebuilds route name with the jail's real base directory.
func routeFor(j *jail, name string) route {
	for _, r := range hostileRoutes(j.base) {
		if r.name == name {
			return r
		}
	}
	panic(name)
}

func TestApplyEscapeMessage(t *testing.T) {
	j := newJail(t)
	_, err := ApplyLayer(j.root, bytes.NewReader(makeTar(t, te{name: "../x", body: "x"})), ApplyOptions{})
	want := `layertar: apply layer: entry "../x": path escapes the layer root`
	if err == nil || err.Error() != want || !errors.Is(err, errEscape) {
		t.Errorf("err %v, want %s", err, want)
	}
	j.check(t)
}

// FuzzApplyLayer: whatever the tar, ApplyLayer does not panic and leaves
// everything outside its root as it was.
func FuzzApplyLayer(f *testing.F) {
	requireRoot(f)
	for _, r := range hostileRoutes("/tmp") {
		f.Add(makeTar(f, r.entries...))
	}
	f.Add(makeTar(f, te{name: "a/", typ: tar.TypeDir}, te{name: "a/b", body: "b"}, te{name: "a/c", typ: tar.TypeLink, link: "a/b"},
		te{name: "a/.wh..wh..opq"}, te{name: ".wh.a"}))
	src := f.TempDir()
	mkNode(f, src, node{path: "d/f", kind: unix.S_IFREG, mode: 0o4755, body: "f", xattrs: map[string]string{"user.x": "y"}})
	mkNode(f, src, node{path: "d/l", kind: unix.S_IFLNK, target: "f"})
	mkNode(f, src, node{path: "d/h", target: "d/f"})
	rc, err := TarTree(src, IdentityMapping{})
	must(f, err)
	f.Add(readAllClose(f, rc))
	f.Fuzz(func(t *testing.T, data []byte) {
		j := newJail(t)
		_, _ = ApplyLayer(j.root, bytes.NewReader(data), ApplyOptions{MaxEntries: 256})
		j.check(t)
	})
}
