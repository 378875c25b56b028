package layertar

import (
	"archive/tar"
	"errors"
	"fmt"
	"hash/maphash"
	"io"
	"os"
	"path"
	"strings"

	"golang.org/x/sys/unix"
)

// Whiteouts, opaque markers, implied directories and aufs hard links, each
// with the result Moby v24's UnpackLayer (under its chroot) gives.

const whiteoutLinkDir = whiteoutMeta + "plnk"

// impliedDir makes the directory dir of an entry when nothing is at its
// path, as Moby's createImpliedDirectories does for every entry, whiteouts
// included: only when lstat(dir) (symlinks before its last component
// followed) says ENOENT. A dangling symlink there, or a path that fails
// otherwise (ENOTDIR), is left to the entry itself.
func (a *applier) impliedDir(dir string) error {
	_, err := a.parent(dir, false)
	if err == nil || !errors.Is(err, unix.ENOENT) {
		return nil
	}
	pdir, base := splitRel(dir)
	pfd, err := a.parent(pdir, false)
	if err == nil {
		var st unix.Stat_t
		if unix.Fstatat(pfd, base, &st, unix.AT_SYMLINK_NOFOLLOW) == nil {
			return nil // a dangling symlink
		}
	} else if !errors.Is(err, unix.ENOENT) {
		return nil
	}
	_, err = a.parent(dir, true)
	return err
}

func (a *applier) hash(rel string) uint64 { return maphash.String(a.seed, rel) }

// record notes that this apply wrote an entry named rel (the second
// argument, "a new directory", no longer matters). Every name is kept: a
// directory this apply made can still receive what no entry wrote under
// its name (through a symlink, implied directories), so opaque markers
// check each path, as Moby's unpackedPaths.
func (a *applier) record(rel string, _ bool) {
	a.written[a.hash(rel)] = struct{}{}
}

func (a *applier) wasWritten(rel string) bool {
	_, ok := a.written[a.hash(rel)]
	return ok
}

// forget notes that rel was removed or replaced: the cached parent may be
// it or below it. Names written stay written, as in Moby.
func (a *applier) forget(rel string) {
	a.invalidate(rel)
	a.removed = true
}

// whiteout removes name from dir, never following a symlink at name. A
// missing dir (or a dangling symlink) holds nothing to remove; a dir that
// is not a directory fails, as Moby's os.RemoveAll does. Moby would remove
// dir itself for "" or "." and its parent for "..": refused.
func (a *applier) whiteout(dir, name string) error {
	if name == "" || name == "." || name == ".." {
		return fmt.Errorf("invalid whiteout of %q: %w", name, errEscape)
	}
	pfd, err := a.parent(dir, false)
	if errors.Is(err, unix.ENOENT) {
		return nil
	}
	if err != nil {
		return err
	}
	return a.remove(pfd, name, joinRel(dir, name))
}

// remove removes name (at rel) in directory pfd. Removing a directory
// may invalidate known facts and the cached parent under other names.
func (a *applier) remove(pfd int, name, rel string) error {
	a.forget(rel)
	err := unix.Unlinkat(pfd, name, 0)
	if err == nil || errors.Is(err, unix.ENOENT) {
		return nil
	}
	if !errors.Is(err, unix.EISDIR) {
		return fmt.Errorf("unlink %s: %w", name, err)
	}
	// The cached parent may be it or below it under another name
	// (through a symlink): drop it once the current entry is done.
	a.forgetFacts()
	a.staleCache = true
	return removeAt(pfd, name)
}

// opaque removes from dir every path below it (not following symlinks)
// whose name no entry of this tar wrote, as Moby's walk does. dir must
// exist; when it is a symlink or a file nothing happens (Moby's walk does
// not follow it).
func (a *applier) opaque(dir string) error {
	fd, err := a.opaqueDir(dir)
	if err != nil || fd < 0 {
		return err
	}
	defer unix.Close(fd)
	a.forgetFacts() // clearDir may remove directories
	a.staleCache = true
	return a.clearDir(fd, dir)
}

// opaqueDir opens dir (symlinks before its last component followed) as
// an O_PATH descriptor, or returns -1 when it is not a directory.
func (a *applier) opaqueDir(dir string) (int, error) {
	if dir == "." {
		fd, err := unix.Openat(a.root, ".", unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			return -1, fmt.Errorf("open root: %w", err)
		}
		return fd, nil
	}
	pdir, base := splitRel(dir)
	pfd, err := a.parent(pdir, false)
	if err != nil {
		return -1, err
	}
	fd, err := unix.Openat(pfd, base, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if errors.Is(err, unix.ENOTDIR) {
		return -1, nil
	}
	if err != nil {
		return -1, fmt.Errorf("open %s: %w", dir, err)
	}
	return fd, nil
}

func (a *applier) clearDir(pathfd int, dir string) error {
	dfd, err := unix.Openat(pathfd, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open %s: %w", dir, err)
	}
	f := os.NewFile(uintptr(dfd), dir)
	defer f.Close()
	names, err := f.Readdirnames(-1)
	if err != nil {
		return fmt.Errorf("read dir %s: %w", dir, err)
	}
	for _, n := range names {
		child := joinRel(dir, n)
		if !a.wasWritten(child) {
			a.removed = true
			if err := removeAt(dfd, n); err != nil {
				return fmt.Errorf("opaque %s: %w", dir, err)
			}
			continue
		}
		cfd, err := unix.Openat(dfd, n, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if errors.Is(err, unix.ENOTDIR) || errors.Is(err, unix.ENOENT) {
			continue // a file or symlink this tar wrote
		}
		if err != nil {
			return fmt.Errorf("open %s: %w", child, err)
		}
		err = a.clearDir(cfd, child)
		unix.Close(cfd)
		if err != nil {
			return err
		}
	}
	return nil
}

// isAufsMeta says whether a tar name is aufs metadata to skip. Moby
// matches the cleaned name: "/.wh..wh.x" is a whiteout of ".wh.x".
func isAufsMeta(name string) bool { return strings.HasPrefix(path.Clean(name), whiteoutMeta) }

// isAufsLink says whether a hard link points into aufs's link directory.
func isAufsLink(linkname string) bool {
	return strings.HasPrefix(path.Clean(linkname), whiteoutLinkDir)
}

// aufsLinks keeps the regular files of ".wh..wh.plnk" (aufs's store of
// hard-linked inodes) in one unnamed file, for the hard links to them.
type aufsLinks struct {
	f     *os.File // O_TMPFILE in the layer root: nothing to clean up
	end   int64
	files map[string]aufsFile // by base name, as Moby
}

type aufsFile struct {
	hdr       tar.Header
	off, size int64
}

func (l *aufsLinks) close() {
	if l != nil {
		l.f.Close()
	}
}

// aufsMeta skips aufs metadata but keeps the regular files of
// ".wh..wh.plnk". Moby writes each to a file named by its base name
// without truncating it, so a shorter second file of the same name keeps
// the first one's tail: so does this.
func (a *applier) aufsMeta(rel string, hdr *tar.Header, content io.Reader) error {
	if hdr.Typeflag != tar.TypeReg || !strings.HasPrefix(rel, whiteoutLinkDir) {
		return nil
	}
	if a.aufs == nil {
		fd, err := unix.Openat(a.root, ".", unix.O_TMPFILE|unix.O_RDWR|unix.O_CLOEXEC, 0o600)
		if err != nil {
			return fmt.Errorf("aufs hard link store (O_TMPFILE): %w", err)
		}
		a.aufs = &aufsLinks{f: os.NewFile(uintptr(fd), whiteoutLinkDir), files: make(map[string]aufsFile)}
	}
	l, base := a.aufs, path.Base(rel)
	f, ok := l.files[base]
	if !ok || hdr.Size > f.size {
		f = aufsFile{off: l.end, size: hdr.Size}
		l.end += hdr.Size
	}
	f.hdr = *hdr
	if _, err := io.Copy(io.NewOffsetWriter(l.f, f.off), io.LimitReader(content, hdr.Size)); err != nil {
		return fmt.Errorf("aufs hard link store: %w", err)
	}
	l.files[base] = f
	return nil
}

// aufsLink writes a hard link into ".wh..wh.plnk" as Moby does: a new
// regular file with the content and metadata of the aufs file of the
// same base name.
func (a *applier) aufsLink(rel string, hdr *tar.Header) error {
	var f aufsFile
	ok := false
	if a.aufs != nil {
		f, ok = a.aufs.files[path.Base(hdr.Linkname)]
	}
	if !ok {
		return fmt.Errorf("hard link to %q: no such file in %s", hdr.Linkname, whiteoutLinkDir)
	}
	src := f.hdr
	src.Name, src.Typeflag, src.Size, src.Linkname = hdr.Name, tar.TypeReg, f.size, ""
	return a.create(rel, &src, io.NewSectionReader(a.aufs.f, f.off, f.size))
}

// globalHeader handles a PAX global header as Moby does: like an entry
// that writes nothing, it removes whatever is at its name and counts as
// written there (its name is usually "pax_global_header").
func (a *applier) globalHeader(rel string) error {
	if rel == "." {
		return errors.New("a global header names the layer root")
	}
	a.record(rel, false)
	dir, base := splitRel(rel)
	pfd, err := a.parent(dir, false)
	if err != nil {
		return nil // Moby's lstat fails: nothing there to remove
	}
	var st unix.Stat_t
	if err := unix.Fstatat(pfd, base, &st, unix.AT_SYMLINK_NOFOLLOW); err == nil {
		return a.remove(pfd, base, rel)
	}
	return nil
}
