package cli

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"

	"github.com/thinlayer/thinlayer/deviceset"
	dm "github.com/thinlayer/thinlayer/devmapper"
	"github.com/thinlayer/thinlayer/fsutil"
)

// UnmountResult says what umount did.
type UnmountResult struct {
	Dir         string `json:"dir"`
	Device      string `json:"device"`                 // the layer's device-mapper name
	Deactivated bool   `json:"deactivated"`            // the device was removed
	PoolRemoved string `json:"pool_removed,omitempty"` // a read-only pool taken down
	Note        string `json:"note,omitempty"`         // why something stayed
}

// Unmount undoes a `thinlayer mount`: it unmounts dir, deactivates the
// layer's device when nothing else has it mounted, and takes down the pool
// when a read-only command brought it up and nothing else is on it.
func (h Home) Unmount(dir string) (*UnmountResult, error) {
	abs, err := filepath.Abs(dir)
	if err == nil {
		abs, err = filepath.EvalSymlinks(abs)
	}
	if err != nil {
		return nil, fmt.Errorf("umount %s: %w", dir, err)
	}
	m, err := mountAt(abs)
	if err != nil {
		return nil, err
	}
	name, err := dmName(uint32(m.Major), uint32(m.Minor))
	if err != nil {
		return nil, fmt.Errorf("umount %s: %d:%d is not a device-mapper device, so not a layer mount: %w", abs, m.Major, m.Minor, err)
	}
	if engineMountPoint(abs, name) {
		return nil, fmt.Errorf("umount %s: this is the engine's own mount of layer %s, not one `thinlayer mount` made: stop the engine (or container) instead", abs, filepath.Base(abs))
	}
	ctl, err := dm.Open()
	if err != nil {
		return nil, err
	}
	defer ctl.Close()
	poolDev, err := thinPoolOf(ctl, name)
	if err != nil {
		return nil, fmt.Errorf("umount %s: %w", abs, err)
	}
	// No MNT_DETACH: a mount still in use fails with EBUSY, which says so.
	if err := fsutil.Unmount(abs, 0); err != nil {
		return nil, fmt.Errorf("umount %s: %w", abs, err)
	}
	res := &UnmountResult{Dir: abs, Device: name}
	h.deactivateAfterUnmount(ctl, res, uint32(m.Major), uint32(m.Minor), poolDev)
	return res, nil
}

// mountAt is the mount whose mount point is dir.
func mountAt(dir string) (*mountinfo.Info, error) {
	ms, err := mountinfo.GetMounts(mountinfo.SingleEntryFilter(dir))
	if err != nil {
		return nil, fmt.Errorf("umount %s: %w", dir, err)
	}
	if len(ms) == 0 {
		return nil, fmt.Errorf("umount %s: not a mount point", dir)
	}
	return ms[len(ms)-1], nil // the top one, if stacked
}

// dmName is the device-mapper name of block device major:minor.
func dmName(major, minor uint32) (string, error) {
	b, err := os.ReadFile(fmt.Sprintf("/sys/dev/block/%d:%d/dm/name", major, minor))
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(string(b)), nil
}

// engineMountPoint: dir is <home>/mnt/<id> and the device is that layer's,
// where a driver (Moby's or ours) mounts a layer it got.
func engineMountPoint(dir, device string) bool {
	id := filepath.Base(dir)
	return filepath.Base(filepath.Dir(dir)) == "mnt" && strings.HasSuffix(device, "-"+id)
}

// thinPoolOf is the pool ("major:minor") under thin device name.
func thinPoolOf(ctl *dm.Control, name string) (string, error) {
	table, err := ctl.Table(name)
	if err != nil {
		return "", err
	}
	if len(table) != 1 || table[0].Type != dm.TypeThin {
		return "", fmt.Errorf("device %s is not a thin device, so not a layer", name)
	}
	t, err := dm.ParseThin(table[0].Params)
	if err != nil {
		return "", err
	}
	return t.PoolDev, nil
}

func (h Home) deactivateAfterUnmount(ctl *dm.Control, res *UnmountResult, major, minor uint32, poolDev string) {
	if mps := mountPointsOf(major, minor); len(mps) > 0 {
		res.Note = "device stays active: also mounted on " + strings.Join(mps, ", ")
		return
	}
	if err := ctl.Remove(res.Device, 0); err != nil {
		res.Note = fmt.Sprintf("device stays active: %v", err)
		return
	}
	res.Deactivated = true
	var pmaj, pmin uint32
	if _, err := fmt.Sscanf(poolDev, "%d:%d", &pmaj, &pmin); err != nil {
		return
	}
	pool, err := dmName(pmaj, pmin)
	if err != nil {
		return
	}
	removed, note := h.dropIdleReadOnlyPool(ctl, pool)
	if removed {
		res.PoolRemoved = pool
	}
	res.Note = note
}

// dropIdleReadOnlyPool takes down pool when a read-only command brought it
// up and nothing is open on it, holding its home's lock; else it says why
// the pool stays. A read-write pool is an engine's, and none of its business.
func (h Home) dropIdleReadOnlyPool(ctl *dm.Control, pool string) (removed bool, note string) {
	ro, err := poolIsReadOnly(ctl, pool)
	if err != nil {
		return false, fmt.Sprintf("pool %s stays: %v", pool, err)
	}
	if !ro {
		return false, ""
	}
	stays := func(why any) (bool, string) { return false, fmt.Sprintf("read-only pool %s stays: %v", pool, why) }
	if info, err := ctl.Info(pool); err != nil || info.OpenCount > 0 {
		return stays("other layers are active on it")
	}
	home, err := h.homeOfPool(ctl, pool)
	if err != nil {
		return stays(err)
	}
	unlock, err := lockHome(home, unix.LOCK_EX)
	if err != nil {
		return stays(err)
	}
	defer unlock()
	if err := ctl.Remove(pool, 0); err != nil && !errors.Is(err, dm.ErrNotFound) {
		return stays(err)
	}
	return true, ""
}

// homeOfPool finds the home a pool belongs to: from its data loop file
// (<home>/devicemapper/data), else --home when the names match.
func (h Home) homeOfPool(ctl *dm.Control, pool string) (string, error) {
	candidates := []string{h.dir()}
	if tp, err := thinPoolTable(ctl, pool); err == nil {
		if b, err := os.ReadFile("/sys/dev/block/" + tp.DataDev + "/loop/backing_file"); err == nil {
			candidates = append([]string{filepath.Dir(filepath.Dir(strings.TrimSpace(string(b))))}, candidates...)
		}
	}
	for _, home := range candidates {
		if prefix, err := deviceset.DevicePrefix(home); err == nil && prefix+"-pool" == pool {
			return home, nil
		}
	}
	return "", fmt.Errorf("its home is not %s: pass --home", h.dir())
}
