package gdtest

import (
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"

	dm "github.com/thinlayer/thinlayer/devmapper"
	gd "github.com/thinlayer/thinlayer/graphdriver"
	"github.com/thinlayer/thinlayer/loopback"
)

// CheckMountsUnder reports a mount left under home.
func CheckMountsUnder(home string) error {
	mounts, err := mountinfo.GetMounts(mountinfo.PrefixFilter(home))
	if err == nil && len(mounts) != 0 {
		err = errors.New("mount left under the home: " + mounts[0].Mountpoint)
	}
	return err
}

// ActiveDevices counts the device-mapper devices named prefix-*.
func ActiveDevices(t testing.TB, prefix string) int {
	c, err := dm.Open()
	Must(t, err)
	defer c.Close()
	devs, err := c.List()
	Must(t, err)
	n := 0
	for _, d := range devs {
		if strings.HasPrefix(d.Name, prefix+"-") {
			n++
		}
	}
	return n
}

// DevInfoIDs are the thin ids the home's DevInfo files name, sorted.
func DevInfoIDs(t testing.TB, home string) []int {
	entries, err := os.ReadDir(filepath.Join(home, "metadata"))
	Must(t, err)
	var ids []int
	for _, e := range entries {
		n := e.Name()
		if strings.HasPrefix(n, ".") || n == "transaction-metadata" || n == "deviceset-metadata" {
			continue
		}
		var info struct {
			DeviceID int `json:"device_id"`
		}
		b, err := os.ReadFile(filepath.Join(home, "metadata", n))
		Must(t, err)
		Must(t, json.Unmarshal(b, &info))
		ids = append(ids, info.DeviceID)
	}
	sort.Ints(ids)
	return ids
}

var devIDRe = regexp.MustCompile(`<device dev_id="(\d+)"`)

// ThinIDs are the thin ids in thin_dump's output, sorted.
func ThinIDs(dump []byte) []int {
	var ids []int
	for _, m := range devIDRe.FindAllSubmatch(dump, -1) {
		id, _ := strconv.Atoi(string(m[1]))
		ids = append(ids, id)
	}
	sort.Ints(ids)
	return ids
}

// SymmetricDiff is what is in one of a and b but not the other.
func SymmetricDiff(a, b []int) []int {
	count := map[int]int{}
	for _, x := range a {
		count[x]++
	}
	for _, x := range b {
		count[x]--
	}
	var d []int
	for x, n := range count {
		if n != 0 {
			d = append(d, x)
		}
	}
	return d
}

// PoolThinIDs reads a live pool's thin ids with thin_dump, from a
// metadata snapshot.
func PoolThinIDs(t testing.TB, d gd.Driver) []int {
	t.Helper()
	pool, metaDev := StatusRow(d, "Pool Name"), StatusRow(d, "Metadata file")
	c, err := dm.Open()
	Must(t, err)
	defer c.Close()
	Must(t, c.ReserveMetadataSnap(pool))
	defer func() { Must(t, c.ReleaseMetadataSnap(pool)) }()
	out, err := exec.Command("thin_dump", "-m", metaDev).Output()
	if err != nil {
		t.Fatalf("thin_dump -m %s: %v", metaDev, err)
	}
	return ThinIDs(out)
}

// PoolOffline returns the thin ids thin_dump finds in a pool's metadata
// file once the pool is down, and with check runs thin_check on it first.
// Both open with O_DIRECT, which tmpfs refuses: they go through a
// read-only loop device.
func PoolOffline(t testing.TB, file string, check bool) ([]int, bool) {
	t.Helper()
	loop, err := loopback.Attach(file, loopback.Options{ReadOnly: true})
	Must(t, err)
	defer loop.Detach()
	ok := true
	if check {
		if out, err := exec.Command("thin_check", loop.Path).CombinedOutput(); err != nil {
			ok = false
			t.Errorf("thin_check %s: %v\n%s", file, err, out)
		}
	}
	out, err := exec.Command("thin_dump", loop.Path).Output()
	if err != nil {
		t.Fatalf("thin_dump %s: %v", file, err)
	}
	return ThinIDs(out), ok
}

// ThinCheck runs thin_check on a pool's metadata file once the pool is
// down, and reports whether it was clean.
func ThinCheck(t testing.TB, file string) bool {
	t.Helper()
	loop, err := loopback.Attach(file, loopback.Options{ReadOnly: true})
	Must(t, err)
	defer loop.Detach()
	out, err := exec.Command("thin_check", loop.Path).CombinedOutput()
	if err != nil {
		t.Errorf("thin_check %s: %v\n%s", file, err, out)
	}
	return err == nil
}

// CopyTree copies a home (the pool down), keeping sparse files sparse.
func CopyTree(src, dst string) error {
	return filepath.WalkDir(src, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		target := filepath.Join(dst, rel)
		fi, err := e.Info()
		if err != nil {
			return err
		}
		switch {
		case e.IsDir():
			return os.MkdirAll(target, fi.Mode().Perm())
		case fi.Mode().IsRegular():
			return copySparse(p, target, fi)
		}
		return nil
	})
}

func copySparse(src, dst string, fi fs.FileInfo) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, fi.Mode().Perm())
	if err != nil {
		return err
	}
	defer out.Close()
	if err := out.Truncate(fi.Size()); err != nil {
		return err
	}
	for off := int64(0); off < fi.Size(); {
		start, err := unix.Seek(int(in.Fd()), off, unix.SEEK_DATA)
		if errors.Is(err, unix.ENXIO) {
			return nil // only a hole is left
		}
		if err != nil {
			return err
		}
		end, err := unix.Seek(int(in.Fd()), start, unix.SEEK_HOLE)
		if err != nil {
			return err
		}
		if err := copyRange(in, out, start, end); err != nil {
			return err
		}
		off = end
	}
	return nil
}

// copyRange copies [start, end) in large pieces: each syscall is costly
// under User-Mode Linux.
func copyRange(in, out *os.File, start, end int64) error {
	buf := make([]byte, min(4<<20, end-start))
	for off := start; off < end; {
		n, err := in.ReadAt(buf[:min(int64(len(buf)), end-off)], off)
		if n > 0 {
			if _, werr := out.WriteAt(buf[:n], off); werr != nil {
				return werr
			}
		}
		off += int64(n)
		if errors.Is(err, io.EOF) || n == 0 {
			return nil
		}
		if err != nil {
			return err
		}
	}
	return nil
}
