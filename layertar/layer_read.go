package layertar

import (
	"errors"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// Reading a layer: a running container owns its files and can swap any
// directory for a symlink (or a file for a FIFO) at any moment. So nothing
// below a layer root is opened by a path the kernel would resolve through
// a link: an entry is opened as an O_PATH descriptor below the root
// (openat2 with RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS, or one component at a
// time with O_NOFOLLOW), stat'd through that descriptor, and read by
// reopening it, which reaches the very inode that was stat'd.

// readByHand is set once openat2(2) turned out to be unavailable for the
// read side (Linux before 5.6, or a seccomp filter), and by tests.
var readByHand atomic.Bool

// testHookStat, nil outside tests, runs right after an entry's lstat and
// before anything is read from it: tests swap files there.
var testHookStat func(rel string)

// openLayerRoot opens dir, a layer root, for reading. The path up to it
// is the caller's, but its last component is not followed: a root that is
// a symlink is refused.
func openLayerRoot(dir string) (int, error) {
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if errors.Is(err, unix.ENOTDIR) || errors.Is(err, unix.ELOOP) {
		return -1, &os.PathError{Op: "open layer root", Path: dir,
			Err: fmt.Errorf("not a directory (a symlink is not followed): %w", err)}
	}
	if err != nil {
		return -1, &os.PathError{Op: "open layer root", Path: dir, Err: err}
	}
	return fd, nil
}

// openEntry opens the entry rel (a clean relative path, not ".") below
// rootfd as an O_PATH descriptor of the entry itself: a final symlink is
// opened, not followed. A symlink where a directory must be fails with
// ELOOP, any other non-directory with ENOTDIR.
func openEntry(rootfd int, rel string) (int, error) {
	if !readByHand.Load() {
		how := unix.OpenHow{
			Flags:   unix.O_PATH | unix.O_NOFOLLOW | unix.O_CLOEXEC,
			Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS,
		}
		for try := 0; try < 16; try++ {
			fd, err := unix.Openat2(rootfd, rel, &how)
			if err == nil {
				return fd, nil
			}
			if errors.Is(err, unix.ENOSYS) || errors.Is(err, unix.EPERM) {
				readByHand.Store(true)
				break
			}
			if !errors.Is(err, unix.EAGAIN) && !errors.Is(err, unix.EINTR) {
				return -1, err
			}
		}
	}
	return openEntryByHand(rootfd, rel)
}

// openEntryByHand is openEntry without openat2: each directory component
// opened with O_NOFOLLOW|O_DIRECTORY from the one before.
func openEntryByHand(rootfd int, rel string) (int, error) {
	comps := strings.Split(rel, "/")
	dirfd := rootfd
	defer func() {
		if dirfd != rootfd {
			unix.Close(dirfd)
		}
	}()
	for i, c := range comps {
		if c == "" || c == "." || c == ".." {
			return -1, fmt.Errorf("%q: %w", rel, errEscape)
		}
		if i == len(comps)-1 {
			return unix.Openat(dirfd, c, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		}
		fd, err := unix.Openat(dirfd, c, unix.O_PATH|unix.O_NOFOLLOW|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if errors.Is(err, unix.ENOTDIR) && isSymlinkAt(dirfd, c) {
			err = unix.ELOOP // as openat2's RESOLVE_NO_SYMLINKS says it
		}
		if err != nil {
			return -1, err
		}
		if dirfd != rootfd {
			unix.Close(dirfd)
		}
		dirfd = fd
	}
	return -1, unix.ENOENT // rel was empty
}

func isSymlinkAt(dirfd int, name string) bool {
	var st unix.Stat_t
	err := unix.Fstatat(dirfd, name, &st, unix.AT_SYMLINK_NOFOLLOW)
	return err == nil && st.Mode&unix.S_IFMT == unix.S_IFLNK
}

// isChangedPath says whether an openEntry error means the path no longer
// leads to an entry without going through a link: it vanished, or a
// directory on the way became a symlink or a file.
func isChangedPath(err error) bool {
	return errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENOTDIR) || errors.Is(err, unix.ELOOP)
}

// procFd is the magic link of descriptor fd.
func procFd(fd int) string { return "/proc/self/fd/" + strconv.Itoa(fd) }

// procSelfFd is /proc/self/fd, opened once: reopening through it skips
// resolving "/proc/self" each time. It must be procfs, or a reopen could
// land anywhere.
var procSelfFd = sync.OnceValues(func() (int, error) {
	fd, err := unix.Open("/proc/self/fd", unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("open /proc/self/fd: %w", err)
	}
	var fs unix.Statfs_t
	if err := unix.Fstatfs(fd, &fs); err != nil || fs.Type != unix.PROC_SUPER_MAGIC {
		unix.Close(fd)
		return -1, fmt.Errorf("/proc/self/fd is not on procfs (type %#x, %v)", fs.Type, err)
	}
	return fd, nil
})

// reopen opens the inode behind the O_PATH descriptor fd again with flags
// (O_RDONLY, O_DIRECTORY): its magic link names that inode, whatever
// became of its name since.
func reopen(fd, flags int) (int, error) {
	procfd, err := procSelfFd()
	if err != nil {
		return -1, err
	}
	return unix.Openat(procfd, strconv.Itoa(fd), flags|unix.O_CLOEXEC, 0)
}

// openSubdir opens the directory name in dirfd for reading, without
// following a symlink, and checks it is the directory st describes. A
// name that is no longer that directory yields errSwapped.
func openSubdir(dirfd int, name string, st *unix.Stat_t) (int, error) {
	fd, err := unix.Openat(dirfd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if isChangedPath(err) {
		return -1, errSwapped
	}
	if err != nil {
		return -1, err
	}
	var now unix.Stat_t
	if err := unix.Fstat(fd, &now); err != nil {
		unix.Close(fd)
		return -1, err
	}
	if now.Dev != st.Dev || now.Ino != st.Ino {
		unix.Close(fd)
		return -1, errSwapped
	}
	return fd, nil
}

// errSwapped: an entry changed between its lstat and its open.
var errSwapped = errors.New("entry changed while being read")

// readDirNames lists the directory open as fd, sorted, without "." and
// "..", with getdents(2) straight (an os.File costs an fcntl and a poller
// registration per directory).
func readDirNames(fd int, buf []byte) ([]string, error) {
	var names []string
	for {
		n, err := unix.Getdents(fd, buf)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return nil, err
		}
		if n <= 0 {
			break
		}
		_, _, names = unix.ParseDirent(buf[:n], -1, names)
	}
	sort.Strings(names)
	return names, nil
}

// direntBufSize is the getdents buffer: a few hundred names a call.
const direntBufSize = 16 << 10

// xattrSource reads the xattrs of one entry without following it: through
// a descriptor open for reading, else through a /proc path that ends at
// the entry (its O_PATH magic link, or a parent's magic link and its
// name, not followed).
type xattrSource struct {
	fd     int // >= 0: a descriptor open for reading
	path   string
	follow bool // path is the entry's own magic link, which lands on the entry itself
}

// xattrsOfFd reads through fd, a regular file or directory open for reading.
func xattrsOfFd(fd int) xattrSource { return xattrSource{fd: fd} }

// xattrsOfPathFd reads the entry fd is an O_PATH descriptor of (a
// symlink's own xattrs for a symlink).
func xattrsOfPathFd(fd int) xattrSource { return xattrSource{fd: -1, path: procFd(fd), follow: true} }

// xattrsAt reads entry name of the directory dirfd.
func xattrsAt(dirfd int, name string) xattrSource {
	return xattrSource{fd: -1, path: procFd(dirfd) + "/" + name}
}

func (x xattrSource) list(buf []byte) (int, error) {
	switch {
	case x.fd >= 0:
		return unix.Flistxattr(x.fd, buf)
	case x.follow:
		return unix.Listxattr(x.path, buf)
	}
	return unix.Llistxattr(x.path, buf)
}

func (x xattrSource) getInto(name string, buf []byte) (int, error) {
	switch {
	case x.fd >= 0:
		return unix.Fgetxattr(x.fd, name, buf)
	case x.follow:
		return unix.Getxattr(x.path, name, buf)
	}
	return unix.Lgetxattr(x.path, name, buf)
}

// get returns the value of xattr name, or nil when the entry lacks it or
// its filesystem has no xattrs.
func (x xattrSource) get(name string) ([]byte, error) {
	buf := make([]byte, 128)
	for {
		n, err := x.getInto(name, buf)
		switch {
		case err == nil:
			return buf[:n], nil
		case errors.Is(err, unix.ENODATA), errors.Is(err, unix.ENOTSUP):
			return nil, nil
		case errors.Is(err, unix.ERANGE) && len(buf) < 1<<16:
			buf = make([]byte, 1<<16)
		default:
			return nil, fmt.Errorf("getxattr %s: %w", name, err)
		}
	}
}

// names lists the entry's xattr names.
func (x xattrSource) names() ([]string, error) {
	buf := make([]byte, 256)
	for {
		n, err := x.list(buf)
		if errors.Is(err, unix.ERANGE) && len(buf) < 1<<16 {
			buf = make([]byte, 1<<16)
			continue
		}
		if errors.Is(err, unix.ENOTSUP) {
			return nil, nil
		}
		if err != nil {
			return nil, fmt.Errorf("listxattr: %w", err)
		}
		if n == 0 {
			return nil, nil
		}
		return strings.Split(strings.TrimSuffix(string(buf[:n]), "\x00"), "\x00"), nil
	}
}
