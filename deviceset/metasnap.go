package deviceset

import (
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// A pool holds one metadata snapshot at a time: a second
// reserve_metadata_snap fails with EBUSY, and a release_metadata_snap
// drops whichever snapshot is held, another reader's too. Every reader of
// a live pool's metadata in this project — this package's MappedBytes,
// the thinlayer command's ls, check and gc — holds the metadata-snapshot
// lock from reserve to release, in whatever process it runs. The lock is
// a flock on the home's metadata directory (no lock file: a home Moby may
// open gets nothing new, and a read-only command writes nothing); the home
// lock is on the home directory itself, a lock of its own.

// LockMetadataSnapshot waits for and takes home's metadata-snapshot lock.
// unlock lets it go.
func LockMetadataSnapshot(home string) (unlock func(), err error) {
	dir := filepath.Join(home, "metadata")
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("metadata-snapshot lock: %w", &os.PathError{Op: "open", Path: dir, Err: err})
	}
	for {
		err = unix.Flock(fd, unix.LOCK_EX)
		if err != unix.EINTR {
			break
		}
	}
	if err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("metadata-snapshot lock: %w", &os.PathError{Op: "flock", Path: dir, Err: err})
	}
	return func() { unix.Close(fd) }, nil
}
