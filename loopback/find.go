package loopback

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// FindByFile returns the loop device bound to file. Devices are matched by
// the device and inode numbers of the file (lo_device and lo_inode from
// LOOP_GET_STATUS64), not by path: a different file that has since replaced
// the backing file under the same name does not match. When several devices
// are bound to the file, the lowest-numbered one is returned. When none is,
// the error wraps ErrNotFound.
func FindByFile(file string) (*Device, error) {
	var st unix.Stat_t
	if err := unix.Stat(file, &st); err != nil {
		return nil, wrap("find", file, err)
	}
	for _, n := range loopNumbers() {
		d, err := match(n, uint64(st.Dev), uint64(st.Ino))
		if err != nil || d != nil {
			return d, err
		}
	}
	return nil, wrap("find", file, ErrNotFound)
}

// loopNumbers lists the loop devices known to /sys/block or /dev, sorted.
func loopNumbers() []int {
	var nums []int
	add := func(pattern, prefix string) {
		names, _ := filepath.Glob(pattern)
		for _, name := range names {
			n, err := strconv.Atoi(strings.TrimPrefix(name, prefix))
			if err == nil && n >= 0 {
				nums = append(nums, n)
			}
		}
	}
	add("/sys/block/loop*", "/sys/block/loop")
	add("/dev/loop*", "/dev/loop")
	slices.Sort(nums)
	return slices.Compact(nums)
}

// match returns loop device n if it is bound to the file with the given
// device and inode numbers, or nil if it is not (or not bound at all).
func match(n int, dev, ino uint64) (*Device, error) {
	sys := "/sys/block/loop" + strconv.Itoa(n)
	if _, err := os.Stat(sys); err == nil {
		if _, err := os.Stat(sys + "/loop/backing_file"); err != nil {
			return nil, nil // unbound: skip without opening it
		}
	}
	path := "/dev/loop" + strconv.Itoa(n)
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if isGone(err) {
		return nil, nil
	} else if err != nil {
		return nil, wrap("open", path, err)
	}
	defer unix.Close(fd)
	info, err := unix.IoctlLoopGetStatus64(fd)
	if isGone(err) {
		return nil, nil
	} else if err != nil {
		return nil, wrap("LOOP_GET_STATUS64", path, err)
	}
	if info.Device != dev || info.Inode != ino {
		return nil, nil
	}
	return &Device{
		Path:        path,
		Number:      n,
		BackingFile: backingFile(sys, info),
		DirectIO:    info.Flags&unix.LO_FLAGS_DIRECT_IO != 0,
	}, nil
}

// isGone reports whether err means the device does not exist or is unbound.
func isGone(err error) bool {
	return errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENXIO) || errors.Is(err, unix.ENODEV)
}

// backingFile returns the full backing file path from sysfs, or else the
// (possibly truncated) lo_file_name.
func backingFile(sys string, info *unix.LoopInfo64) string {
	if b, err := os.ReadFile(sys + "/loop/backing_file"); err == nil {
		return strings.TrimSuffix(string(b), "\n")
	}
	name := info.File_name[:]
	if i := bytes.IndexByte(name, 0); i >= 0 {
		name = name[:i]
	}
	return string(name)
}
