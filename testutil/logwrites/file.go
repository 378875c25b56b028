package logwrites

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// File is a replay target on a regular file: discards punch holes, so a
// sparse image stays sparse.
type File struct{ *os.File }

// Discard punches a hole over [off, off+n).
func (f File) Discard(off, n int64) error {
	err := unix.Fallocate(int(f.Fd()), unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, off, n)
	if err != nil {
		return fmt.Errorf("punch hole in %s at %d (+%d): %w", f.Name(), off, n, err)
	}
	return nil
}
