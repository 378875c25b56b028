package layertar

import (
	"errors"
	"fmt"
	"os"
	"path"
	"strings"

	"golang.org/x/sys/unix"
)

// ErrNotRegular: a name in a layer is not a regular file where one was
// wanted (a symlink, a directory, a device, a FIFO).
var ErrNotRegular = errors.New("not a regular file")

// LayerRoot is a layer's root directory, open for reading files by their
// names inside it without following any symlink (see layer_read.go).
type LayerRoot struct {
	dir string
	fd  int
}

// OpenLayerRoot opens dir, a layer root; dir itself must not be a symlink.
func OpenLayerRoot(dir string) (*LayerRoot, error) {
	fd, err := openLayerRoot(dir)
	if err != nil {
		return nil, err
	}
	return &LayerRoot{dir: dir, fd: fd}, nil
}

// Close releases the root's descriptor.
func (r *LayerRoot) Close() error { return unix.Close(r.fd) }

// OpenFile opens the regular file name (a tar member's name: "./a/b",
// "a/b" or "/a/b") below the root for reading. A name that leads through
// a symlink, or ends at anything but a regular file, is refused: a FIFO is
// never opened for reading, so a container cannot make a reader hang.
func (r *LayerRoot) OpenFile(name string) (*os.File, error) {
	rel, err := layerRel(name)
	if err != nil {
		return nil, &os.PathError{Op: "open in layer", Path: name, Err: err}
	}
	pfd, err := openEntry(r.fd, rel)
	if err != nil {
		return nil, &os.PathError{Op: "open in layer", Path: rel, Err: err}
	}
	defer unix.Close(pfd)
	var st unix.Stat_t
	if err := unix.Fstat(pfd, &st); err != nil {
		return nil, &os.PathError{Op: "stat in layer", Path: rel, Err: err}
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return nil, &os.PathError{Op: "open in layer", Path: rel, Err: fmt.Errorf("%w (mode %#o)", ErrNotRegular, st.Mode)}
	}
	fd, err := reopen(pfd, unix.O_RDONLY)
	if err != nil {
		return nil, &os.PathError{Op: "open in layer", Path: rel, Err: err}
	}
	return os.NewFile(uintptr(fd), path.Join(r.dir, rel)), nil
}

// layerRel makes a tar member's name a clean relative path below a root,
// refusing one that climbs out of it or names the root itself.
func layerRel(name string) (string, error) {
	if strings.IndexByte(name, 0) >= 0 {
		return "", fmt.Errorf("a NUL in the name: %w", errEscape)
	}
	rel := strings.TrimLeft(path.Clean("/"+name), "/")
	for _, c := range strings.Split(name, "/") {
		if c == ".." {
			return "", fmt.Errorf("%q: %w", name, errEscape)
		}
	}
	if rel == "" {
		return "", fmt.Errorf("%q names the root: %w", name, errEscape)
	}
	return rel, nil
}
