package fsutil

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/bzip2"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"
)

const (
	whiteoutPrefix = ".wh."
	whiteoutMeta   = ".wh..wh."
	whiteoutOpaque = ".wh..wh..opq"
	xattrPAXPrefix = "SCHILY.xattr."
	copyBufSize    = 32 << 10
)

// TarTree streams the whole tree at dir (not the root itself) as an
// uncompressed tar in lexical order, with the headers of ExportChanges.
// Owners are mapped host→container through idMap. Sockets are skipped.
func TarTree(dir string, idMap IdentityMapping) (io.ReadCloser, error) {
	if err := checkDir(dir); err != nil {
		return nil, fmt.Errorf("fsutil: tar tree: %w", err)
	}
	return startTar(idMap, func(ta *tarAppender) error {
		return filepath.WalkDir(dir, func(p string, _ fs.DirEntry, err error) error {
			if err != nil {
				return fmt.Errorf("fsutil: tar tree: %w", err)
			}
			if p == dir {
				return nil
			}
			rel, err := filepath.Rel(dir, p)
			if err != nil {
				return fmt.Errorf("fsutil: tar tree: %w", err)
			}
			return ta.addFile(p, filepath.ToSlash(rel), false)
		})
	}), nil
}

// ExportChanges streams the changes (as Changes returns them) of the tree
// at dir as an uncompressed tar, sorted by path: a ".wh.<name>" whiteout for
// each deletion, the entry itself (not its children) for each addition or
// modification. Headers carry mode with setuid/setgid/sticky, owner mapped
// host→container through idMap, mtime in whole seconds, symlink targets,
// device numbers, and the security.*, user.* and trusted.* xattrs (except
// security.selinux) as "SCHILY.xattr.<name>" PAX records. An inode exported
// a second time becomes a hard link to the first name. A path that
// vanished since Changes ran is skipped.
func ExportChanges(dir string, changes []Change, idMap IdentityMapping) (io.ReadCloser, error) {
	if err := checkDir(dir); err != nil {
		return nil, fmt.Errorf("fsutil: export changes: %w", err)
	}
	sorted := append([]Change(nil), changes...)
	sort.SliceStable(sorted, func(i, j int) bool { return sorted[i].Path < sorted[j].Path })
	return startTar(idMap, func(ta *tarAppender) error {
		for _, c := range sorted {
			rel := strings.TrimPrefix(path.Clean("/"+c.Path), "/")
			if rel == "" {
				continue
			}
			if c.Kind == ChangeDelete {
				if err := ta.addWhiteout(rel); err != nil {
					return err
				}
				continue
			}
			if err := ta.addFile(filepath.Join(dir, rel), rel, true); err != nil {
				return err
			}
		}
		return nil
	}), nil
}

func checkDir(dir string) error {
	fi, err := os.Stat(dir)
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		return fmt.Errorf("%s: %w", dir, unix.ENOTDIR)
	}
	return nil
}

// startTar runs fill in a goroutine writing into a pipe; an error ends the
// stream with that error, and closing the reader early stops the writer.
func startTar(idMap IdentityMapping, fill func(*tarAppender) error) io.ReadCloser {
	pr, pw := io.Pipe()
	go func() {
		ta := &tarAppender{
			tw:    tar.NewWriter(pw),
			idMap: idMap,
			seen:  make(map[devIno]string),
			buf:   make([]byte, copyBufSize),
		}
		err := fill(ta)
		if err == nil {
			err = ta.tw.Close()
		}
		pw.CloseWithError(err)
	}()
	return pr
}

type devIno struct{ dev, ino uint64 }

type tarAppender struct {
	tw    *tar.Writer
	idMap IdentityMapping
	seen  map[devIno]string // first name of each multiply-linked inode
	buf   []byte
}

func (ta *tarAppender) addWhiteout(rel string) error {
	hdr := &tar.Header{
		Typeflag: tar.TypeReg,
		Name:     path.Join(path.Dir(rel), whiteoutPrefix+path.Base(rel)),
		ModTime:  time.Now().Truncate(time.Second),
		Format:   tar.FormatPAX,
	}
	if err := ta.tw.WriteHeader(hdr); err != nil {
		return fmt.Errorf("fsutil: tar whiteout %s: %w", hdr.Name, err)
	}
	return nil
}

// addFile writes the entry for file p under the tar name rel.
func (ta *tarAppender) addFile(p, rel string, skipMissing bool) error {
	var st unix.Stat_t
	if err := unix.Lstat(p, &st); err != nil {
		if skipMissing && errors.Is(err, unix.ENOENT) {
			logrus.Debugf("fsutil: export: %s vanished, skipped", p)
			return nil
		}
		return fmt.Errorf("fsutil: tar %s: %w", p, err)
	}
	hdr, err := tarHeader(p, rel, &st)
	if err != nil || hdr == nil {
		return err
	}
	if hdr.PAXRecords, err = readXattrs(p); err != nil {
		return fmt.Errorf("fsutil: tar %s: %w", p, err)
	}
	if hdr.Typeflag != tar.TypeDir && st.Nlink > 1 {
		key := devIno{dev: st.Dev, ino: st.Ino}
		if first, ok := ta.seen[key]; ok {
			hdr.Typeflag, hdr.Linkname, hdr.Size = tar.TypeLink, first, 0
		} else {
			ta.seen[key] = rel
		}
	}
	if hdr.Uid, hdr.Gid, err = ta.idMap.ToContainer(hdr.Uid, hdr.Gid); err != nil {
		return fmt.Errorf("fsutil: tar %s: %w", p, err)
	}
	if err := ta.tw.WriteHeader(hdr); err != nil {
		return fmt.Errorf("fsutil: tar %s: %w", p, err)
	}
	if hdr.Typeflag == tar.TypeReg && hdr.Size > 0 {
		return ta.copyContent(p, hdr.Size)
	}
	return nil
}

// copyContent copies the size bytes the lstat promised with plain
// read(2)s on a raw fd (an os.File costs an fcntl per file) and stops
// there: no read to find EOF. Bytes the file grew by are left out.
func (ta *tarAppender) copyContent(p string, size int64) error {
	fd, err := unix.Open(p, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("fsutil: tar %s: %w", p, err)
	}
	defer unix.Close(fd)
	if size > int64(len(ta.buf)) && len(ta.buf) < maxApplyBuf {
		ta.buf = make([]byte, min(size, maxApplyBuf))
	}
	for left := size; left > 0; {
		n, err := unix.Read(fd, ta.buf[:min(left, int64(len(ta.buf)))])
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return fmt.Errorf("fsutil: tar %s: %w", p, err)
		}
		if n == 0 {
			return fmt.Errorf("fsutil: tar %s: file shrank from %d to %d bytes while archiving", p, size, size-left)
		}
		if _, err := ta.tw.Write(ta.buf[:n]); err != nil {
			return fmt.Errorf("fsutil: tar %s: %w", p, err)
		}
		left -= int64(n)
	}
	return nil
}

// tarHeader builds the header of one file from its lstat; nil for a
// socket, which tar cannot carry.
func tarHeader(p, rel string, st *unix.Stat_t) (*tar.Header, error) {
	hdr := &tar.Header{
		Name:    rel,
		Mode:    int64(st.Mode & 0o7777),
		Uid:     int(st.Uid),
		Gid:     int(st.Gid),
		ModTime: time.Unix(st.Mtim.Sec, 0),
		Format:  tar.FormatPAX,
	}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFREG:
		hdr.Typeflag, hdr.Size = tar.TypeReg, st.Size
	case unix.S_IFDIR:
		hdr.Typeflag, hdr.Name = tar.TypeDir, rel+"/"
	case unix.S_IFLNK:
		target, err := os.Readlink(p)
		if err != nil {
			return nil, fmt.Errorf("fsutil: tar %s: %w", p, err)
		}
		hdr.Typeflag, hdr.Linkname = tar.TypeSymlink, target
	case unix.S_IFCHR, unix.S_IFBLK:
		hdr.Typeflag = tar.TypeChar
		if st.Mode&unix.S_IFMT == unix.S_IFBLK {
			hdr.Typeflag = tar.TypeBlock
		}
		hdr.Devmajor, hdr.Devminor = int64(unix.Major(st.Rdev)), int64(unix.Minor(st.Rdev))
	case unix.S_IFIFO:
		hdr.Typeflag = tar.TypeFifo
	default:
		logrus.Debugf("fsutil: tar: skipping socket %s", p)
		return nil, nil
	}
	return hdr, nil
}

// exportedXattr says whether an xattr travels in layer tars.
func exportedXattr(name string) bool {
	if name == "security.selinux" { // a host label, not image content
		return false
	}
	return strings.HasPrefix(name, "security.") || strings.HasPrefix(name, "user.") ||
		strings.HasPrefix(name, "trusted.")
}

// readXattrs returns the exported xattrs of p as PAX records, nil if none.
func readXattrs(p string) (map[string]string, error) {
	buf := make([]byte, 256)
	for {
		n, err := unix.Llistxattr(p, buf)
		if errors.Is(err, unix.ERANGE) && len(buf) < 1<<16 {
			buf = make([]byte, 1<<16)
			continue
		}
		if errors.Is(err, unix.ENOTSUP) {
			return nil, nil
		}
		if err != nil {
			return nil, fmt.Errorf("listxattr %s: %w", p, err)
		}
		buf = buf[:n]
		break
	}
	var recs map[string]string
	for _, name := range strings.Split(string(buf), "\x00") {
		if !exportedXattr(name) {
			continue
		}
		val, err := getXattr(p, name)
		if err != nil {
			return nil, err
		}
		if val == nil {
			continue // removed meanwhile
		}
		if recs == nil {
			recs = make(map[string]string)
		}
		recs[xattrPAXPrefix+name] = string(val)
	}
	return recs, nil
}

// DecompressStream returns r decompressed according to its first bytes:
// gzip, zstd and bzip2 are decoded, anything else passes through as a
// plain tar. xz is refused with an "unsupported compression" error.
// Closing the result does not close r.
func DecompressStream(r io.Reader) (io.ReadCloser, error) {
	br := bufio.NewReaderSize(r, copyBufSize)
	magic, err := br.Peek(6)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("fsutil: decompress: %w", err)
	}
	switch {
	case bytes.HasPrefix(magic, []byte{0x1f, 0x8b, 0x08}):
		gz, err := gzip.NewReader(br)
		if err != nil {
			return nil, fmt.Errorf("fsutil: decompress gzip: %w", err)
		}
		return gz, nil
	case isZstd(magic):
		zr, err := zstd.NewReader(br, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxWindow(1<<27))
		if err != nil {
			return nil, fmt.Errorf("fsutil: decompress zstd: %w", err)
		}
		return zr.IOReadCloser(), nil
	case bytes.HasPrefix(magic, []byte("BZh")):
		return io.NopCloser(bzip2.NewReader(br)), nil
	case bytes.HasPrefix(magic, []byte{0xfd, '7', 'z', 'X', 'Z', 0x00}):
		return nil, errors.New("fsutil: decompress: unsupported compression xz")
	}
	return io.NopCloser(br), nil
}

// isZstd matches a zstd frame or a skippable frame (magic 0x184D2A5?).
func isZstd(m []byte) bool {
	if len(m) < 4 {
		return false
	}
	return bytes.Equal(m[:4], []byte{0x28, 0xb5, 0x2f, 0xfd}) ||
		(m[0]&0xf0 == 0x50 && m[1] == 0x2a && m[2] == 0x4d && m[3] == 0x18)
}
