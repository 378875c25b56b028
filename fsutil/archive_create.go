package fsutil

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

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
	var st unix.Stat_t
	err = unix.Fstatat(pfd, base, &st, unix.AT_SYMLINK_NOFOLLOW)
	if err != nil && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("lstat: %w", err)
	}
	exists := err == nil
	merge := exists && isDir && st.Mode&unix.S_IFMT == unix.S_IFDIR
	if exists && !merge {
		a.forget(rel)
		if err := removeAt(pfd, base); err != nil {
			return fmt.Errorf("replace: %w", err)
		}
	}
	switch hdr.Typeflag {
	case tar.TypeDir:
		var cur *unix.Stat_t
		if merge {
			cur = &st
		}
		err = a.makeDir(pfd, base, hdr, cur)
	case tar.TypeReg:
		err = a.writeFile(pfd, base, hdr, content)
	case tar.TypeSymlink:
		err = a.makeSymlink(pfd, rel, hdr)
	case tar.TypeLink:
		err = a.makeHardlink(pfd, base, hdr)
	case tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
		err = a.makeNode(pfd, base, hdr)
	default:
		err = fmt.Errorf("unsupported tar entry type %q", hdr.Typeflag)
	}
	if err != nil {
		return err
	}
	a.record(rel, isDir && !merge)
	if isDir {
		a.dirs = append(a.dirs, dirTimes{rel: rel, ts: tarTimes(hdr)})
	}
	return nil
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
// file capabilities), then times. cur is the existing inode's stat when
// the entry reuses one (a merged directory, a hard link), letting an
// unchanged owner skip the chown.
func (a *applier) setMeta(m metaTarget, hdr *tar.Header, chmod, times bool, cur *unix.Stat_t) error {
	uid, gid, err := a.opts.IDMap.ToHost(hdr.Uid, hdr.Gid)
	if err != nil {
		return err
	}
	if !a.opts.NoLchown && (cur == nil || int(cur.Uid) != uid || int(cur.Gid) != gid) {
		if err := m.chown(uid, gid); err != nil {
			return fmt.Errorf("chown %d:%d: %w", uid, gid, err)
		}
	}
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

func (a *applier) makeDir(pfd int, base string, hdr *tar.Header, cur *unix.Stat_t) error {
	if cur == nil {
		if err := unix.Mkdirat(pfd, base, 0o700); err != nil {
			return fmt.Errorf("mkdir: %w", err)
		}
	}
	fd, err := unix.Openat(pfd, base, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open dir: %w", err)
	}
	defer unix.Close(fd)
	return a.setMeta(metaTarget{fd: fd, pfd: pfd, base: base}, hdr, true, false, cur)
}

// writerOnly hides os.File's ReadFrom, which gains nothing from a tar
// reader.
type writerOnly struct{ io.Writer }

func (a *applier) writeFile(pfd int, base string, hdr *tar.Header, content io.Reader) error {
	fd, err := unix.Openat(pfd, base, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return fmt.Errorf("create: %w", err)
	}
	f := os.NewFile(uintptr(fd), base)
	_, err = io.CopyBuffer(writerOnly{f}, content, a.buf)
	if err != nil {
		err = fmt.Errorf("write: %w", err)
	} else {
		err = a.setMeta(metaTarget{fd: fd, pfd: pfd, base: base}, hdr, true, true, nil)
	}
	if cerr := f.Close(); cerr != nil && err == nil {
		err = fmt.Errorf("close: %w", cerr)
	}
	return err
}

func (a *applier) makeSymlink(pfd int, rel string, hdr *tar.Header) error {
	target := hdr.Linkname
	if len(target) > maxPathLen || strings.IndexByte(target, 0) >= 0 {
		return fmt.Errorf("invalid symlink target of %d bytes", len(target))
	}
	dir, base := splitRel(rel)
	if !path.IsAbs(target) {
		if c := path.Join(dir, target); c == ".." || strings.HasPrefix(c, "../") {
			return fmt.Errorf("symlink target %q: %w", target, errEscape)
		}
	}
	if err := unix.Symlinkat(target, pfd, base); err != nil {
		return fmt.Errorf("symlink: %w", err)
	}
	return a.setMeta(metaTarget{fd: -1, pfd: pfd, base: base}, hdr, false, true, nil)
}

func (a *applier) makeHardlink(pfd int, base string, hdr *tar.Header) error {
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
	if err := unix.Linkat(tfd, tbase, pfd, base, 0); err != nil {
		return fmt.Errorf("hard link to %q: %w", hdr.Linkname, err)
	}
	var st unix.Stat_t
	if err := unix.Fstatat(pfd, base, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("lstat: %w", err)
	}
	notLink := st.Mode&unix.S_IFMT != unix.S_IFLNK
	return a.setMeta(metaTarget{fd: -1, pfd: pfd, base: base}, hdr, notLink, notLink, &st)
}

func (a *applier) makeNode(pfd int, base string, hdr *tar.Header) error {
	mode := uint32(hdr.Mode & 0o7777)
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
	if err := unix.Mknodat(pfd, base, mode, int(dev)); err != nil {
		return fmt.Errorf("mknod: %w", err)
	}
	return a.setMeta(metaTarget{fd: -1, pfd: pfd, base: base}, hdr, true, true, nil)
}
