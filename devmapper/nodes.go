package devmapper

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// Without udev nobody else makes /dev/mapper/<name>: these do what
// libdevmapper's node fallback does.

func makeNode(name string, dev uint64) error {
	if err := os.MkdirAll(MapperDir, 0o755); err != nil {
		return fmt.Errorf("make node: %w", err)
	}
	path := DevicePath(name)
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err == nil {
		if st.Mode&unix.S_IFMT == unix.S_IFBLK && st.Rdev == dev {
			return nil
		}
		// A stale node from a device that went away behind our back
		// (e.g. a deferred remove completed): replace it.
		if err := os.Remove(path); err != nil {
			return fmt.Errorf("replace stale node: %w", err)
		}
	}
	if err := unix.Mknod(path, unix.S_IFBLK|0o600, int(dev)); err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("mknod %s: %w", path, err)
	}
	return nil
}

func removeNode(name string) error {
	err := os.Remove(DevicePath(name))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove node: %w", err)
	}
	return nil
}

func renameNode(name, newName string) error {
	err := os.Rename(DevicePath(name), DevicePath(newName))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("rename node: %w", err)
	}
	return nil
}

// EnsureNode makes sure /dev/mapper/<name> exists for an active device, as a
// caller that is about to open it needs. With udev the node is udev's, and
// this only fills in when udev was too slow or is missing its rules.
func (c *Control) EnsureNode(info Info) error {
	return wrap("make node", info.Name, makeNode(info.Name, info.Dev()))
}

func isErrno(err error, errno unix.Errno) bool { return errors.Is(err, errno) }
