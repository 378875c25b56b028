package layertar

import (
	"bytes"
	"errors"
	"fmt"
	"path"
	"sort"

	"golang.org/x/sys/unix"
)

// ChangeKind says how a path differs between a layer and its parent.
type ChangeKind int

// The change kinds, numbered as in Moby's pkg/archive.
const (
	// ChangeModify: the path exists in both trees with different metadata
	// or content, or it is a directory something below which changed.
	ChangeModify ChangeKind = 0
	// ChangeAdd: the path exists only in the layer.
	ChangeAdd ChangeKind = 1
	// ChangeDelete: the path exists only in the parent.
	ChangeDelete ChangeKind = 2
)

// String returns "C", "A" or "D" as docker diff prints them.
func (k ChangeKind) String() string {
	switch k {
	case ChangeModify:
		return "C"
	case ChangeAdd:
		return "A"
	case ChangeDelete:
		return "D"
	}
	return fmt.Sprintf("ChangeKind(%d)", int(k))
}

// Change is one changed path, absolute inside the layer ("/etc/passwd").
type Change struct {
	Path string
	Kind ChangeKind
}

// String returns e.g. "C /etc/passwd".
func (c Change) String() string { return c.Kind.String() + " " + c.Path }

// Changes compares the tree at layerDir with the tree at parentDir (""
// meaning an empty parent) and returns the changes sorted by path, with
// the rules of Moby's archive.ChangesDirs: a path is modified when its
// mode, owner, rdev, security.capability or symlink target differ, or for
// non-directories its size or mtime (mtimes with a zero nanosecond part
// match any time in the same second). Directory mtimes and sizes are not
// compared, but a directory with a change anywhere below it is listed as
// modified so that its metadata travels with the diff. Only the deleted
// path itself is listed, not what was below it. The root is never listed.
//
// Both trees are walked by descriptors, never following a symlink (the
// roots themselves must not be symlinks). For a tree that changes during
// the walk (a running container's): a name gone before its lstat is
// absent, as in Moby's walker; a directory that is no longer the one
// stat'd when it is opened is listed as changed, and nothing below it.
func Changes(layerDir, parentDir string) ([]Change, error) {
	w := &changeWalker{}
	if err := w.walk(layerDir, parentDir); err != nil {
		return nil, err
	}
	sort.Slice(w.changes, func(i, j int) bool { return w.changes[i].Path < w.changes[j].Path })
	return w.changes, nil
}

// DiffSize returns the size of what Changes(layerDir, parentDir) adds or
// modifies, as Moby's archive.ChangesSize counts it: the lstat size of
// every non-directory (regular files, and symlinks by target length), an
// inode with several hard links counted once. The sizes are the walk's own
// lstats, not a second lookup by path.
func DiffSize(layerDir, parentDir string) (int64, error) {
	w := &changeWalker{sized: make(map[uint64]struct{})}
	if err := w.walk(layerDir, parentDir); err != nil {
		return 0, err
	}
	return w.size, nil
}

type changeWalker struct {
	changes []Change
	// sized, non-nil for DiffSize, holds the inodes with several links
	// already counted in size.
	sized  map[uint64]struct{}
	size   int64
	dirent []byte
}

func (w *changeWalker) walk(layerDir, parentDir string) error {
	w.dirent = make([]byte, direntBufSize)
	newfd, err := openLayerRoot(layerDir)
	if err != nil {
		return fmt.Errorf("layertar: changes: %w", err)
	}
	defer unix.Close(newfd)
	oldfd := -1
	if parentDir != "" {
		if oldfd, err = openLayerRoot(parentDir); err != nil {
			return fmt.Errorf("layertar: changes: %w", err)
		}
		defer unix.Close(oldfd)
	}
	_, err = w.compareDir("/", newfd, oldfd)
	return err
}

// record lists a change; an added or modified non-directory counts its
// size for DiffSize.
func (w *changeWalker) record(rel string, kind ChangeKind, st *unix.Stat_t) {
	w.changes = append(w.changes, Change{Path: rel, Kind: kind})
	if w.sized == nil || st == nil || st.Mode&unix.S_IFMT == unix.S_IFDIR {
		return
	}
	if st.Nlink > 1 {
		if _, ok := w.sized[st.Ino]; ok {
			return
		}
		w.sized[st.Ino] = struct{}{}
	}
	w.size += st.Size
}

// entryInfo is what Changes compares for one path.
type entryInfo struct {
	st         unix.Stat_t
	capability []byte
	target     string
}

func (e *entryInfo) isDir() bool { return e.st.Mode&unix.S_IFMT == unix.S_IFDIR }

// compareDir compares the children of directory rel (absolute in the
// layer), open as newfd in the layer and as oldfd in the parent (-1 when
// it is not a directory there), and reports whether any change was
// recorded below it.
func (w *changeWalker) compareDir(rel string, newfd, oldfd int) (bool, error) {
	if len(rel) > maxPathLen {
		return false, fmt.Errorf("layertar: changes: %q...: %w", rel[:64], unix.ENAMETOOLONG)
	}
	start := len(w.changes)
	newNames, err := readDirNames(newfd, w.dirent)
	if err != nil {
		return false, fmt.Errorf("layertar: changes: read dir %s: %w", rel, err)
	}
	var oldNames []string
	if oldfd >= 0 {
		if oldNames, err = readDirNames(oldfd, w.dirent); err != nil {
			return false, fmt.Errorf("layertar: changes: read parent's dir %s: %w", rel, err)
		}
	}
	i, j := 0, 0
	for i < len(newNames) || j < len(oldNames) {
		switch {
		case j == len(oldNames) || (i < len(newNames) && newNames[i] < oldNames[j]):
			err = w.addTree(newfd, newNames[i], path.Join(rel, newNames[i]))
			i++
		case i == len(newNames) || oldNames[j] < newNames[i]:
			w.record(path.Join(rel, oldNames[j]), ChangeDelete, nil)
			j++
		default:
			err = w.compareEntry(newfd, oldfd, newNames[i], path.Join(rel, newNames[i]))
			i++
			j++
		}
		if err != nil {
			return false, err
		}
	}
	return len(w.changes) > start, nil
}

// compareEntry compares name, listed in both directories. A name gone
// since (a running container removed it) is absent on that side, as
// Moby's walker takes it.
func (w *changeWalker) compareEntry(newfd, oldfd int, name, rel string) error {
	ni, err := readEntryInfo(newfd, name, rel)
	if err != nil {
		return err
	}
	oi, err := readEntryInfo(oldfd, name, rel)
	if err != nil {
		return err
	}
	switch {
	case ni == nil && oi == nil:
		return nil
	case ni == nil:
		w.record(rel, ChangeDelete, nil)
		return nil
	case oi == nil:
		return w.addTree(newfd, name, rel)
	}
	if testHookStat != nil {
		testHookStat(rel)
	}
	if ni.st.Dev == oi.st.Dev && ni.st.Ino == oi.st.Ino {
		return nil // the very same file (shared inode): unchanged
	}
	modified := statDifferent(&oi.st, &ni.st) || !bytes.Equal(oi.capability, ni.capability) ||
		oi.target != ni.target
	if modified {
		w.record(rel, ChangeModify, &ni.st)
	}
	if !ni.isDir() {
		return nil
	}
	below, err := w.compareSubdirs(newfd, oldfd, name, rel, &ni.st, &oi.st)
	if err != nil {
		return err
	}
	if below && !modified {
		w.record(rel, ChangeModify, nil)
	}
	return nil
}

// compareSubdirs opens the directory name on both sides and compares
// them. A layer directory swapped since its lstat counts as a change with
// nothing listed below it; a parent directory swapped counts as absent.
func (w *changeWalker) compareSubdirs(newfd, oldfd int, name, rel string, nst, ost *unix.Stat_t) (bool, error) {
	nsub, err := openSubdir(newfd, name, nst)
	if errors.Is(err, errSwapped) {
		return true, nil
	}
	if err != nil {
		return false, fmt.Errorf("layertar: changes: open %s: %w", rel, err)
	}
	defer unix.Close(nsub)
	osub := -1
	if ost.Mode&unix.S_IFMT == unix.S_IFDIR {
		osub, err = openSubdir(oldfd, name, ost)
		if err != nil && !errors.Is(err, errSwapped) {
			return false, fmt.Errorf("layertar: changes: open parent's %s: %w", rel, err)
		}
		if err == nil {
			defer unix.Close(osub)
		}
	}
	return w.compareDir(rel, nsub, osub)
}

// addTree records name (rel) of directory dirfd and, for a directory,
// everything below it as added; a name gone since it was listed, nothing.
func (w *changeWalker) addTree(dirfd int, name, rel string) error {
	var st unix.Stat_t
	err := unix.Fstatat(dirfd, name, &st, unix.AT_SYMLINK_NOFOLLOW)
	if errors.Is(err, unix.ENOENT) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("layertar: changes: lstat %s: %w", rel, err)
	}
	w.record(rel, ChangeAdd, &st)
	if testHookStat != nil {
		testHookStat(rel)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR {
		return nil
	}
	if len(rel) > maxPathLen {
		return fmt.Errorf("layertar: changes: %q...: %w", rel[:64], unix.ENAMETOOLONG)
	}
	sub, err := openSubdir(dirfd, name, &st)
	if errors.Is(err, errSwapped) {
		return nil // listed; what is there now is not what was stat'd
	}
	if err != nil {
		return fmt.Errorf("layertar: changes: open %s: %w", rel, err)
	}
	defer unix.Close(sub)
	names, err := readDirNames(sub, w.dirent)
	if err != nil {
		return fmt.Errorf("layertar: changes: read dir %s: %w", rel, err)
	}
	for _, n := range names {
		if err := w.addTree(sub, n, path.Join(rel, n)); err != nil {
			return err
		}
	}
	return nil
}

// statDifferent is Moby's rule: mode, owner and rdev always count; size
// and mtime only for non-directories.
func statDifferent(a, b *unix.Stat_t) bool {
	if a.Mode != b.Mode || a.Uid != b.Uid || a.Gid != b.Gid || a.Rdev != b.Rdev {
		return true
	}
	if a.Mode&unix.S_IFMT == unix.S_IFDIR {
		return false
	}
	return a.Size != b.Size || !sameFsTime(a.Mtim, b.Mtim)
}

// sameFsTime treats a zero nanosecond part as a wildcard, since tar
// headers carry whole seconds only.
func sameFsTime(a, b unix.Timespec) bool {
	return a.Sec == b.Sec && (a.Nsec == b.Nsec || a.Nsec == 0 || b.Nsec == 0)
}

// readEntryInfo reads name of directory dirfd without following it; nil
// when it is gone.
func readEntryInfo(dirfd int, name, rel string) (*entryInfo, error) {
	e := &entryInfo{}
	err := unix.Fstatat(dirfd, name, &e.st, unix.AT_SYMLINK_NOFOLLOW)
	if errors.Is(err, unix.ENOENT) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("layertar: changes: lstat %s: %w", rel, err)
	}
	capability, err := xattrsAt(dirfd, name).get(capabilityXattr)
	if errors.Is(err, unix.ENOENT) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("layertar: changes: %s: %w", rel, err)
	}
	e.capability = capability
	if e.st.Mode&unix.S_IFMT == unix.S_IFLNK {
		e.target, err = readlinkAt(dirfd, name)
		if errors.Is(err, unix.ENOENT) {
			return nil, nil
		}
		if err != nil {
			return nil, fmt.Errorf("layertar: changes: readlink %s: %w", rel, err)
		}
	}
	return e, nil
}

func readlinkAt(dirfd int, name string) (string, error) {
	buf := make([]byte, maxPathLen)
	n, err := unix.Readlinkat(dirfd, name, buf)
	if err != nil {
		return "", err
	}
	return string(buf[:n]), nil
}

const capabilityXattr = "security.capability"
