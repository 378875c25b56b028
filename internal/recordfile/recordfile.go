// Package recordfile reads and writes the small record files a home keeps
// (DevInfos, the home-wide and transaction records, the direct-LVM setup)
// by one rule: read only a regular file, never through a link, never
// hanging on a FIFO, and bounded; write atomically and durably (temp file,
// fsync, rename, fsync of the directory). Raw syscalls: these are on the
// path of every create, delete and first mount.
package recordfile

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// ErrInvalid: the file is not a record: not a regular file, or too large.
var ErrInvalid = errors.New("not a record file")

// Open opens a record file for reading: a link is not followed
// (O_NOFOLLOW: where it points is not the home's), a FIFO does not hang the
// open (O_NONBLOCK), and whatever did open must be a regular file, else
// ErrInvalid. A missing file is os.ErrNotExist.
func Open(path string) (int, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC|unix.O_NOFOLLOW|unix.O_NONBLOCK, 0)
	switch {
	case err == unix.ELOOP: // the file is a symlink
		return -1, notRegular(path, "a symlink")
	case err == unix.ENXIO: // a socket (or a device with no driver)
		return -1, notRegular(path, "a socket or device")
	case err != nil:
		return -1, &os.PathError{Op: "open", Path: path, Err: err}
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return -1, &os.PathError{Op: "fstat", Path: path, Err: err}
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		unix.Close(fd)
		return -1, notRegular(path, fmt.Sprintf("mode %#o", st.Mode&unix.S_IFMT))
	}
	return fd, nil
}

func notRegular(path, what string) error {
	return fmt.Errorf("%w: %s is not a regular file (%s)", ErrInvalid, path, what)
}

// Read reads a record file of at most max bytes (Open's rule).
func Read(path string, max int) ([]byte, error) {
	fd, err := Open(path)
	if err != nil {
		return nil, err
	}
	defer unix.Close(fd)
	b := make([]byte, 1024)
	for n := 0; n <= max; {
		if n == len(b) {
			b = append(b, make([]byte, len(b))...)
		}
		m, err := unix.Read(fd, b[n:])
		switch {
		case err == unix.EINTR:
		case err != nil:
			return nil, fmt.Errorf("read %s: %w", path, err)
		case m == 0:
			return b[:n], nil
		default:
			n += m
		}
	}
	return nil, fmt.Errorf("%w: %s is larger than %d bytes", ErrInvalid, path, max)
}

// Write replaces dir/name with b (mode 0600) atomically and durably: temp
// file, fsync, rename, fsync of the directory (so the rename itself
// survives a power cut). Eight syscalls in all.
func Write(dir, name string, b []byte) error {
	p := filepath.Join(dir, name)
	if err := writeFileSync(filepath.Join(dir, tmpName()), p, b); err != nil {
		return fmt.Errorf("write %s: %w", p, err)
	}
	if err := SyncDir(dir); err != nil {
		return fmt.Errorf("write %s: sync directory: %w", p, err)
	}
	return nil
}

var tmpSeq atomic.Uint64

// tmpName is a temp file name no other writer in this process uses at the
// same time; one a crash left behind is simply overwritten. The leading
// dot keeps it out of listings of records (and Moby's walk).
func tmpName() string { return ".tmp-" + strconv.FormatUint(tmpSeq.Add(1), 10) }

// writeFileSync writes b to tmp, fsyncs it and renames it to dst; the temp
// file is removed only when something failed.
func writeFileSync(tmp, dst string, b []byte) error {
	fd, err := unix.Open(tmp, unix.O_WRONLY|unix.O_CREAT|unix.O_TRUNC|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return &os.PathError{Op: "create", Path: tmp, Err: err}
	}
	err = writeAll(fd, b)
	if err == nil {
		err = unix.Fsync(fd)
	}
	if cerr := unix.Close(fd); err == nil {
		err = cerr
	}
	if err == nil {
		err = unix.Rename(tmp, dst)
	}
	if err != nil {
		_ = unix.Unlink(tmp)
	}
	return err
}

// writeAll writes b to fd, retrying short writes and EINTR.
func writeAll(fd int, b []byte) error {
	for len(b) > 0 {
		n, err := unix.Write(fd, b)
		switch {
		case err == unix.EINTR:
		case err != nil:
			return err
		case n == 0:
			return io.ErrShortWrite
		default:
			b = b[n:]
		}
	}
	return nil
}

// SyncDir fsyncs a directory: what makes a rename or an unlink in it
// durable.
func SyncDir(dir string) error {
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return &os.PathError{Op: "open", Path: dir, Err: err}
	}
	err = unix.Fsync(fd)
	if cerr := unix.Close(fd); err == nil {
		err = cerr
	}
	return err
}
