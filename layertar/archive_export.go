package layertar

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"path"
	"sort"
	"strings"
	"time"

	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"
)

// TarTree streams the whole tree at dir (not the root itself) as an
// uncompressed tar in lexical order, with the headers of ExportChanges.
// Owners are mapped host→container through idMap. Sockets are skipped.
// The tree is walked by descriptors, never following a symlink: a
// directory swapped for a link during the walk is still read as the
// directory that was stat'd, and a name gone since it was listed is
// skipped. dir itself must not be a symlink.
func TarTree(dir string, idMap IdentityMapping) (io.ReadCloser, error) {
	rootfd, err := openLayerRoot(dir)
	if err != nil {
		return nil, fmt.Errorf("layertar: tar tree: %w", err)
	}
	return startTar(idMap, func(ta *tarAppender) error {
		defer unix.Close(rootfd)
		return ta.addTree(rootfd, "")
	}), nil
}

// ExportChanges streams the changes (as Changes returns them) of the tree
// at dir as an uncompressed tar, sorted by path: a ".wh.<name>" whiteout for
// each deletion, the entry itself (not its children) for each addition or
// modification. Headers carry mode with setuid/setgid/sticky, owner mapped
// host→container through idMap, mtime in whole seconds, symlink targets,
// device numbers, and the security.*, user.* and trusted.* xattrs (except
// security.selinux) as "SCHILY.xattr.<name>" PAX records. An inode exported
// a second time becomes a hard link to the first name.
//
// Each path is resolved below dir without following any symlink (a final
// one is exported as a symlink). A path that vanished since Changes ran,
// or that now leads through a symlink or a file where a directory was (a
// running container changed its tree), is skipped, as Moby skips an entry
// it cannot add. dir itself must not be a symlink.
func ExportChanges(dir string, changes []Change, idMap IdentityMapping) (io.ReadCloser, error) {
	rootfd, err := openLayerRoot(dir)
	if err != nil {
		return nil, fmt.Errorf("layertar: export changes: %w", err)
	}
	sorted := append([]Change(nil), changes...)
	sort.SliceStable(sorted, func(i, j int) bool { return sorted[i].Path < sorted[j].Path })
	return startTar(idMap, func(ta *tarAppender) error {
		defer unix.Close(rootfd)
		for _, c := range sorted {
			if err := ta.addChange(rootfd, c); err != nil {
				return err
			}
		}
		return nil
	}), nil
}

func (ta *tarAppender) addChange(rootfd int, c Change) error {
	rel := strings.TrimPrefix(path.Clean("/"+c.Path), "/")
	if rel == "" {
		return nil
	}
	if c.Kind == ChangeDelete {
		return ta.addWhiteout(rel)
	}
	fd, err := openEntry(rootfd, rel)
	if isChangedPath(err) {
		logrus.Debugf("layertar: export: %s vanished or no longer leads through directories only, skipped: %v", rel, err)
		return nil
	}
	if err != nil {
		return fmt.Errorf("layertar: tar %s: %w", rel, err)
	}
	_, err = ta.addEntry(fd, rel, false)
	return err
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
	tw     *tar.Writer
	idMap  IdentityMapping
	seen   map[devIno]string // first name of each multiply-linked inode
	buf    []byte
	dirent []byte // getdents buffer of TarTree
}

func (ta *tarAppender) addWhiteout(rel string) error {
	hdr := &tar.Header{
		Typeflag: tar.TypeReg,
		Name:     path.Join(path.Dir(rel), whiteoutPrefix+path.Base(rel)),
		ModTime:  time.Now().Truncate(time.Second),
		Format:   tar.FormatPAX,
	}
	if err := ta.tw.WriteHeader(hdr); err != nil {
		return fmt.Errorf("layertar: tar whiteout %s: %w", hdr.Name, err)
	}
	return nil
}

// addTree writes the entries below the directory open as dirfd (whose tar
// name is rel, "" for the root) in lexical order, each directory followed
// by what it holds.
func (ta *tarAppender) addTree(dirfd int, rel string) error {
	if ta.dirent == nil {
		ta.dirent = make([]byte, direntBufSize)
	}
	names, err := readDirNames(dirfd, ta.dirent)
	if err != nil {
		return fmt.Errorf("layertar: tar tree: read dir %q: %w", rel, err)
	}
	for _, n := range names {
		crel := n
		if rel != "" {
			crel = rel + "/" + n
		}
		if len(crel) > maxPathLen {
			return fmt.Errorf("layertar: tar tree: %q...: %w", crel[:64], unix.ENAMETOOLONG)
		}
		fd, err := unix.Openat(dirfd, n, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if errors.Is(err, unix.ENOENT) {
			continue // gone since it was listed, as Moby skips it
		}
		if err != nil {
			return fmt.Errorf("layertar: tar %s: %w", crel, err)
		}
		sub, err := ta.addEntry(fd, crel, true)
		if err == nil && sub >= 0 {
			err = ta.addTree(sub, crel)
			unix.Close(sub)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// addEntry writes the entry open as the O_PATH descriptor fd (which it
// closes) under the tar name rel. Its header comes from fstat(fd) and its
// content from fd reopened, so both describe the same inode whatever
// happens to the name meanwhile. With openDir, a directory is returned
// open for reading (else -1).
func (ta *tarAppender) addEntry(fd int, rel string, openDir bool) (int, error) {
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return -1, fmt.Errorf("layertar: tar %s: %w", rel, err)
	}
	if testHookStat != nil {
		testHookStat(rel)
	}
	hdr, err := ta.header(fd, rel, &st)
	if err != nil || hdr == nil {
		return -1, err
	}
	rfd := -1
	isDir := hdr.Typeflag == tar.TypeDir
	if (hdr.Typeflag == tar.TypeReg && hdr.Size > 0) || (isDir && openDir) {
		flags := unix.O_RDONLY
		if isDir {
			flags |= unix.O_DIRECTORY
		}
		if rfd, err = reopen(fd, flags); err != nil {
			return -1, fmt.Errorf("layertar: tar %s: open: %w", rel, err)
		}
	}
	if err := ta.writeEntry(hdr, fd, rfd, rel); err != nil {
		closeFd(rfd)
		return -1, err
	}
	if isDir && openDir {
		return rfd, nil
	}
	closeFd(rfd)
	return -1, nil
}

func closeFd(fd int) {
	if fd >= 0 {
		unix.Close(fd)
	}
}

// header builds the header of the entry open as fd from its stat, with
// its symlink target and, for a second name of an inode, as a hard link.
func (ta *tarAppender) header(fd int, rel string, st *unix.Stat_t) (*tar.Header, error) {
	hdr := tarHeader(rel, st)
	if hdr == nil {
		return nil, nil
	}
	if hdr.Typeflag == tar.TypeSymlink {
		target, err := readlinkFd(fd)
		if err != nil {
			return nil, fmt.Errorf("layertar: tar %s: readlink: %w", rel, err)
		}
		hdr.Linkname = target
	}
	if hdr.Typeflag != tar.TypeDir && st.Nlink > 1 {
		key := devIno{dev: st.Dev, ino: st.Ino}
		if first, ok := ta.seen[key]; ok {
			hdr.Typeflag, hdr.Linkname, hdr.Size = tar.TypeLink, first, 0
		} else {
			ta.seen[key] = rel
		}
	}
	return hdr, nil
}

// writeEntry adds the xattrs and mapped owner to hdr, writes it, and the
// content from rfd (the entry reopened) for a regular file.
func (ta *tarAppender) writeEntry(hdr *tar.Header, fd, rfd int, rel string) error {
	src := xattrsOfPathFd(fd)
	if rfd >= 0 {
		src = xattrsOfFd(rfd)
	}
	var err error
	if hdr.PAXRecords, err = readXattrs(src); err != nil {
		return fmt.Errorf("layertar: tar %s: %w", rel, err)
	}
	if hdr.Uid, hdr.Gid, err = ta.idMap.ToContainer(hdr.Uid, hdr.Gid); err != nil {
		return fmt.Errorf("layertar: tar %s: %w", rel, err)
	}
	if err := ta.tw.WriteHeader(hdr); err != nil {
		return fmt.Errorf("layertar: tar %s: %w", rel, err)
	}
	if hdr.Typeflag == tar.TypeReg && hdr.Size > 0 {
		return ta.copyContent(rfd, rel, hdr.Size)
	}
	return nil
}

// copyContent copies the size bytes the lstat promised with plain
// read(2)s on a raw fd (an os.File costs an fcntl per file) and stops
// there: no read to find EOF. Bytes the file grew by are left out.
func (ta *tarAppender) copyContent(fd int, rel string, size int64) error {
	if size > int64(len(ta.buf)) && len(ta.buf) < maxApplyBuf {
		ta.buf = make([]byte, min(size, maxApplyBuf))
	}
	for left := size; left > 0; {
		n, err := unix.Read(fd, ta.buf[:min(left, int64(len(ta.buf)))])
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return fmt.Errorf("layertar: tar %s: %w", rel, err)
		}
		if n == 0 {
			return fmt.Errorf("layertar: tar %s: file shrank from %d to %d bytes while archiving", rel, size, size-left)
		}
		if _, err := ta.tw.Write(ta.buf[:n]); err != nil {
			return fmt.Errorf("layertar: tar %s: %w", rel, err)
		}
		left -= int64(n)
	}
	return nil
}

// tarHeader builds the header of one file from its lstat (the symlink
// target is the caller's); nil for a socket, which tar cannot carry.
func tarHeader(rel string, st *unix.Stat_t) *tar.Header {
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
		hdr.Typeflag = tar.TypeSymlink
	case unix.S_IFCHR, unix.S_IFBLK:
		hdr.Typeflag = tar.TypeChar
		if st.Mode&unix.S_IFMT == unix.S_IFBLK {
			hdr.Typeflag = tar.TypeBlock
		}
		hdr.Devmajor, hdr.Devminor = int64(unix.Major(st.Rdev)), int64(unix.Minor(st.Rdev))
	case unix.S_IFIFO:
		hdr.Typeflag = tar.TypeFifo
	default:
		logrus.Debugf("layertar: tar: skipping socket %s", rel)
		return nil
	}
	return hdr
}

// exportedXattr says whether an xattr travels in layer tars.
func exportedXattr(name string) bool {
	if name == "security.selinux" { // a host label, not image content
		return false
	}
	return strings.HasPrefix(name, "security.") || strings.HasPrefix(name, "user.") ||
		strings.HasPrefix(name, "trusted.")
}

// readXattrs returns the exported xattrs of an entry as PAX records, nil
// if none.
func readXattrs(src xattrSource) (map[string]string, error) {
	names, err := src.names()
	if err != nil {
		return nil, err
	}
	var recs map[string]string
	for _, name := range names {
		if !exportedXattr(name) {
			continue
		}
		val, err := src.get(name)
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
