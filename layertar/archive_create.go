package layertar

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"math"
	"path"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// entryCtx is one entry being created: base in directory pfd (whose
// facts are pf); cur is the stat of an existing inode it reuses (a merged
// directory, a hard link's target), nil for a new inode.
type entryCtx struct {
	pfd       int
	rel, base string
	pf        dirFacts
	cur       *unix.Stat_t
}

// create writes one non-whiteout entry at rel, replacing what is there
// unless both are directories.
func (a *applier) create(rel string, hdr *tar.Header, content io.Reader) error {
	isDir := hdr.Typeflag == tar.TypeDir
	if rel == "." && !isDir {
		return errors.New("only a directory can stand for the layer root")
	}
	dir, base := splitRel(rel)
	pfd, err := a.parent(dir, true)
	if err != nil {
		return err
	}
	e := &entryCtx{pfd: pfd, rel: rel, base: base, pf: a.dirFacts(dir)}
	// In a directory this apply created only an earlier entry of this tar
	// (a duplicate) can be in the way: create first, look only on EEXIST.
	if !e.pf.created {
		err = a.prepare(e, isDir)
	}
	if err == nil {
		err = a.make(e, hdr, content)
		if e.pf.created && errors.Is(err, unix.EEXIST) {
			if err = a.prepare(e, isDir); err == nil {
				err = a.make(e, hdr, content)
			}
		}
	}
	if err != nil {
		return err
	}
	a.record(rel, isDir && e.cur == nil)
	if isDir {
		a.dirs = append(a.dirs, dirTimes{rel: rel, ts: tarTimes(hdr)})
	}
	return nil
}

// prepare clears the way for the entry: an existing directory stays for a
// directory entry to merge with (e.cur), anything else is removed.
func (a *applier) prepare(e *entryCtx, isDir bool) error {
	var st unix.Stat_t
	err := unix.Fstatat(e.pfd, e.base, &st, unix.AT_SYMLINK_NOFOLLOW)
	if errors.Is(err, unix.ENOENT) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("lstat: %w", err)
	}
	if isDir && st.Mode&unix.S_IFMT == unix.S_IFDIR {
		e.cur = &st
		return nil
	}
	if st.Mode&unix.S_IFMT == unix.S_IFLNK {
		// The cached parent may have been resolved through it.
		a.staleCache = true
	}
	if err := a.remove(e.pfd, e.base, e.rel); err != nil {
		return fmt.Errorf("replace: %w", err)
	}
	return nil
}

func (a *applier) make(e *entryCtx, hdr *tar.Header, content io.Reader) error {
	switch hdr.Typeflag {
	case tar.TypeDir:
		return a.makeDir(e, hdr)
	case tar.TypeReg:
		return a.writeFile(e, hdr, content)
	case tar.TypeSymlink:
		return a.makeSymlink(e, hdr)
	case tar.TypeLink:
		return a.makeHardlink(e, hdr)
	case tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
		return a.makeNode(e, hdr)
	}
	return fmt.Errorf("unsupported tar entry type %q", hdr.Typeflag)
}

// metaTarget is where setMeta applies metadata: an open file or
// directory (fd), else the name base in directory pfd.
type metaTarget struct {
	fd   int
	pfd  int
	base string
}

func (m metaTarget) chown(uid, gid int) error {
	if m.fd >= 0 {
		return unix.Fchown(m.fd, uid, gid)
	}
	return unix.Fchownat(m.pfd, m.base, uid, gid, unix.AT_SYMLINK_NOFOLLOW)
}

func (m metaTarget) setxattr(name string, val []byte) error {
	if m.fd >= 0 {
		return unix.Fsetxattr(m.fd, name, val, 0)
	}
	p := "/proc/self/fd/" + strconv.Itoa(m.pfd) + "/" + m.base
	return unix.Lsetxattr(p, name, val, 0)
}

func (m metaTarget) chmod(mode uint32) error {
	if m.fd >= 0 {
		return unix.Fchmod(m.fd, mode)
	}
	return unix.Fchmodat(m.pfd, m.base, mode, 0)
}

// setMeta applies owner, xattrs, then mode (chown clears setuid bits and
// file capabilities), then times. An entry reusing an inode (e.cur) skips
// the chown when the owner is unchanged; a new inode skips chown and chmod
// when newInodeMeta proves it was created with them already.
func (a *applier) setMeta(m metaTarget, hdr *tar.Header, e *entryCtx, chmod, times bool) error {
	uid, gid, err := a.opts.IDMap.ToHost(hdr.Uid, hdr.Gid)
	if err != nil {
		return err
	}
	chown := !a.opts.NoLchown
	if e.cur != nil {
		chown = chown && (int(e.cur.Uid) != uid || int(e.cur.Gid) != gid)
	} else {
		needChown, needChmod := a.newInodeMeta(e.pf, hdr, uid, gid)
		chown, chmod = chown && needChown, chmod && needChmod
	}
	if chown {
		if err := m.chown(uid, gid); err != nil {
			return fmt.Errorf("chown %d:%d: %w", uid, gid, err)
		}
	}
	if err := a.setXattrs(m, hdr); err != nil {
		return err
	}
	if chmod {
		if err := m.chmod(uint32(hdr.Mode & 0o7777)); err != nil {
			return fmt.Errorf("chmod: %w", err)
		}
	}
	if times {
		ts := tarTimes(hdr)
		if err := unix.UtimesNanoAt(m.pfd, m.base, ts[:], unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return fmt.Errorf("set times: %w", err)
		}
	}
	return nil
}

func (a *applier) setXattrs(m metaTarget, hdr *tar.Header) error {
	for k, v := range hdr.PAXRecords {
		name, ok := strings.CutPrefix(k, xattrPAXPrefix)
		if !ok {
			continue
		}
		if err := m.setxattr(name, []byte(v)); err != nil {
			if errors.Is(err, unix.ENOTSUP) || errors.Is(err, unix.EPERM) {
				logXattrErr(hdr.Name, name, err)
				continue
			}
			return fmt.Errorf("setxattr %s: %w", name, err)
		}
	}
	return nil
}

// makeDir creates (or, with e.cur, merges into) a directory. A new one
// becomes the cached parent: the entries after it are most likely inside.
func (a *applier) makeDir(e *entryCtx, hdr *tar.Header) error {
	if e.cur == nil {
		if err := unix.Mkdirat(e.pfd, e.base, uint32(hdr.Mode&0o777)); err != nil {
			return fmt.Errorf("mkdir: %w", err)
		}
	}
	fd, err := unix.Openat(e.pfd, e.base, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open dir: %w", err)
	}
	err = a.setMeta(metaTarget{fd: fd, pfd: e.pfd, base: e.base}, hdr, e, true, false)
	if err != nil || e.cur != nil {
		if e.cur != nil {
			a.forgetFacts() // it may be a known directory under another name
		}
		unix.Close(fd)
		return err
	}
	a.learnDir(e.rel, e.pf, hdr)
	a.setCache(e.rel, fd)
	return nil
}

func (a *applier) writeFile(e *entryCtx, hdr *tar.Header, content io.Reader) error {
	fd, err := unix.Openat(e.pfd, e.base, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC,
		uint32(hdr.Mode&0o777))
	if err != nil {
		return fmt.Errorf("create: %w", err)
	}
	err = a.copyTo(fd, content, hdr.Size)
	if err == nil {
		err = a.setMeta(metaTarget{fd: fd, pfd: e.pfd, base: e.base}, hdr, e, true, true)
	}
	if cerr := unix.Close(fd); cerr != nil && err == nil {
		err = fmt.Errorf("close: %w", cerr)
	}
	return err
}

// maxApplyBuf bounds the write size for large files: 1 MiB writes make a
// 64 MiB file 64 syscalls instead of 2048.
const maxApplyBuf = 1 << 20

// copyTo writes the entry's content to fd in writes as large as the
// buffer (straight write(2)s: an os.File would cost an fcntl per file).
func (a *applier) copyTo(fd int, r io.Reader, size int64) error {
	if size > int64(len(a.buf)) && len(a.buf) < maxApplyBuf {
		a.buf = make([]byte, min(size, maxApplyBuf))
	}
	for {
		n, err := fill(r, a.buf)
		if n > 0 {
			if werr := writeAll(fd, a.buf[:n]); werr != nil {
				return fmt.Errorf("write: %w", werr)
			}
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("write: %w", err)
		}
	}
}

// fill reads into buf until it is full or r fails; io.EOF is returned
// as is (unlike io.ReadFull, which would turn the tar reader's own
// io.ErrUnexpectedEOF and a short last chunk into the same error).
func fill(r io.Reader, buf []byte) (int, error) {
	n := 0
	for n < len(buf) {
		m, err := r.Read(buf[n:])
		n += m
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

func (a *applier) makeSymlink(e *entryCtx, hdr *tar.Header) error {
	target := hdr.Linkname
	if len(target) > maxPathLen || strings.IndexByte(target, 0) >= 0 {
		return fmt.Errorf("invalid symlink target of %d bytes", len(target))
	}
	dir, _ := splitRel(e.rel)
	if !path.IsAbs(target) {
		if c := path.Join(dir, target); c == ".." || strings.HasPrefix(c, "../") {
			return fmt.Errorf("symlink target %q: %w", target, errEscape)
		}
	}
	if err := unix.Symlinkat(target, e.pfd, e.base); err != nil {
		return fmt.Errorf("symlink: %w", err)
	}
	return a.setMeta(metaTarget{fd: -1, pfd: e.pfd, base: e.base}, hdr, e, false, true)
}

func (a *applier) makeHardlink(e *entryCtx, hdr *tar.Header) error {
	target, err := cleanName(hdr.Linkname)
	if err == nil && target == "." {
		err = errors.New("is the layer root")
	}
	if err != nil {
		return fmt.Errorf("hard link target %q: %w", hdr.Linkname, err)
	}
	tdir, tbase := splitRel(target)
	tfd, err := a.openDir(tdir, false)
	if err != nil {
		return fmt.Errorf("hard link target %q: %w", hdr.Linkname, err)
	}
	defer unix.Close(tfd)
	if err := unix.Linkat(tfd, tbase, e.pfd, e.base, 0); err != nil {
		return fmt.Errorf("hard link to %q: %w", hdr.Linkname, err)
	}
	var st unix.Stat_t
	if err := unix.Fstatat(e.pfd, e.base, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("lstat: %w", err)
	}
	e.cur = &st
	notLink := st.Mode&unix.S_IFMT != unix.S_IFLNK
	return a.setMeta(metaTarget{fd: -1, pfd: e.pfd, base: e.base}, hdr, e, notLink, notLink)
}

func (a *applier) makeNode(e *entryCtx, hdr *tar.Header) error {
	mode := uint32(hdr.Mode & 0o777) // setuid etc. only after chown
	switch hdr.Typeflag {
	case tar.TypeChar:
		mode |= unix.S_IFCHR
	case tar.TypeBlock:
		mode |= unix.S_IFBLK
	default:
		mode |= unix.S_IFIFO
	}
	if hdr.Devmajor < 0 || hdr.Devmajor > math.MaxUint32 || hdr.Devminor < 0 || hdr.Devminor > math.MaxUint32 {
		return fmt.Errorf("invalid device number %d:%d", hdr.Devmajor, hdr.Devminor)
	}
	dev := unix.Mkdev(uint32(hdr.Devmajor), uint32(hdr.Devminor))
	if err := unix.Mknodat(e.pfd, e.base, mode, int(dev)); err != nil {
		return fmt.Errorf("mknod: %w", err)
	}
	return a.setMeta(metaTarget{fd: -1, pfd: e.pfd, base: e.base}, hdr, e, true, true)
}
