package fsutil

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
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
func Changes(layerDir, parentDir string) ([]Change, error) {
	w := &changeWalker{newRoot: layerDir, oldRoot: parentDir}
	if _, err := w.compareDir("/", parentDir != ""); err != nil {
		return nil, err
	}
	sort.Slice(w.changes, func(i, j int) bool { return w.changes[i].Path < w.changes[j].Path })
	return w.changes, nil
}

// DiffSize returns the size of what Changes(layerDir, parentDir) adds or
// modifies, as Moby's archive.ChangesSize counts it: the lstat size of
// every non-directory (regular files, and symlinks by target length), an
// inode with several hard links counted once.
func DiffSize(layerDir, parentDir string) (int64, error) {
	changes, err := Changes(layerDir, parentDir)
	if err != nil {
		return 0, err
	}
	var size int64
	seen := make(map[uint64]struct{})
	for _, c := range changes {
		if c.Kind == ChangeDelete {
			continue
		}
		var st unix.Stat_t
		p := filepath.Join(layerDir, c.Path)
		if err := unix.Lstat(p, &st); err != nil {
			return 0, fmt.Errorf("fsutil: diff size: lstat %s: %w", p, err)
		}
		if st.Mode&unix.S_IFMT == unix.S_IFDIR {
			continue
		}
		if st.Nlink > 1 {
			if _, ok := seen[st.Ino]; ok {
				continue
			}
			seen[st.Ino] = struct{}{}
		}
		size += st.Size
	}
	return size, nil
}

type changeWalker struct {
	newRoot, oldRoot string
	changes          []Change
}

// entryInfo is what Changes compares for one path.
type entryInfo struct {
	st         unix.Stat_t
	capability []byte
	target     string
}

func (e *entryInfo) isDir() bool { return e.st.Mode&unix.S_IFMT == unix.S_IFDIR }

// compareDir compares the children of directory rel (absolute in the
// layer) and reports whether any change was recorded below it. oldIsDir
// says whether rel is a directory in the parent too.
func (w *changeWalker) compareDir(rel string, oldIsDir bool) (bool, error) {
	start := len(w.changes)
	newNames, err := readNames(filepath.Join(w.newRoot, rel))
	if err != nil {
		return false, err
	}
	var oldNames []string
	if oldIsDir {
		if oldNames, err = readNames(filepath.Join(w.oldRoot, rel)); err != nil {
			return false, err
		}
	}
	i, j := 0, 0
	for i < len(newNames) || j < len(oldNames) {
		switch {
		case j == len(oldNames) || (i < len(newNames) && newNames[i] < oldNames[j]):
			err = w.addTree(path.Join(rel, newNames[i]))
			i++
		case i == len(newNames) || oldNames[j] < newNames[i]:
			w.changes = append(w.changes, Change{Path: path.Join(rel, oldNames[j]), Kind: ChangeDelete})
			j++
		default:
			err = w.compareEntry(path.Join(rel, newNames[i]))
			i++
			j++
		}
		if err != nil {
			return false, err
		}
	}
	return len(w.changes) > start, nil
}

// compareEntry compares a path present in both trees.
func (w *changeWalker) compareEntry(rel string) error {
	ni, err := readEntryInfo(filepath.Join(w.newRoot, rel))
	if err != nil {
		return err
	}
	oi, err := readEntryInfo(filepath.Join(w.oldRoot, rel))
	if err != nil {
		return err
	}
	if ni.st.Dev == oi.st.Dev && ni.st.Ino == oi.st.Ino {
		return nil // the very same file (shared inode): unchanged
	}
	modified := statDifferent(&oi.st, &ni.st) || !bytes.Equal(oi.capability, ni.capability) ||
		oi.target != ni.target
	if modified {
		w.changes = append(w.changes, Change{Path: rel, Kind: ChangeModify})
	}
	if !ni.isDir() {
		return nil
	}
	below, err := w.compareDir(rel, oi.isDir())
	if err != nil {
		return err
	}
	if below && !modified {
		w.changes = append(w.changes, Change{Path: rel, Kind: ChangeModify})
	}
	return nil
}

// addTree records rel and, for a directory, everything below it as added.
func (w *changeWalker) addTree(rel string) error {
	w.changes = append(w.changes, Change{Path: rel, Kind: ChangeAdd})
	var st unix.Stat_t
	p := filepath.Join(w.newRoot, rel)
	if err := unix.Lstat(p, &st); err != nil {
		return fmt.Errorf("fsutil: changes: lstat %s: %w", p, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR {
		return nil
	}
	names, err := readNames(p)
	if err != nil {
		return err
	}
	for _, n := range names {
		if err := w.addTree(path.Join(rel, n)); err != nil {
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

func readNames(dir string) ([]string, error) {
	f, err := os.Open(dir)
	if err != nil {
		return nil, fmt.Errorf("fsutil: changes: %w", err)
	}
	defer f.Close()
	names, err := f.Readdirnames(-1)
	if err != nil {
		return nil, fmt.Errorf("fsutil: changes: read dir %s: %w", dir, err)
	}
	sort.Strings(names)
	return names, nil
}

func readEntryInfo(p string) (*entryInfo, error) {
	e := &entryInfo{}
	if err := unix.Lstat(p, &e.st); err != nil {
		return nil, fmt.Errorf("fsutil: changes: lstat %s: %w", p, err)
	}
	capability, err := getXattr(p, capabilityXattr)
	if err != nil {
		return nil, fmt.Errorf("fsutil: changes: %w", err)
	}
	e.capability = capability
	if e.st.Mode&unix.S_IFMT == unix.S_IFLNK {
		if e.target, err = os.Readlink(p); err != nil {
			return nil, fmt.Errorf("fsutil: changes: %w", err)
		}
	}
	return e, nil
}

const capabilityXattr = "security.capability"

// getXattr returns the value of an xattr of p (not following a final
// symlink), or nil when p lacks it or its filesystem has no xattrs.
func getXattr(p, name string) ([]byte, error) {
	buf := make([]byte, 128)
	for {
		n, err := unix.Lgetxattr(p, name, buf)
		switch {
		case err == nil:
			return buf[:n], nil
		case errors.Is(err, unix.ENODATA), errors.Is(err, unix.ENOTSUP):
			return nil, nil
		case errors.Is(err, unix.ERANGE) && len(buf) < 1<<16:
			buf = make([]byte, 1<<16)
		default:
			return nil, fmt.Errorf("getxattr %s %s: %w", p, name, err)
		}
	}
}
