package powercut

import (
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"syscall"
	"testing"

	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"

	dm "github.com/thinlayer/thinlayer/devmapper"
	"github.com/thinlayer/thinlayer/loopback"
	"github.com/thinlayer/thinlayer/thinmeta"
)

// TreeOf describes every entry below root: type, mode, owner, size,
// content digest, link count and mtime, link target, device number.
func TreeOf(t testing.TB, root string) map[string]string {
	t.Helper()
	out := map[string]string{}
	must(t, filepath.WalkDir(root, func(p string, _ fs.DirEntry, err error) error {
		if err != nil || p == root {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		st := fi.Sys().(*syscall.Stat_t)
		desc := fmt.Sprintf("%v uid=%d gid=%d", fi.Mode(), st.Uid, st.Gid)
		switch {
		case fi.Mode().IsRegular():
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			desc += fmt.Sprintf(" size=%d sha=%x mtime=%d nlink=%d", fi.Size(), sha256.Sum256(b), fi.ModTime().Unix(), st.Nlink)
		case fi.Mode()&os.ModeSymlink != 0:
			target, _ := os.Readlink(p)
			desc += " -> " + target
		case fi.Mode()&os.ModeDevice != 0:
			desc += fmt.Sprintf(" rdev=%d", st.Rdev)
		}
		out[rel] = desc
		return nil
	}))
	return out
}

// DiffTrees lists the entries that differ between two TreeOf results.
func DiffTrees(a, b map[string]string) []string {
	var d []string
	for k, v := range a {
		if b[k] != v {
			d = append(d, fmt.Sprintf("%s: %q vs %q", k, v, b[k]))
		}
	}
	for k := range b {
		if _, ok := a[k]; !ok {
			d = append(d, k+": only in second")
		}
	}
	sort.Strings(d)
	return d
}

// FSSize is the size of the filesystem mounted at dir.
func FSSize(t testing.TB, dir string) uint64 {
	var st unix.Statfs_t
	must(t, unix.Statfs(dir, &st))
	return st.Blocks * uint64(st.Bsize)
}

// SyncDir fsyncs a directory.
func SyncDir(dir string) error {
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	return unix.Fsync(fd)
}

// Leftovers lists what a shut-down home left: devices of the pool's
// prefix still active, mounts under the home.
func Leftovers(t testing.TB, home, pool string) []string {
	var bad []string
	c, err := dm.Open()
	must(t, err)
	defer c.Close()
	devs, err := c.List()
	must(t, err)
	prefix := strings.TrimSuffix(pool, "-pool") + "-"
	for _, d := range devs {
		if strings.HasPrefix(d.Name, prefix) {
			bad = append(bad, "device left active: "+d.Name)
		}
	}
	mounts, err := mountinfo.GetMounts(mountinfo.PrefixFilter(home))
	must(t, err)
	for _, m := range mounts {
		bad = append(bad, "mount left: "+m.Mountpoint)
	}
	return bad
}

// CheckPool reads the pool's metadata once the pool is down: sound by
// thinmeta and by thin_check, and naming exactly the thin ids the home's
// DevInfo files name.
func CheckPool(t testing.TB, home string) []string {
	file := filepath.Join(home, "devicemapper", "metadata")
	m, err := thinmeta.Open(file)
	if err != nil {
		return []string{fmt.Sprintf("thinmeta: %v", err)}
	}
	defer m.Close()
	var bad []string
	if problems := m.Check(); len(problems) > 0 {
		bad = append(bad, fmt.Sprintf("thinmeta: %v", problems))
	}
	devs, err := m.Devices()
	if err != nil {
		return append(bad, fmt.Sprintf("thinmeta devices: %v", err))
	}
	var pool []int
	for _, dev := range devs {
		pool = append(pool, int(dev.ID))
	}
	sort.Ints(pool)
	if ours, err := DevInfoIDs(home); err != nil {
		bad = append(bad, err.Error())
	} else if !reflect.DeepEqual(ours, pool) {
		bad = append(bad, fmt.Sprintf("pool holds thin ids %v, DevInfo files name %v", pool, ours))
	}
	return append(bad, thinCheck(file)...)
}

// DevInfoIDs are the thin ids the home's DevInfo files name, sorted.
func DevInfoIDs(home string) ([]int, error) {
	dir := filepath.Join(home, "metadata")
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var ids []int
	for _, e := range entries {
		n := e.Name()
		if strings.HasPrefix(n, ".") || n == "transaction-metadata" || n == "deviceset-metadata" || e.IsDir() {
			continue
		}
		var info struct {
			DeviceID *int `json:"device_id"`
		}
		b, err := os.ReadFile(filepath.Join(dir, n))
		if err != nil {
			return nil, err
		}
		if err := json.Unmarshal(b, &info); err != nil || info.DeviceID == nil {
			return nil, fmt.Errorf("DevInfo %s unreadable (%v): %q", n, err, b)
		}
		ids = append(ids, *info.DeviceID)
	}
	sort.Ints(ids)
	return ids, nil
}

// thinCheck runs thin_check on a pool's metadata file through a
// read-only loop device (it opens with O_DIRECT, which tmpfs refuses).
func thinCheck(file string) []string {
	loop, err := loopback.Attach(file, loopback.Options{ReadOnly: true})
	if err != nil {
		return []string{fmt.Sprintf("attach %s: %v", file, err)}
	}
	defer loop.Detach()
	if out, err := exec.Command("thin_check", loop.Path).CombinedOutput(); err != nil {
		return []string{fmt.Sprintf("thin_check: %v: %s", err, out)}
	}
	return nil
}
