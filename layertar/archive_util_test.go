package layertar

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/thinlayer/thinlayer/testutil"
)

// requireRoot skips a test that needs root (chown, mknod, security
// xattrs), or fails it under THINLAYER_REQUIRE_KERNEL=1, as CI runs.
func requireRoot(t testing.TB) { requireRootAs(t, os.Geteuid()) }

func requireRootAs(t testing.TB, euid int) {
	t.Helper()
	if euid != 0 {
		testutil.SkipOrFail(t, "needs root (chown, mknod, security xattrs)")
	}
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// capV2 is a valid VFS_CAP_REVISION_2 security.capability value granting
// cap_net_raw (effective, permitted).
func capV2() string {
	b := make([]byte, 20)
	binary.LittleEndian.PutUint32(b[0:], 0x02000001)
	binary.LittleEndian.PutUint32(b[4:], 1<<13)
	return string(b)
}

// node describes one file for mkNode.
type node struct {
	path   string
	kind   uint32 // unix.S_IFREG etc.
	mode   uint32
	uid    int
	gid    int
	body   string
	target string // symlink target, or hard link source (relative to root)
	dev    uint64
	xattrs map[string]string
}

func mkNode(t testing.TB, root string, n node) {
	t.Helper()
	p := filepath.Join(root, n.path)
	must(t, os.MkdirAll(filepath.Dir(p), 0o755))
	switch n.kind {
	case unix.S_IFREG:
		must(t, os.WriteFile(p, []byte(n.body), 0o600))
	case unix.S_IFDIR:
		must(t, os.MkdirAll(p, 0o700))
	case unix.S_IFLNK:
		must(t, os.Symlink(n.target, p))
	case 0: // hard link
		must(t, os.Link(filepath.Join(root, n.target), p))
		return
	default:
		must(t, unix.Mknod(p, n.kind|n.mode, int(n.dev)))
	}
	must(t, os.Lchown(p, n.uid, n.gid))
	if n.kind != unix.S_IFLNK {
		must(t, unix.Chmod(p, n.mode))
	}
	for k, v := range n.xattrs {
		must(t, unix.Lsetxattr(p, k, []byte(v), 0))
	}
}

// setTimes gives every entry below root a distinct mtime with a non-zero
// nanosecond part, directories last and deepest first.
func setTimes(t testing.TB, root string) {
	t.Helper()
	var paths []string
	must(t, filepath.WalkDir(root, func(p string, _ fs.DirEntry, err error) error {
		if p != root {
			paths = append(paths, p)
		}
		return err
	}))
	sort.Slice(paths, func(i, j int) bool { return len(paths[i]) > len(paths[j]) })
	for i, p := range paths {
		ts := []unix.Timespec{{Sec: 1500000000 + int64(i)*7, Nsec: 111}, {Sec: 1600000000 + int64(i)*13, Nsec: 987654321}}
		must(t, unix.UtimesNanoAt(unix.AT_FDCWD, p, ts, unix.AT_SYMLINK_NOFOLLOW))
	}
}

// buildTree makes a tree with every kind of entry the layer tars carry.
func buildTree(t testing.TB, root string) {
	t.Helper()
	big := make([]byte, 100<<10)
	for i := range big {
		big[i] = byte(i*7 + i/251)
	}
	R, D, L := uint32(unix.S_IFREG), uint32(unix.S_IFDIR), uint32(unix.S_IFLNK)
	for _, n := range []node{
		{path: "bin", kind: D, mode: 0o755},
		{path: "bin/su", kind: R, mode: 0o4755, body: "su binary"},
		{path: "bin/sg", kind: R, mode: 0o2755, gid: 42, body: "sg binary"},
		{path: "bin/ping", kind: R, mode: 0o755, body: "ping", xattrs: map[string]string{capabilityXattr: capV2()}},
		{path: "bin/su-hard", target: "bin/su"},
		{path: "bin/sh", kind: L, target: "su"},
		{path: "etc", kind: D, mode: 0o755},
		{path: "etc/passwd", kind: R, mode: 0o644, body: "root:x:0:0::/root:/bin/sh\n", xattrs: map[string]string{"user.comment": "hello"}},
		{path: "etc/shadow", kind: R, mode: 0o640, gid: 42, body: "root:*:1::::::\n"},
		{path: "etc/empty-file", kind: R, mode: 0o644},
		{path: "etc/abs", kind: L, target: "/etc/passwd"},
		{path: "home/user", kind: D, mode: 0o750, uid: 1000, gid: 1000, xattrs: map[string]string{"user.dirattr": "d"}},
		{path: "home/user/notes", kind: R, mode: 0o600, uid: 1000, gid: 1000, body: "notes"},
		{path: "home/user/big", kind: R, mode: 0o644, uid: 1000, gid: 1001, body: string(big)},
		{path: "home/user/link", kind: L, uid: 1000, gid: 1000, target: "../../etc"},
		{path: "dangling", kind: L, target: "nowhere/at/all"},
		{path: "run/fifo", kind: unix.S_IFIFO, mode: 0o620, uid: 1000, gid: 5},
		{path: "dev/null", kind: unix.S_IFCHR, mode: 0o666, dev: unix.Mkdev(1, 3)},
		{path: "dev/loopx", kind: unix.S_IFBLK, mode: 0o660, gid: 6, dev: unix.Mkdev(7, 200)},
		{path: "srv/a", kind: D, mode: 0o711, xattrs: map[string]string{"trusted.t": "tv"}},
		{path: "srv/a/b/c/deep", kind: R, mode: 0o444, body: "deep"},
		{path: "srv/a/hard", target: "bin/su"},
		{path: "empty", kind: D, mode: 0o700},
		{path: "tmp", kind: D, mode: 0o1777},
	} {
		mkNode(t, root, n)
	}
	setTimes(t, root)
}

// entrySnap is what compareTrees compares for one path.
type entrySnap struct {
	Mode     uint32
	UID, GID uint32
	Rdev     uint64
	Size     int64
	Mtime    int64 // seconds: layer tars carry whole seconds
	Nlink    uint64
	Target   string
	Sum      [32]byte
	Xattrs   string
}

func snapshotTree(t testing.TB, root string) map[string]entrySnap {
	t.Helper()
	out := make(map[string]entrySnap)
	must(t, filepath.WalkDir(root, func(p string, _ fs.DirEntry, err error) error {
		if err != nil || p == root {
			return err
		}
		var st unix.Stat_t
		must(t, unix.Lstat(p, &st))
		e := entrySnap{Mode: st.Mode, UID: st.Uid, GID: st.Gid, Rdev: st.Rdev, Mtime: st.Mtim.Sec, Xattrs: xattrString(t, p)}
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFDIR:
		case unix.S_IFLNK:
			e.Target, err = os.Readlink(p)
			e.Size = st.Size
		case unix.S_IFREG:
			data, err := os.ReadFile(p)
			must(t, err)
			e.Sum, e.Size, e.Nlink = sha256.Sum256(data), st.Size, st.Nlink
		default:
			e.Nlink = st.Nlink
		}
		rel, _ := filepath.Rel(root, p)
		out[rel] = e
		return err
	}))
	return out
}

// xattrString lists the xattrs of p that layer tars carry, sorted.
func xattrString(t testing.TB, p string) string {
	buf := make([]byte, 4096)
	n, err := unix.Llistxattr(p, buf)
	if errors.Is(err, unix.ENOTSUP) {
		return ""
	}
	must(t, err)
	var parts []string
	for _, name := range strings.Split(string(buf[:n]), "\x00") {
		if name == "" || name == "security.selinux" || strings.HasPrefix(name, "system.") {
			continue
		}
		v := make([]byte, 4096)
		m, err := unix.Lgetxattr(p, name, v)
		must(t, err)
		parts = append(parts, name+"="+string(v[:m]))
	}
	sort.Strings(parts)
	return strings.Join(parts, ";")
}

// compareTrees fails t for every path whose snapshot differs.
func compareTrees(t testing.TB, want, got string) {
	t.Helper()
	a, b := snapshotTree(t, want), snapshotTree(t, got)
	for p, wa := range a {
		gb, ok := b[p]
		if !ok {
			t.Errorf("%s: missing", p)
		} else if wa != gb {
			t.Errorf("%s differs:\nwant %+v\ngot  %+v", p, wa, gb)
		}
	}
	for p := range b {
		if _, ok := a[p]; !ok {
			t.Errorf("%s: unexpected", p)
		}
	}
}

// copyTree copies src into the new directory dst with cp -a (an
// independent check of what ApplyLayer produces).
func copyTree(t testing.TB, src, dst string) {
	t.Helper()
	must(t, os.MkdirAll(dst, 0o755))
	out, err := exec.Command("cp", "-a", src+"/.", dst+"/").CombinedOutput()
	if err != nil {
		t.Fatalf("cp -a: %v: %s", err, out)
	}
}

func readAllClose(t testing.TB, rc io.ReadCloser) []byte {
	t.Helper()
	data, err := io.ReadAll(rc)
	must(t, err)
	must(t, rc.Close())
	return data
}

// te is one entry of a hand-made tar.
type te struct {
	name string
	typ  byte
	body string
	link string
	mode int64
	uid  int
	gid  int
	pax  map[string]string
}

func makeTar(t testing.TB, entries ...te) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		typ, mode := e.typ, e.mode
		if typ == 0 {
			typ = tar.TypeReg
		}
		if mode == 0 {
			mode = 0o644
		}
		hdr := &tar.Header{Name: e.name, Typeflag: typ, Linkname: e.link, Mode: mode, Uid: e.uid, Gid: e.gid,
			ModTime: time.Unix(1700000000, 0), PAXRecords: e.pax, Format: tar.FormatPAX}
		if typ == tar.TypeGNUSparse {
			hdr.Format = tar.FormatGNU
		}
		if typ == tar.TypeXGlobalHeader { // archive/tar allows nothing else
			hdr = &tar.Header{Name: e.name, Typeflag: typ, PAXRecords: e.pax}
		}
		if typ == tar.TypeReg {
			hdr.Size = int64(len(e.body))
		}
		must(t, tw.WriteHeader(hdr))
		_, err := tw.Write([]byte(e.body))
		must(t, err)
	}
	must(t, tw.Close())
	return buf.Bytes()
}

func listDir(t testing.TB, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	must(t, err)
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}

// stopRecorder records how a helper ends a test instead of ending it.
type stopRecorder struct {
	testing.TB
	failed, skipped bool
}

func (r *stopRecorder) Helper()                 {}
func (r *stopRecorder) Fatalf(string, ...any)   { r.failed = true }
func (r *stopRecorder) Skipf(string, ...any)    { r.skipped = true }
func (r *stopRecorder) Skip(...any)             { r.skipped = true }
func (r *stopRecorder) stoppedBy() (bool, bool) { return r.failed, r.skipped }

// Without root the apply tests skip, but under THINLAYER_REQUIRE_KERNEL=1
// (CI) they fail: they cannot pass by not running.
func TestRequireRootFailsUnderRequireKernel(t *testing.T) {
	for env, wantFail := range map[string]bool{"1": true, "": false} {
		t.Setenv(testutil.EnvRequireKernel, env)
		r := &stopRecorder{TB: t}
		requireRootAs(r, 1000)
		if failed, skipped := r.stoppedBy(); failed != wantFail || (!failed && !skipped) {
			t.Errorf("%s=%q, not root: failed %v skipped %v, want failed %v", testutil.EnvRequireKernel, env, failed, skipped, wantFail)
		}
		r = &stopRecorder{TB: t}
		if requireRootAs(r, 0); r.failed || r.skipped {
			t.Errorf("%s=%q, root: stopped the test", testutil.EnvRequireKernel, env)
		}
	}
}
