//go:build linux && cgo

package compat_test

import (
	"archive/tar"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/pkg/archive"
	"github.com/docker/docker/pkg/chrootarchive"
	"github.com/thinlayer/thinlayer/layertar"
	"golang.org/x/sys/unix"
)

// The differential test of layer apply: a tar made from the fuzzer's bytes
// is applied to two identical lower trees, by layertar.ApplyLayer and by
// Moby v24's chrootarchive.ApplyUncompressedLayer, and the trees must come
// out equal (names, types, modes, owners, user.* xattrs, link targets,
// contents, hard link counts). Both failing is equal. thinlayer may refuse where Moby
// applies only with layertar.ErrEscape (documented there).

// diffPaths are the entry names a program picks from: the lower tree's
// directories, symlinks (s→c, abs→/c, up→../c, l2→c/b) and files, and
// names that do not exist yet.
var diffPaths = []string{
	"a", "a/b", "a2", "a2/b", "c", "c/b", "c/b/d", "c/q", "c/q/z", "s",
	"s/b", "s/q", "s/q/z", "f", "f/x", "e", "nodir", "nodir/y", "abs/b",
	"up/b", "l2", "l2/n", "h1", "h2", ".", "c/f", "dangling", "dangling/x",
}

// diffSymlinks are the symlink targets a program picks from.
var diffSymlinks = []string{"c", "../c", "/c", "b", "../../c", "nowhere", "f", "/", "c/b", "..", "s", "/c/b/d"}

// diffOp is one tar entry of a program.
type diffOp struct{ op, a, b byte }

func (o diffOp) header() *tar.Header {
	p := diffPaths[int(o.a)%len(diffPaths)]
	q := diffPaths[int(o.b)%len(diffPaths)]
	h := &tar.Header{Name: p, Typeflag: tar.TypeReg, Mode: 0o644, ModTime: time.Unix(1700000000, 0), Format: tar.FormatPAX}
	if o.b&0x80 != 0 {
		h.Uid, h.Gid = 1000, 1001
	}
	if o.op&0x80 != 0 {
		h.PAXRecords = map[string]string{"SCHILY.xattr.user.t": string('a' + o.op%7)}
	}
	defer func() {
		if o.a&0x80 != 0 {
			h.Name = "/" + h.Name // Moby cleans but does not trim it
		}
	}()
	switch o.op % 10 {
	case 0:
		h.Typeflag, h.Name = tar.TypeDir, p+"/"
		h.Mode = []int64{0o755, 0o700, 0o2750, 0o1777}[o.b%4]
	case 1:
		h.Mode = []int64{0o644, 0o600, 0o4755, 0o444}[o.b%4]
	case 2:
		h.Typeflag, h.Linkname = tar.TypeSymlink, diffSymlinks[int(o.b)%len(diffSymlinks)]
		h.Mode = 0o777
	case 3:
		h.Typeflag, h.Linkname = tar.TypeLink, q
	case 4:
		d, base := path.Split(p)
		h.Name = d + ".wh." + base
	case 5:
		h.Name = p + "/.wh..wh..opq"
	case 6:
		h.Name = fmt.Sprintf(".wh..wh.plnk/%d", o.b%2)
	case 7:
		h.Typeflag, h.Linkname = tar.TypeLink, fmt.Sprintf(".wh..wh.plnk/%d", o.b%2)
	case 8:
		h.Typeflag = tar.TypeFifo
		if o.b&0x40 != 0 {
			// archive/tar writes nothing else of a global header
			h = &tar.Header{Name: h.Name, Typeflag: tar.TypeXGlobalHeader, PAXRecords: map[string]string{"comment": "g"}}
		}
	case 9:
		d, base := path.Split(p)
		h.Name = d + ".wh..wh." + base
	}
	if h.Typeflag == tar.TypeReg {
		h.Size = int64(o.b % 3 * 5)
	}
	return h
}

// programTar turns the fuzzer's bytes into a tar of at most 16 entries
// (3 bytes each) and a listing of it for failure messages.
func programTar(t testing.TB, data []byte) ([]byte, string) {
	var buf bytes.Buffer
	var list strings.Builder
	tw := tar.NewWriter(&buf)
	for i := 0; i+3 <= len(data) && i < 48; i += 3 {
		h := diffOp{data[i], data[i+1], data[i+2]}.header()
		fmt.Fprintf(&list, "  %c %s -> %q mode %o uid %d size %d pax %v\n", h.Typeflag, h.Name, h.Linkname, h.Mode, h.Uid, h.Size, h.PAXRecords)
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(bytes.Repeat([]byte{'a' + data[i+2]%26}, int(h.Size))); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes(), list.String()
}

// makeLower builds the lower tree both applies start from.
func makeLower(t testing.TB, root string) {
	files := map[string]string{"c/b/old": "old", "c/b/d/deep": "deep", "c/f": "cf", "f": "f", "h1": "hh", "e/.keep": ""}
	for p, body := range files {
		must(t, os.MkdirAll(filepath.Join(root, filepath.Dir(p)), 0o755))
		must(t, os.WriteFile(filepath.Join(root, p), []byte(body), 0o644))
	}
	must(t, os.Chown(filepath.Join(root, "c/f"), 1000, 1000))
	must(t, os.Chmod(filepath.Join(root, "e"), 0o700))
	must(t, os.Link(filepath.Join(root, "h1"), filepath.Join(root, "h2")))
	for l, target := range map[string]string{"s": "c", "abs": "/c", "up": "../c", "l2": "c/b", "dangling": "nowhere"} {
		must(t, os.Symlink(target, filepath.Join(root, l)))
	}
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// treeFacts lists what the comparison looks at, one line per path.
func treeFacts(t testing.TB, root string) []string {
	var out []string
	err := filepath.WalkDir(root, func(p string, _ fs.DirEntry, err error) error {
		if err != nil || p == root {
			return err
		}
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		line := fmt.Sprintf("%s mode %o uid %d gid %d%s", rel, st.Mode, st.Uid, st.Gid, userXattrs(p))
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFLNK:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			line += " -> " + target
		case unix.S_IFREG:
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			line += fmt.Sprintf(" nlink %d %q", st.Nlink, data)
		}
		out = append(out, line)
		return nil
	})
	must(t, err)
	sort.Strings(out)
	return out
}

// userXattrs lists the user.* xattrs of p (" user.t=v"), sorted.
func userXattrs(p string) string {
	buf := make([]byte, 1024)
	n, err := unix.Llistxattr(p, buf)
	if err != nil {
		return ""
	}
	var out []string
	for _, name := range strings.Split(string(buf[:n]), "\x00") {
		if strings.HasPrefix(name, "user.") {
			v := make([]byte, 256)
			if m, err := unix.Lgetxattr(p, name, v); err == nil {
				out = append(out, " "+name+"="+string(v[:m]))
			}
		}
	}
	sort.Strings(out)
	return strings.Join(out, "")
}

// applyBoth applies data to two copies of the lower tree and returns
// fsutil's and Moby's errors and trees.
func applyBoth(t testing.TB, data []byte) (thinErr, mobyErr error, thin, moby []string) {
	base := scratchDir(t)
	thinRoot, mobyRoot := filepath.Join(base, "thin"), filepath.Join(base, "moby")
	makeLower(t, thinRoot)
	makeLower(t, mobyRoot)
	_, thinErr = layertar.ApplyLayer(thinRoot, bytes.NewReader(data), layertar.ApplyOptions{})
	mobyErr = mobyApply(mobyRoot, data)
	return thinErr, mobyErr, treeFacts(t, thinRoot), treeFacts(t, mobyRoot)
}

// scratchDir is a temporary directory on tmpfs where there is one: the
// applies are many small metadata writes, slow on a loaded disk.
func scratchDir(t testing.TB) string {
	dir, err := os.MkdirTemp("/dev/shm", "thinlayer-applydiff-")
	if err != nil {
		return t.TempDir()
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// mobyApply applies data with Moby's chrootarchive. A whiteout below a
// FIFO (".wh.x" in a directory the tar replaced by a FIFO) makes Moby's
// os.RemoveAll open the FIFO as the parent directory, which blocks until a
// writer comes, forever in a daemon: while the apply runs, every FIFO in
// the tree gets a writer that comes and goes, after which Moby fails as
// thinlayer does (ENOTDIR).
func mobyApply(root string, data []byte) error {
	done := make(chan error, 1)
	go func() {
		_, err := chrootarchive.ApplyUncompressedLayer(root, bytes.NewReader(data), &archive.TarOptions{})
		done <- err
	}()
	for {
		select {
		case err := <-done:
			return err
		case <-time.After(100 * time.Millisecond):
			pokeFIFOs(root)
		}
	}
}

func pokeFIFOs(root string) {
	_ = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Type()&fs.ModeNamedPipe != 0 {
			if fd, err := unix.Open(p, unix.O_WRONLY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0); err == nil {
				unix.Close(fd)
			}
		}
		return nil
	})
}

// checkSame fails t where the two applies of program differ.
func checkSame(t testing.TB, program []byte) {
	data, listing := programTar(t, program)
	thinErr, mobyErr, thin, moby := applyBoth(t, data)
	switch {
	case thinErr != nil && mobyErr != nil:
		return
	case thinErr != nil && errors.Is(thinErr, layertar.ErrEscape):
		return // a documented refusal
	case thinErr != nil || mobyErr != nil:
		t.Fatalf("tar:\n%sthinlayer: %v\nmoby: %v\nthinlayer tree:\n  %s\nmoby tree:\n  %s", listing, thinErr, mobyErr,
			strings.Join(thin, "\n  "), strings.Join(moby, "\n  "))
	}
	if d := lineDiff(moby, thin); d != "" {
		t.Fatalf("tar:\n%strees differ (- moby, + thinlayer):\n%s", listing, d)
	}
}

func lineDiff(a, b []string) string {
	in := func(s []string) map[string]bool {
		m := make(map[string]bool)
		for _, x := range s {
			m[x] = true
		}
		return m
	}
	ma, mb := in(a), in(b)
	var d strings.Builder
	for _, x := range a {
		if !mb[x] {
			fmt.Fprintf(&d, "  - %s\n", x)
		}
	}
	for _, x := range b {
		if !ma[x] {
			fmt.Fprintf(&d, "  + %s\n", x)
		}
	}
	return d.String()
}

// prog builds a program from (op, path, arg) triples naming paths and
// symlink targets by value, for the seed corpus.
func prog(ops ...any) []byte {
	var out []byte
	idx := func(list []string, s string) byte {
		for i, x := range list {
			if x == s {
				return byte(i)
			}
		}
		panic("not in list: " + s)
	}
	for i := 0; i+3 <= len(ops); i += 3 {
		op := byte(ops[i].(int))
		a := idx(diffPaths, ops[i+1].(string))
		var b byte
		switch v := ops[i+2].(type) {
		case int:
			b = byte(v)
		case string:
			if op%10 == 2 {
				b = idx(diffSymlinks, v)
			} else {
				b = idx(diffPaths, v)
			}
		}
		out = append(out, op, a, b)
	}
	return out
}

// diffSeeds are the cases where fsutil and Moby differed (issue 17 item
// 10, then what this fuzz target found).
var diffSeeds = map[string][]byte{
	// a2 and a2/b made, a2 replaced by a symlink to c: the opaque
	// marker then empties c/b.
	"opaque-through-replaced-dir": prog(0, "a2", 0, 0, "a2/b", 0, 2, "a2", "c", 5, "a2/b", 0),
	// An opaque marker in a symlink (s→c) or a file changes nothing.
	"opaque-in-symlink": prog(5, "s", 0),
	"opaque-in-file":    prog(5, "f", 0),
	// A whiteout in a missing directory creates it.
	"whiteout-implies-dir": prog(4, "nodir/y", 0),
	// c/q/z written through s: c's opaque marker removes it.
	"opaque-alias-write": prog(0, "c/q", 0, 1, "s/q/z", 1, 5, "c", 0),
	// A hard link into .wh..wh.plnk copies the aufs file.
	// A whiteout below a FIFO: Moby blocks opening the FIFO as a
	// directory (mobyApply unblocks it), thinlayer fails with ENOTDIR.
	"whiteout-below-fifo": prog(8, "l2", 0, 9, "l2/n", 0),
	// Implied directories in a setgid directory keep its setgid bit.
	"implied-dir-setgid": prog(0, "s", 2, 8, "s/q/z", 0),
	// A directory's times are set at the end through what its name is
	// then: Moby fails when that is a dangling symlink.
	"dir-times-dangling": prog(0, "a", 0, 2, "a", "nowhere"),
	// user.* xattrs on a file, a symlink (refused by the kernel, ignored
	// by both), a hard link and a merged directory.
	"xattrs": prog(0x81, "a", 0, 0x82, "l2", "c", 0x83, "h1", "f", 0x80, "c", 0),
	// A PAX global header removes what is at its name.
	"global-header": prog(8, "f", 0x40, 8, "c/b", 0x40, 8, "nodir/y", 0x40, 5, "nodir", 0, 8, "dangling/x", 0x40),
	"aufs-hardlink": prog(6, "a", 0, 6, "a", 1, 7, "a", 0, 7, "c/f", 1),
}

// TestApplyMatchesMoby runs the seed programs (also the fuzz target's
// corpus) by name.
func TestApplyMatchesMoby(t *testing.T) {
	requireApplyRoot(t)
	names := make([]string, 0, len(diffSeeds))
	for n := range diffSeeds {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		t.Run(n, func(t *testing.T) { checkSame(t, diffSeeds[n]) })
	}
}

func FuzzApplyMatchesMoby(f *testing.F) {
	requireApplyRoot(f)
	for _, p := range diffSeeds {
		f.Add(p)
	}
	f.Fuzz(func(t *testing.T, program []byte) { checkSame(t, program) })
}

// requireApplyRoot: both applies chown, and Moby's chroots.
func requireApplyRoot(t testing.TB) {
	if os.Geteuid() != 0 {
		t.Fatal("the differential apply test needs root (chown, chroot)")
	}
}
