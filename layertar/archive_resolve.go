package layertar

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"strings"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// Path limits for tar entry names and link targets.
const (
	maxPathLen = 4096
	maxNameLen = 255
	maxSymlink = 40 // symlinks followed in one resolution, as the kernel
)

// ErrEscape is wrapped by ApplyLayer's error when the tar is refused
// because an entry would reach outside the layer root, or name no child of
// its directory: a name, a hard link target or a relative symlink target
// climbing above the root, a whiteout of "", "." or "..". Moby's
// chrootarchive applies some of these (under its chroot "/.." is "/"; a
// whiteout ".wh.." deletes the parent directory).
var ErrEscape = errors.New("path escapes the layer root")

var (
	errEscape = ErrEscape
	// noOpenat2 is set once openat2(2) turned out to be unavailable (Linux
	// before 5.6, or a seccomp filter); resolution then walks by hand.
	noOpenat2 atomic.Bool
)

// cleanName turns a tar name into a clean relative slash path ("." for the
// root), treating "/a" as "a" and rejecting names that climb out of the
// root or exceed the path limits.
func cleanName(name string) (string, error) {
	if len(name) > maxPathLen {
		return "", fmt.Errorf("name of %d bytes exceeds %d", len(name), maxPathLen)
	}
	if strings.IndexByte(name, 0) >= 0 {
		return "", errors.New("name contains a NUL byte")
	}
	c := path.Clean(name)
	if c == ".." || strings.HasPrefix(c, "../") {
		return "", errEscape
	}
	c = strings.TrimLeft(c, "/")
	if c == "" {
		return ".", nil
	}
	for _, comp := range strings.Split(c, "/") {
		if len(comp) > maxNameLen {
			return "", fmt.Errorf("path component of %d bytes exceeds %d", len(comp), maxNameLen)
		}
	}
	return c, nil
}

// splitRel splits a clean relative path into its directory and base;
// the root splits into (".", ".").
func splitRel(rel string) (string, string) {
	i := strings.LastIndexByte(rel, '/')
	if i < 0 {
		return ".", rel
	}
	return rel[:i], rel[i+1:]
}

// joinRel joins a clean relative directory and a name.
func joinRel(dir, name string) string {
	if dir == "." {
		return name
	}
	return dir + "/" + name
}

// resolveDir opens the directory rel below rootfd as an O_PATH descriptor,
// following symlinks as if rootfd were "/" (so nothing resolves outside
// it), and never following /proc magic links.
func resolveDir(rootfd int, rel string) (int, error) {
	if fd, ok, err := openInRoot(rootfd, rel, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC); ok {
		return fd, err
	}
	return resolveByHand(rootfd, rel)
}

// openInRoot is openat2 with RESOLVE_IN_ROOT|RESOLVE_NO_MAGICLINKS,
// retried on EAGAIN/EINTR; ok is false when the kernel has no openat2 (or
// a seccomp filter refuses it), and the caller walks by hand.
func openInRoot(rootfd int, rel string, flags uint64) (fd int, ok bool, err error) {
	if noOpenat2.Load() {
		return -1, false, nil
	}
	how := unix.OpenHow{Flags: flags, Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS}
	for try := 0; try < 16; try++ {
		fd, err := unix.Openat2(rootfd, rel, &how)
		if err == nil {
			return fd, true, nil
		}
		if errors.Is(err, unix.ENOSYS) || errors.Is(err, unix.EPERM) {
			noOpenat2.Store(true)
			return -1, false, nil
		}
		if !errors.Is(err, unix.EAGAIN) && !errors.Is(err, unix.EINTR) {
			return -1, true, err
		}
	}
	return -1, false, nil
}

// resolveByHand is resolveDir without openat2: one component at a time
// with O_NOFOLLOW, symlink targets spliced into the remaining components
// (absolute ones restarting at the root), ".." popping a stack of open
// directories that never goes above the root.
func resolveByHand(rootfd int, rel string) (int, error) {
	var stack []int
	defer func() {
		for _, fd := range stack {
			unix.Close(fd)
		}
	}()
	cur := func() int {
		if len(stack) == 0 {
			return rootfd
		}
		return stack[len(stack)-1]
	}
	comps, links := strings.Split(rel, "/"), 0
	for len(comps) > 0 {
		c := comps[0]
		comps = comps[1:]
		if c == "" || c == "." {
			continue
		}
		if c == ".." {
			if len(stack) > 0 {
				unix.Close(stack[len(stack)-1])
				stack = stack[:len(stack)-1]
			}
			continue
		}
		fd, err := unix.Openat(cur(), c, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			return -1, err
		}
		var st unix.Stat_t
		if err := unix.Fstat(fd, &st); err != nil {
			unix.Close(fd)
			return -1, err
		}
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFDIR:
			stack = append(stack, fd)
			continue
		case unix.S_IFLNK:
		default:
			unix.Close(fd)
			return -1, unix.ENOTDIR
		}
		target, err := readlinkFd(fd)
		unix.Close(fd)
		if err != nil {
			return -1, err
		}
		if links++; links > maxSymlink {
			return -1, unix.ELOOP
		}
		if strings.HasPrefix(target, "/") {
			for _, fd := range stack {
				unix.Close(fd)
			}
			stack = stack[:0]
		}
		comps = append(strings.Split(target, "/"), comps...)
	}
	if len(stack) == 0 {
		return unix.Openat(rootfd, ".", unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	}
	fd := stack[len(stack)-1]
	stack = stack[:len(stack)-1]
	return fd, nil
}

// readlinkFd reads the target of the symlink open as O_PATH fd.
func readlinkFd(fd int) (string, error) {
	buf := make([]byte, maxPathLen)
	n, err := unix.Readlinkat(fd, "", buf)
	if err != nil {
		return "", err
	}
	return string(buf[:n]), nil
}

// removeAt removes name in directory dirfd and, for a directory, all
// below it, never following symlinks. A missing name is not an error.
func removeAt(dirfd int, name string) error {
	err := unix.Unlinkat(dirfd, name, 0)
	if err == nil || errors.Is(err, unix.ENOENT) {
		return nil
	}
	if !errors.Is(err, unix.EISDIR) {
		return fmt.Errorf("unlink %s: %w", name, err)
	}
	for try := 0; ; try++ {
		if err := removeChildren(dirfd, name); err != nil {
			return err
		}
		err = unix.Unlinkat(dirfd, name, unix.AT_REMOVEDIR)
		if err == nil || errors.Is(err, unix.ENOENT) {
			return nil
		}
		if !errors.Is(err, unix.ENOTEMPTY) || try == 2 {
			return fmt.Errorf("rmdir %s: %w", name, err)
		}
	}
}

func removeChildren(dirfd int, name string) error {
	fd, err := unix.Openat(dirfd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open %s: %w", name, err)
	}
	f := os.NewFile(uintptr(fd), name)
	defer f.Close()
	for {
		names, err := f.Readdirnames(1024)
		for _, n := range names {
			if err := removeAt(fd, n); err != nil {
				return err
			}
		}
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read dir %s: %w", name, err)
		}
	}
}

// resolveAny opens rel below rootfd as an O_PATH descriptor of whatever
// it names, following every symlink (the last one too) as if rootfd were
// "/", and never following /proc magic links.
func resolveAny(rootfd int, rel string) (int, error) {
	if fd, ok, err := openInRoot(rootfd, rel, unix.O_PATH|unix.O_CLOEXEC); ok {
		return fd, err
	}
	for links := 0; links <= maxSymlink; links++ {
		fd, target, err := openLastNoFollow(rootfd, rel)
		if err != nil || fd >= 0 {
			return fd, err
		}
		if strings.HasPrefix(target, "/") {
			rel = target
		} else {
			dir, _ := splitRel(rel)
			rel = dir + "/" + target
		}
	}
	return -1, unix.ELOOP
}

// openLastNoFollow opens the last component of rel (its directory
// resolved by resolveByHand) without following it: the O_PATH descriptor,
// or -1 and the target when it is a symlink.
func openLastNoFollow(rootfd int, rel string) (int, string, error) {
	rel = strings.TrimRight(rel, "/")
	dir, base := splitRel(rel)
	if base == "" || base == "." || base == ".." {
		fd, err := resolveByHand(rootfd, rel)
		return fd, "", err
	}
	pfd, err := resolveByHand(rootfd, dir)
	if err != nil {
		return -1, "", err
	}
	defer unix.Close(pfd)
	fd, err := unix.Openat(pfd, base, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, "", err
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFLNK {
		if err != nil {
			unix.Close(fd)
			fd = -1
		}
		return fd, "", err
	}
	target, err := readlinkFd(fd)
	unix.Close(fd)
	return -1, target, err
}
