package powercut

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"

	"github.com/moby/sys/mountinfo"

	dm "github.com/thinlayer/thinlayer/devmapper"
	"github.com/thinlayer/thinlayer/loopback"
	"github.com/thinlayer/thinlayer/thinmeta"
)

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
