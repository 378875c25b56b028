package layertar

import (
	"archive/tar"
	"bytes"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// want is the expected type, permission bits and owner of one path.
type want struct {
	kind     uint32
	mode     uint32
	uid, gid uint32
	body     string
}

func checkWant(t *testing.T, root string, ws map[string]want) {
	t.Helper()
	for p, w := range ws {
		var st unix.Stat_t
		full := filepath.Join(root, p)
		if err := unix.Lstat(full, &st); err != nil {
			t.Errorf("%s: %v", p, err)
			continue
		}
		if st.Mode&unix.S_IFMT != w.kind || st.Mode&0o7777 != w.mode || st.Uid != w.uid || st.Gid != w.gid {
			t.Errorf("%s: mode %o owner %d:%d, want %o %d:%d", p, st.Mode, st.Uid, st.Gid, w.kind|w.mode, w.uid, w.gid)
		}
		if w.kind == unix.S_IFREG {
			if b, err := os.ReadFile(full); err != nil || string(b) != w.body {
				t.Errorf("%s: body %q, %v, want %q", p, b, err, w.body)
			}
		}
	}
}

func apply(t *testing.T, root string, entries ...te) {
	t.Helper()
	if _, err := ApplyLayer(root, bytes.NewReader(makeTar(t, entries...)), ApplyOptions{}); err != nil {
		t.Fatal(err)
	}
}

// Entries repeated inside a directory the tar created (where creation
// is tried before any lstat) replace the earlier ones as anywhere else.
func TestApplyDuplicatesInNewDir(t *testing.T) {
	requireRoot(t)
	root := t.TempDir()
	apply(t, root,
		te{name: "d/", typ: tar.TypeDir, mode: 0o755},
		te{name: "d/f", body: "one", mode: 0o644},
		te{name: "d/f", body: "two", mode: 0o600, uid: 7, gid: 8},
		te{name: "d/f2d", body: "file"},
		te{name: "d/f2d/", typ: tar.TypeDir, mode: 0o711},
		te{name: "d/d2f/", typ: tar.TypeDir, mode: 0o755},
		te{name: "d/d2f/child", body: "gone"},
		te{name: "d/d2f", body: "now a file"},
		te{name: "d/sub/", typ: tar.TypeDir, mode: 0o755},
		te{name: "d/sub/", typ: tar.TypeDir, mode: 0o750, uid: 5, gid: 6},
		te{name: "d/sub/x", body: "x", mode: 0o640},
		te{name: "d/s", typ: tar.TypeSymlink, link: "f"},
		te{name: "d/s", body: "not a link"},
		te{name: "d/l", typ: tar.TypeLink, link: "d/f", mode: 0o600, uid: 7, gid: 8},
		te{name: "d/l", typ: tar.TypeLink, link: "d/s", mode: 0o644},
		te{name: "d/p", typ: tar.TypeFifo, mode: 0o644},
		te{name: "d/p", typ: tar.TypeFifo, mode: 0o600},
	)
	checkWant(t, root, map[string]want{
		"d/f":     {unix.S_IFREG, 0o600, 7, 8, "two"},
		"d/f2d":   {unix.S_IFDIR, 0o711, 0, 0, ""},
		"d/d2f":   {unix.S_IFREG, 0o644, 0, 0, "now a file"},
		"d/sub":   {unix.S_IFDIR, 0o750, 5, 6, ""},
		"d/sub/x": {unix.S_IFREG, 0o640, 0, 0, "x"},
		"d/s":     {unix.S_IFREG, 0o644, 0, 0, "not a link"},
		"d/l":     {unix.S_IFREG, 0o644, 0, 0, "not a link"},
		"d/p":     {unix.S_IFIFO, 0o600, 0, 0, ""},
	})
}

// New inodes in a setgid directory (the tar's or a pre-existing one) get
// the tar's group and mode, not the directory's group and setgid bit.
func TestApplySetgidParents(t *testing.T) {
	requireRoot(t)
	root := t.TempDir()
	must(t, os.Chown(root, 0, 1000))
	must(t, unix.Chmod(root, 0o2755))
	apply(t, root,
		te{name: "f", body: "f"},
		te{name: "d/", typ: tar.TypeDir, mode: 0o755},
		te{name: "d/f", body: "df"},
		te{name: "g/", typ: tar.TypeDir, mode: 0o2775, gid: 1000},
		te{name: "g/f", body: "gf", mode: 0o644},
		te{name: "g/s", typ: tar.TypeSymlink, link: "f"},
		te{name: "g/sub/", typ: tar.TypeDir, mode: 0o755},
		te{name: "g/sub/f", body: "gsf", mode: 0o644},
		te{name: "g/suid", body: "x", mode: 0o4755},
		te{name: "g/sgid", body: "x", mode: 0o2755, uid: 3, gid: 4},
	)
	checkWant(t, root, map[string]want{
		".":       {unix.S_IFDIR, 0o2755, 0, 1000, ""},
		"f":       {unix.S_IFREG, 0o644, 0, 0, "f"},
		"d":       {unix.S_IFDIR, 0o755, 0, 0, ""},
		"d/f":     {unix.S_IFREG, 0o644, 0, 0, "df"},
		"g":       {unix.S_IFDIR, 0o2775, 0, 1000, ""},
		"g/f":     {unix.S_IFREG, 0o644, 0, 0, "gf"},
		"g/s":     {unix.S_IFLNK, 0o777, 0, 0, ""},
		"g/sub":   {unix.S_IFDIR, 0o755, 0, 0, ""},
		"g/sub/f": {unix.S_IFREG, 0o644, 0, 0, "gsf"},
		"g/suid":  {unix.S_IFREG, 0o4755, 0, 0, "x"},
		"g/sgid":  {unix.S_IFREG, 0o2755, 3, 4, "x"},
	})
}

// A directory made setgid by a later entry, reached through a symlink,
// is not taken for the plain directory the apply created.
func TestApplyMergeThroughSymlink(t *testing.T) {
	requireRoot(t)
	root := t.TempDir()
	apply(t, root,
		te{name: "p/", typ: tar.TypeDir, mode: 0o755},
		te{name: "p/d/", typ: tar.TypeDir, mode: 0o755},
		te{name: "s", typ: tar.TypeSymlink, link: "/p"},
		te{name: "s/d/", typ: tar.TypeDir, mode: 0o2755, gid: 1000},
		te{name: "p/d/f", body: "f"},
	)
	checkWant(t, root, map[string]want{
		"p/d":   {unix.S_IFDIR, 0o2755, 0, 1000, ""},
		"p/d/f": {unix.S_IFREG, 0o644, 0, 0, "f"},
	})
}

// A umask that would cut the tar's mode bits does not.
func TestApplyUmask(t *testing.T) {
	requireRoot(t)
	old := syscall.Umask(0o077)
	defer syscall.Umask(old)
	root := t.TempDir()
	apply(t, root,
		te{name: "d/", typ: tar.TypeDir, mode: 0o755},
		te{name: "d/f", body: "f", mode: 0o644},
		te{name: "d/p", typ: tar.TypeFifo, mode: 0o666},
	)
	checkWant(t, root, map[string]want{
		"d":   {unix.S_IFDIR, 0o755, 0, 0, ""},
		"d/f": {unix.S_IFREG, 0o644, 0, 0, "f"},
		"d/p": {unix.S_IFIFO, 0o666, 0, 0, ""},
	})
}

// posixACL encodes a POSIX ACL xattr of user::u, group::g, other::o.
func posixACL(u, g, o uint16) []byte {
	b := binary.LittleEndian.AppendUint32(nil, 2)
	for _, e := range [][2]uint16{{0x01, u}, {0x04, g}, {0x20, o}} {
		b = binary.LittleEndian.AppendUint16(b, e[0])
		b = binary.LittleEndian.AppendUint16(b, e[1])
		b = binary.LittleEndian.AppendUint32(b, 0xffffffff)
	}
	return b
}

// A default ACL on the root (or set by the tar on its own directory)
// would cut new inodes' modes; the tar's modes still win.
func TestApplyDefaultACL(t *testing.T) {
	requireRoot(t)
	root := t.TempDir()
	err := unix.Setxattr(root, "system.posix_acl_default", posixACL(7, 0, 0), 0)
	if errors.Is(err, unix.ENOTSUP) || errors.Is(err, unix.EOPNOTSUPP) {
		t.Skip("no ACLs on", root)
	}
	must(t, err)
	acl := string(posixACL(7, 0, 0))
	apply(t, root,
		te{name: "f", body: "f", mode: 0o644},
		te{name: "d/", typ: tar.TypeDir, mode: 0o755},
		te{name: "d/f", body: "df", mode: 0o644},
		te{name: "a/", typ: tar.TypeDir, mode: 0o755, pax: map[string]string{"SCHILY.xattr.system.posix_acl_default": acl}},
		te{name: "a/f", body: "af", mode: 0o644},
	)
	checkWant(t, root, map[string]want{
		"f":   {unix.S_IFREG, 0o644, 0, 0, "f"},
		"d":   {unix.S_IFDIR, 0o755, 0, 0, ""},
		"d/f": {unix.S_IFREG, 0o644, 0, 0, "df"},
		"a":   {unix.S_IFDIR, 0o755, 0, 0, ""},
		"a/f": {unix.S_IFREG, 0o644, 0, 0, "af"},
	})
}

func TestParseCreds(t *testing.T) {
	c, ok := parseCreds([]byte("Name:\tx\nUmask:\t0027\nState:\tR\nUid:\t1\t2\t3\t4\nGid:\t5\t6\t7\t8\n"))
	if !ok || c.umask != 0o027 || c.fsuid != 4 || c.fsgid != 8 {
		t.Errorf("got %+v %v", c, ok)
	}
	if _, ok := parseCreds([]byte("Name:\tx\nUid:\t1\t2\t3\t4\nGid:\t5\t6\t7\t8\n")); ok {
		t.Error("no Umask line: want not ok")
	}
	if _, ok := parseCreds([]byte("Umask:\t0022\nUid:\t1\t2\t3\t4\nGid:\t5\t6")); ok {
		t.Error("partial Gid line: want not ok")
	}
}

// copyContent reads exactly the lstat's size, and a file shorter than
// that fails the tar instead of padding it.
func TestCopyContentSize(t *testing.T) {
	p := filepath.Join(t.TempDir(), "f")
	must(t, os.WriteFile(p, bytes.Repeat([]byte("y"), 100), 0o644))
	fd, err := unix.Open(p, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	must(t, err)
	defer unix.Close(fd)
	var out bytes.Buffer
	ta := &tarAppender{tw: tar.NewWriter(&out), buf: make([]byte, 16)}
	must(t, ta.tw.WriteHeader(&tar.Header{Name: "f", Typeflag: tar.TypeReg, Size: 60, Mode: 0o644}))
	must(t, ta.copyContent(fd, "f", 60)) // grew since the lstat: the rest is left out
	_, err = unix.Seek(fd, 0, 0)
	must(t, err)
	must(t, ta.tw.WriteHeader(&tar.Header{Name: "g", Typeflag: tar.TypeReg, Size: 150, Mode: 0o644}))
	err = ta.copyContent(fd, "g", 150)
	if err == nil || !strings.Contains(err.Error(), "shrank from 150 to 100 bytes") {
		t.Errorf("short file: err %v", err)
	}
}
