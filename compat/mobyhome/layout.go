//go:build linux

package mobyhome

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// On-disk layout of a Moby devicemapper home (loop-backed pool):
//
//	<home>/devicemapper/data, metadata   sparse loop files of the pool
//	<home>/metadata/deviceset-metadata    {"next_device_id":..,"BaseDeviceUUID":..,"BaseDeviceFilesystem":..}
//	<home>/metadata/transaction-metadata  {"open_transaction_id":..,"device_hash":..,"device_id":..}
//	<home>/metadata/base                  DevInfo of the base device (hash "")
//	<home>/metadata/<layer id>            DevInfo of each layer
//	<home>/mnt/<layer id>                 mount point while a layer is got
//
// Device-mapper names: DevicePrefix(home)+"-pool" for the pool,
// DevicePrefix(home)+"-base" and DevicePrefix(home)+"-<id>" for thin devices.

// DevicePrefix is the prefix of every device-mapper name Moby gives devices
// of home: "docker-<major>:<minor>-<inode>" of home's directory.
func DevicePrefix(home string) (string, error) {
	var st unix.Stat_t
	if err := unix.Stat(home, &st); err != nil {
		return "", err
	}
	return fmt.Sprintf("docker-%d:%d-%d", unix.Major(st.Dev), unix.Minor(st.Dev), st.Ino), nil
}

// PoolName is the device-mapper name of home's loop-backed thin pool.
func PoolName(home string) (string, error) {
	p, err := DevicePrefix(home)
	if err != nil {
		return "", err
	}
	return p + "-pool", nil
}

// Describe lists home's devicemapper/ and metadata/ directories (with file
// sizes: apparent and allocated) and prints every metadata file, for a test
// log.
func Describe(home string) (string, error) {
	var b strings.Builder
	if p, err := DevicePrefix(home); err == nil {
		fmt.Fprintf(&b, "device prefix: %s (pool %s-pool)\n", p, p)
	}
	for _, sub := range []string{"devicemapper", "metadata", "mnt"} {
		dir := filepath.Join(home, sub)
		ents, err := os.ReadDir(dir)
		if err != nil {
			fmt.Fprintf(&b, "%s/: %v\n", sub, err)
			continue
		}
		fmt.Fprintf(&b, "%s/:\n", sub)
		for _, e := range ents {
			fi, err := os.Lstat(filepath.Join(dir, e.Name()))
			if err != nil {
				return "", err
			}
			alloc := int64(0)
			if st, ok := fi.Sys().(*syscall.Stat_t); ok {
				alloc = st.Blocks * 512
			}
			fmt.Fprintf(&b, "  %s %s size=%d allocated=%d\n", fi.Mode(), e.Name(), fi.Size(), alloc)
		}
	}
	ents, err := os.ReadDir(filepath.Join(home, "metadata"))
	if err != nil {
		return b.String(), nil
	}
	for _, e := range ents {
		if !e.Type().IsRegular() {
			continue
		}
		data, err := os.ReadFile(filepath.Join(home, "metadata", e.Name()))
		if err != nil {
			return "", err
		}
		fmt.Fprintf(&b, "metadata/%s: %s\n", e.Name(), data)
	}
	return b.String(), nil
}

// Leftovers reports what of home is still live: device-mapper devices named
// with home's prefix and their /dev/mapper nodes, loop devices over files
// under home, and mounts under home. Empty after a clean Cleanup.
func Leftovers(home string) ([]string, error) {
	var left []string
	prefix, err := DevicePrefix(home)
	if err != nil {
		return nil, err
	}
	dms, _ := filepath.Glob("/sys/block/dm-*/dm/name")
	for _, f := range dms {
		name, err := os.ReadFile(f)
		if err != nil {
			continue // went away meanwhile
		}
		n := strings.TrimSpace(string(name))
		if strings.HasPrefix(n, prefix+"-") {
			left = append(left, "device-mapper device "+n)
		}
	}
	nodes, _ := filepath.Glob("/dev/mapper/" + prefix + "-*")
	for _, n := range nodes {
		left = append(left, "device node "+n)
	}
	absHome, err := filepath.Abs(home)
	if err != nil {
		return nil, err
	}
	loops, _ := filepath.Glob("/sys/block/loop*/loop/backing_file")
	for _, f := range loops {
		backing, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		bf := strings.TrimSpace(string(backing))
		if under(bf, absHome) {
			left = append(left, fmt.Sprintf("loop device %s over %s", filepath.Base(filepath.Dir(filepath.Dir(f))), bf))
		}
	}
	mounts, err := mountPoints()
	if err != nil {
		return nil, err
	}
	for _, m := range mounts {
		if under(m, absHome) {
			left = append(left, "mount on "+m)
		}
	}
	sort.Strings(left)
	return left, nil
}

// StaleNodes lists the /dev/mapper nodes of home's devices that no longer
// name a live device-mapper device of that name: what Moby's deferred
// removal leaves behind where no udevd runs.
func StaleNodes(home string) ([]string, error) {
	prefix, err := DevicePrefix(home)
	if err != nil {
		return nil, err
	}
	nodes, err := filepath.Glob("/dev/mapper/" + prefix + "-*")
	if err != nil {
		return nil, err
	}
	var stale []string
	for _, n := range nodes {
		var st unix.Stat_t
		if err := unix.Stat(n, &st); err != nil {
			continue
		}
		live, err := os.ReadFile(fmt.Sprintf("/sys/dev/block/%d:%d/dm/name", unix.Major(st.Rdev), unix.Minor(st.Rdev)))
		if err != nil || strings.TrimSpace(string(live)) != filepath.Base(n) {
			stale = append(stale, n)
		}
	}
	return stale, nil
}

// RemoveStaleNodes removes the nodes StaleNodes lists and returns them.
func RemoveStaleNodes(home string) ([]string, error) {
	stale, err := StaleNodes(home)
	if err != nil {
		return nil, err
	}
	for _, n := range stale {
		if err := os.Remove(n); err != nil && !os.IsNotExist(err) {
			return stale, err
		}
	}
	return stale, nil
}

func under(p, dir string) bool {
	return p == dir || strings.HasPrefix(p, dir+"/")
}

func mountPoints() ([]string, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var mps []string
	s := bufio.NewScanner(f)
	for s.Scan() {
		fields := strings.Fields(s.Text())
		if len(fields) > 4 {
			mps = append(mps, unescapeMount(fields[4]))
		}
	}
	return mps, s.Err()
}

// unescapeMount undoes mountinfo's octal escapes (\040 for a space, ...).
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			var v int
			if _, err := fmt.Sscanf(s[i+1:i+4], "%03o", &v); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
