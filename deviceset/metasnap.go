package deviceset

import (
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// The look lock serializes, across processes, what readers of a home do
// that they cannot share — read-only opens share the home lock, so it is
// not that:
//   - a pool holds one metadata snapshot at a time: a second
//     reserve_metadata_snap fails with EBUSY, and release_metadata_snap
//     drops whichever snapshot is held, another reader's too. Every reader
//     of a live pool's metadata here — this package's MappedBytes, the
//     thinlayer command's ls, check and gc — holds the lock from reserve
//     to release;
//   - ProbeBase activates the base device for its look and removes it
//     after, which would pull it from under another reader's probe.
//
// It is a flock on the home's metadata directory (no lock file: a home
// Moby may open gets nothing new, and a read-only command writes nothing);
// the home lock is on the home directory itself, a lock of its own. It is
// never held while waiting for the home lock, nor taken twice.

// LockLook waits for and takes home's look lock; unlock lets it go.
func LockLook(home string) (unlock func(), err error) {
	dir := filepath.Join(home, "metadata")
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("look lock: %w", &os.PathError{Op: "open", Path: dir, Err: err})
	}
	for {
		err = unix.Flock(fd, unix.LOCK_EX)
		if err != unix.EINTR {
			break
		}
	}
	if err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("look lock: %w", &os.PathError{Op: "flock", Path: dir, Err: err})
	}
	return func() { unix.Close(fd) }, nil
}
