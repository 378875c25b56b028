package devmapper

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// Without udev nobody else makes /dev/mapper/<name>: these do what
// libdevmapper's node fallback does.

// makeNode makes /dev/mapper/<name> for dev, right after the device was
// created: the node is usually missing, so mknod comes first and a stat only
// follows an EEXIST.
func (c *Control) makeNode(name string, dev uint64) error {
	if err := c.mapperDir(); err != nil {
		return err
	}
	path := DevicePath(name)
	err := unix.Mknod(path, unix.S_IFBLK|0o600, int(dev))
	if errors.Is(err, unix.EEXIST) {
		return ensureNode(path, dev)
	}
	if err != nil {
		return fmt.Errorf("mknod %s: %w", path, err)
	}
	return nil
}

// ensureNode checks that path is the block node for dev, replacing a stale
// one: from a device that went away behind our back (e.g. a deferred remove
// completed) and whose name came back with another minor.
func ensureNode(path string, dev uint64) error {
	var st unix.Stat_t
	err := unix.Stat(path, &st)
	if err == nil && st.Mode&unix.S_IFMT == unix.S_IFBLK && uint64(st.Rdev) == dev { // Rdev is 32 bits on mips
		return nil
	}
	if err == nil {
		if err := os.Remove(path); err != nil {
			return fmt.Errorf("replace stale node: %w", err)
		}
	} else if !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("stat %s: %w", path, err)
	}
	if err := unix.Mknod(path, unix.S_IFBLK|0o600, int(dev)); err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("mknod %s: %w", path, err)
	}
	return nil
}

// mapperDir makes MapperDir once per Control (its descriptor's lifetime).
func (c *Control) mapperDir() error {
	if c.dirMade.Load() {
		return nil
	}
	if err := os.MkdirAll(MapperDir, 0o755); err != nil {
		return fmt.Errorf("make node: %w", err)
	}
	c.dirMade.Store(true)
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
// this only fills in when udev was too slow or is missing its rules. Without
// udev, Create and CreateAndLoad have made the node already: no need to
// call this after them.
func (c *Control) EnsureNode(info Info) error {
	path := DevicePath(info.Name)
	err := ensureNode(path, info.Dev())
	if errors.Is(err, unix.ENOENT) { // no /dev/mapper yet
		if err = c.mapperDir(); err == nil {
			err = ensureNode(path, info.Dev())
		}
	}
	return wrap("make node", info.Name, err)
}

func isErrno(err error, errno unix.Errno) bool { return errors.Is(err, errno) }
