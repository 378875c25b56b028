package layertar

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"
	"golang.org/x/sys/unix"
)

func TestTarTreeApplyRoundTrip(t *testing.T) {
	requireRoot(t)
	for _, byHand := range []bool{false, true} {
		name := "openat2"
		if byHand {
			name = "by-hand"
		}
		t.Run(name, func(t *testing.T) {
			withResolver(t, byHand)
			src, dst := filepath.Join(t.TempDir(), "src"), filepath.Join(t.TempDir(), "dst")
			must(t, os.Mkdir(src, 0o755))
			must(t, os.Mkdir(dst, 0o755))
			buildTree(t, src)
			rc, err := TarTree(src, IdentityMapping{})
			must(t, err)
			data := readAllClose(t, rc)
			size, err := ApplyLayer(dst, bytes.NewReader(data), ApplyOptions{})
			must(t, err)
			compareTrees(t, src, dst)
			if want := tarContentSize(t, data); size != want {
				t.Errorf("ApplyLayer size = %d, want %d", size, want)
			}
		})
	}
}

// withResolver forces the resolution without openat2 for one test.
func withResolver(t *testing.T, byHand bool) {
	old := noOpenat2.Load()
	noOpenat2.Store(byHand)
	t.Cleanup(func() { noOpenat2.Store(old) })
}

func tarContentSize(t *testing.T, data []byte) int64 {
	var n int64
	tr := tar.NewReader(bytes.NewReader(data))
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return n
		}
		must(t, err)
		n += hdr.Size
	}
}

func TestTarTreeHeaders(t *testing.T) {
	requireRoot(t)
	src := t.TempDir()
	buildTree(t, src)
	rc, err := TarTree(src, IdentityMapping{})
	must(t, err)
	hdrs := map[string]*tar.Header{}
	var order []string
	tr := tar.NewReader(bytes.NewReader(readAllClose(t, rc)))
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		must(t, err)
		hdrs[hdr.Name] = hdr
		order = append(order, hdr.Name)
	}
	if order[0] != "bin/" || hdrs["bin/"].Typeflag != tar.TypeDir {
		t.Errorf("first entry %q, want directory bin/", order[0])
	}
	if h := hdrs["bin/su-hard"]; h.Typeflag != tar.TypeLink || h.Linkname != "bin/su" || h.Size != 0 {
		t.Errorf("bin/su-hard: %+v", h)
	}
	if h := hdrs["bin/su"]; h.Mode != 0o4755 || h.Typeflag != tar.TypeReg || h.ModTime.Nanosecond() != 0 {
		t.Errorf("bin/su: mode %o type %c mtime %v", h.Mode, h.Typeflag, h.ModTime)
	}
	if h := hdrs["bin/ping"]; h.PAXRecords["SCHILY.xattr.security.capability"] != capV2() {
		t.Errorf("bin/ping PAX records %q", h.PAXRecords)
	}
	if h := hdrs["dev/null"]; h.Typeflag != tar.TypeChar || h.Devmajor != 1 || h.Devminor != 3 {
		t.Errorf("dev/null: %+v", h)
	}
	if h := hdrs["home/user/link"]; h.Typeflag != tar.TypeSymlink || h.Linkname != "../../etc" || h.Uid != 1000 {
		t.Errorf("home/user/link: %+v", h)
	}
	if h := hdrs["run/fifo"]; h.Typeflag != tar.TypeFifo {
		t.Errorf("run/fifo: %+v", h)
	}
}

func TestApplyWhiteouts(t *testing.T) {
	requireRoot(t)
	root := t.TempDir()
	for _, p := range []string{"f", "d/x", "d/sub/y", "keep", "o/a", "o/z/w", "o2/a", "top", "lnkdir/inside"} {
		mkNode(t, root, node{path: p, kind: unix.S_IFREG, mode: 0o644})
	}
	must(t, os.Symlink("lnkdir", filepath.Join(root, "lnk")))
	data := makeTar(t,
		te{name: ".wh.f"}, te{name: ".wh.d"}, te{name: ".wh.missing"}, te{name: ".wh.lnk"},
		te{name: ".wh..wh.plnk/123", body: "aufs"}, te{name: "x/.wh..wh.aufs"},
		te{name: "o/", typ: tar.TypeDir, mode: 0o755}, te{name: "o/z/", typ: tar.TypeDir, mode: 0o755},
		te{name: "o/new", body: "n"}, te{name: "o/z/n", body: "n"}, te{name: "o/.wh..wh..opq"},
		te{name: "o2/.wh..wh..opq"}, te{name: "o2/b", body: "b"},
		te{name: "fresh/", typ: tar.TypeDir, mode: 0o755}, te{name: "fresh/a"}, te{name: "fresh/.wh..wh..opq"},
	)
	_, err := ApplyLayer(root, bytes.NewReader(data), ApplyOptions{})
	must(t, err)
	want := map[string][]string{
		// As Moby: the parents of aufs metadata and of whiteouts are made.
		".":      {".wh..wh.plnk", "fresh", "keep", "lnkdir", "o", "o2", "top", "x"},
		"o":      {"new", "z"},
		"o/z":    {"n"},
		"o2":     {"b"},
		"lnkdir": {"inside"},
		"fresh":  {"a"},
	}
	for dir, names := range want {
		if got := strings.Join(listDir(t, filepath.Join(root, dir)), ","); got != strings.Join(names, ",") {
			t.Errorf("%s holds %s, want %v", dir, got, names)
		}
	}
	// A root-level opaque marker empties the root of what the tar did not write.
	_, err = ApplyLayer(root, bytes.NewReader(makeTar(t, te{name: "top", body: "t"}, te{name: ".wh..wh..opq"})), ApplyOptions{})
	must(t, err)
	if got := listDir(t, root); len(got) != 1 || got[0] != "top" {
		t.Errorf("root after opaque: %v", got)
	}
}

func TestApplyReplaces(t *testing.T) {
	requireRoot(t)
	base := t.TempDir()
	root := filepath.Join(base, "root")
	mkNode(t, root, node{path: "dir2file/child", kind: unix.S_IFREG, mode: 0o644})
	mkNode(t, root, node{path: "file2dir", kind: unix.S_IFREG, mode: 0o644})
	mkNode(t, root, node{path: "merge/old", kind: unix.S_IFREG, mode: 0o644})
	mkNode(t, base, node{path: "sentinel", kind: unix.S_IFREG, mode: 0o644, body: "keep"})
	must(t, os.Symlink(filepath.Join(base, "sentinel"), filepath.Join(root, "viaLink")))
	data := makeTar(t,
		te{name: "dir2file", body: "now a file"},
		te{name: "file2dir/", typ: tar.TypeDir, mode: 0o750},
		te{name: "merge/", typ: tar.TypeDir, mode: 0o700},
		te{name: "viaLink", body: "replaced the symlink", mode: 0o600},
	)
	_, err := ApplyLayer(root, bytes.NewReader(data), ApplyOptions{})
	must(t, err)
	checkFile(t, filepath.Join(root, "dir2file"), "now a file", 0o644)
	checkFile(t, filepath.Join(root, "viaLink"), "replaced the symlink", 0o600)
	checkFile(t, filepath.Join(base, "sentinel"), "keep", 0o644)
	checkFile(t, filepath.Join(root, "merge/old"), "", 0o644)
	for p, mode := range map[string]os.FileMode{"file2dir": 0o750, "merge": 0o700} {
		fi, err := os.Lstat(filepath.Join(root, p))
		must(t, err)
		if !fi.IsDir() || fi.Mode().Perm() != mode {
			t.Errorf("%s: %v, want dir %o", p, fi.Mode(), mode)
		}
	}
}

func checkFile(t *testing.T, p, body string, mode os.FileMode) {
	t.Helper()
	fi, err := os.Lstat(p)
	must(t, err)
	data, err := os.ReadFile(p)
	must(t, err)
	if !fi.Mode().IsRegular() || fi.Mode().Perm() != mode || string(data) != body {
		t.Errorf("%s: mode %v content %q, want regular %o %q", p, fi.Mode(), data, mode, body)
	}
}

func TestApplyTruncated(t *testing.T) {
	body := strings.Repeat("0123456789abcdef", 700)
	data := makeTar(t, te{name: "d/", typ: tar.TypeDir}, te{name: "d/f", body: body}, te{name: "g", body: "x"})
	cuts := map[string]int{
		"mid-content": 1024 + 512 + 3000,
		"mid-header":  1024 + 100,
		"no-trailer":  len(data) - 1024,
		"half":        len(data) / 2,
	}
	for name, n := range cuts {
		t.Run(name, func(t *testing.T) {
			_, err := ApplyLayer(t.TempDir(), bytes.NewReader(data[:n]), ApplyOptions{NoLchown: true})
			if !errors.Is(err, io.ErrUnexpectedEOF) {
				t.Fatalf("cut at %d of %d: err %v, want io.ErrUnexpectedEOF", n, len(data), err)
			}
		})
	}
	if _, err := ApplyLayer(t.TempDir(), bytes.NewReader(nil), ApplyOptions{}); err != nil {
		t.Errorf("empty stream: %v", err)
	}
}

func TestApplyLimits(t *testing.T) {
	cases := map[string]struct {
		data []byte
		opts ApplyOptions
		want string
	}{
		"entries":   {makeTar(t, te{name: "a"}, te{name: "b"}, te{name: "c"}), ApplyOptions{MaxEntries: 2}, "more than 2 entries"},
		"long name": {makeTar(t, te{name: strings.Repeat("a/", 2049) + "b"}), ApplyOptions{}, "exceeds 4096"},
		"component": {makeTar(t, te{name: strings.Repeat("a", 256)}), ApplyOptions{}, "exceeds 255"},
		"root file": {makeTar(t, te{name: "./", typ: tar.TypeDir}, te{name: ".", body: "x"}), ApplyOptions{}, "layer root"},
		"sparse":    {makeTar(t, te{name: "s", typ: tar.TypeGNUSparse}), ApplyOptions{}, "sparse"},
		"unmapped":  {makeTar(t, te{name: "u", uid: 70000}), ApplyOptions{IDMap: testMapping(100000)}, "container uid 70000"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := ApplyLayer(t.TempDir(), bytes.NewReader(c.data), c.opts)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err %v, want %q", err, c.want)
			}
		})
	}
}

func TestDecompressStream(t *testing.T) {
	plain := makeTar(t, te{name: "hello", body: strings.Repeat("hello world ", 1000)})
	var gz, zs bytes.Buffer
	gw := gzip.NewWriter(&gz)
	_, err := gw.Write(plain)
	must(t, err)
	must(t, gw.Close())
	zw, err := zstd.NewWriter(&zs)
	must(t, err)
	_, err = zw.Write(plain)
	must(t, err)
	must(t, zw.Close())
	for name, in := range map[string][]byte{"plain": plain, "gzip": gz.Bytes(), "zstd": zs.Bytes()} {
		rc, err := DecompressStream(bytes.NewReader(in))
		must(t, err)
		if got := readAllClose(t, rc); !bytes.Equal(got, plain) {
			t.Errorf("%s: got %d bytes, want the %d-byte tar", name, len(got), len(plain))
		}
	}
	if _, err := DecompressStream(bytes.NewReader([]byte{0xfd, '7', 'z', 'X', 'Z', 0, 1, 2})); err == nil ||
		!strings.Contains(err.Error(), "unsupported compression") {
		t.Errorf("xz: err %v", err)
	}
	rc, err := DecompressStream(bytes.NewReader(nil))
	must(t, err)
	if got := readAllClose(t, rc); len(got) != 0 {
		t.Errorf("empty input gave %d bytes", len(got))
	}
	rc, err = DecompressStream(bytes.NewReader(gz.Bytes()[:len(gz.Bytes())/2]))
	must(t, err)
	if _, err := io.ReadAll(rc); err == nil {
		t.Error("truncated gzip read without error")
	}
}

func testMapping(host int) IdentityMapping {
	return IdentityMapping{
		UIDMaps: []IDMap{{ContainerID: 0, HostID: host, Size: 65536}},
		GIDMaps: []IDMap{{ContainerID: 0, HostID: host, Size: 65536}},
	}
}

func TestIDMapRoundTrip(t *testing.T) {
	requireRoot(t)
	src, dst := t.TempDir(), t.TempDir()
	mkNode(t, src, node{path: "rootfile", kind: unix.S_IFREG, mode: 0o644, uid: 100000, gid: 100000})
	mkNode(t, src, node{path: "userdir", kind: unix.S_IFDIR, mode: 0o755, uid: 101000, gid: 101001})
	must(t, os.Symlink("rootfile", filepath.Join(src, "userdir/link")))
	must(t, os.Lchown(filepath.Join(src, "userdir/link"), 101000, 100000))
	rc, err := TarTree(src, testMapping(100000))
	must(t, err)
	data := readAllClose(t, rc)
	tr := tar.NewReader(bytes.NewReader(data))
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		must(t, err)
		if hdr.Uid >= 65536 || hdr.Gid >= 65536 {
			t.Errorf("%s: header owner %d:%d not mapped to the container", hdr.Name, hdr.Uid, hdr.Gid)
		}
	}
	_, err = ApplyLayer(dst, bytes.NewReader(data), ApplyOptions{IDMap: testMapping(200000)})
	must(t, err)
	for p, want := range map[string][2]uint32{"rootfile": {200000, 200000}, "userdir": {201000, 201001}, "userdir/link": {201000, 200000}} {
		var st unix.Stat_t
		must(t, unix.Lstat(filepath.Join(dst, p), &st))
		if st.Uid != want[0] || st.Gid != want[1] {
			t.Errorf("%s owned by %d:%d, want %v", p, st.Uid, st.Gid, want)
		}
	}
	// A host owner outside the mapping fails the export, naming the ID.
	mkNode(t, src, node{path: "stray", kind: unix.S_IFREG, mode: 0o644, uid: 5, gid: 100000})
	rc, err = TarTree(src, testMapping(100000))
	must(t, err)
	if _, err := io.ReadAll(rc); err == nil || !strings.Contains(err.Error(), "host uid 5") {
		t.Errorf("unmapped export: err %v", err)
	}
	rc.Close()
}

func TestApplyNoLchownAndHardlinkTimes(t *testing.T) {
	dst := t.TempDir()
	data := makeTar(t, te{name: "a", body: "x", uid: 4242, mode: 0o640}, te{name: "b", typ: tar.TypeLink, link: "a", uid: 4242, mode: 0o640})
	_, err := ApplyLayer(dst, bytes.NewReader(data), ApplyOptions{NoLchown: true})
	must(t, err)
	var st unix.Stat_t
	must(t, unix.Lstat(filepath.Join(dst, "b"), &st))
	if int(st.Uid) != os.Geteuid() || st.Nlink != 2 || st.Mode&0o7777 != 0o640 || st.Mtim.Sec != 1700000000 {
		t.Errorf("b: %+v", st)
	}
}

// A tar of many small files keeps one hash per entry (the names an opaque
// marker keeps), no strings and no header.
func TestApplyStateBounded(t *testing.T) {
	pr, pw := io.Pipe()
	go func() {
		tw := tar.NewWriter(pw)
		err := tw.WriteHeader(&tar.Header{Name: "bomb/", Typeflag: tar.TypeDir, Mode: 0o755})
		for i := 0; i < 5000 && err == nil; i++ {
			err = tw.WriteHeader(&tar.Header{Name: "bomb/f" + strconv.Itoa(i), Typeflag: tar.TypeReg, Mode: 0o644})
		}
		if err == nil {
			err = tw.Close()
		}
		pw.CloseWithError(err)
	}()
	rootfd, err := unix.Open(t.TempDir(), unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	must(t, err)
	a := newApplier(rootfd, ApplyOptions{NoLchown: true})
	defer a.close()
	must(t, a.run(pr))
	if a.entries != 5001 || len(a.written) != 5001 || len(a.dirs) > 1 || a.aufs != nil {
		t.Errorf("entries %d, state: written %d dirs %d", a.entries, len(a.written), len(a.dirs))
	}
}
