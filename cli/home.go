package cli

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/thinlayer/thinlayer/deviceset"
	dm "github.com/thinlayer/thinlayer/devmapper"
)

// DefaultHome is where Docker ≤ 24 kept its devicemapper home.
const DefaultHome = "/var/lib/docker/devicemapper"

// Sentinel errors for what callers (and the exit status) branch on.
var (
	// ErrNoKernel: not root, or the kernel has no device-mapper thin pools.
	ErrNoKernel = errors.New("no usable device-mapper thin provisioning here")
	// ErrHomeBusy: layer devices of the home are active, so a command
	// that writes to it would change what someone else uses.
	ErrHomeBusy = errors.New("layers of the home are in use")
	// ErrProblems: check (or gc) found something wrong.
	ErrProblems = errors.New("problems found")
)

// Home names a devicemapper home and how to open it.
type Home struct {
	Dir         string    // the home, DefaultHome when ""
	StorageOpts []string  // dm.key=value options, as the library takes them
	Progress    io.Writer // where progress bars go (a terminal); nil: none
}

func (h Home) dir() string {
	if h.Dir == "" {
		return DefaultHome
	}
	return h.Dir
}

func (h Home) config() (deviceset.Config, error) {
	cfg, err := deviceset.ParseOptions(h.options())
	if err != nil {
		return cfg, fmt.Errorf("storage options: %w", err)
	}
	return cfg, nil
}

// options are the storage options, plus the sizes of the loop files an
// existing home has when none are given: opening a home grows its loop
// files to dm.loopdatasize and dm.loopmetadatasize (as Moby does), and a
// command should not resize a pool because its user left the options out.
func (h Home) options() []string {
	opts := append([]string(nil), h.StorageOpts...)
	for _, f := range []struct{ file, opt string }{{"data", "dm.loopdatasize"}, {"metadata", "dm.loopmetadatasize"}} {
		if hasOption(opts, f.opt) {
			continue
		}
		if fi, err := os.Stat(filepath.Join(h.dir(), "devicemapper", f.file)); err == nil && fi.Mode().IsRegular() {
			opts = append(opts, fmt.Sprintf("%s=%d", f.opt, fi.Size()))
		}
	}
	return opts
}

func hasOption(opts []string, name string) bool {
	for _, o := range opts {
		if k, _, _ := strings.Cut(o, "="); strings.EqualFold(strings.TrimSpace(k), name) {
			return true
		}
	}
	return false
}

// KernelUsable says why this process cannot use dm-thin, or nil if it can.
func KernelUsable() error {
	if os.Geteuid() != 0 {
		return fmt.Errorf("%w: not root", ErrNoKernel)
	}
	misc, err := os.ReadFile("/proc/misc")
	if err != nil || !bytes.Contains(misc, []byte(" device-mapper\n")) {
		return fmt.Errorf("%w: the kernel has no device-mapper (not in /proc/misc)", ErrNoKernel)
	}
	c, err := dm.Open()
	if err != nil {
		return fmt.Errorf("%w: %w", ErrNoKernel, err)
	}
	defer c.Close()
	if _, ok, err := c.HasTarget(dm.TypeThinPool); err != nil || !ok {
		return fmt.Errorf("%w: the kernel has no thin-pool target (modprobe dm_thin_pool)", ErrNoKernel)
	}
	return nil
}

// openReadOnly opens the home to look at it: nothing under it is written,
// and a pool that is not active is brought up read-only for the look.
func (h Home) openReadOnly() (*deviceset.DeviceSet, error) {
	cfg, err := h.config()
	if err != nil {
		return nil, err
	}
	if err := KernelUsable(); err != nil {
		return nil, err
	}
	ds, err := deviceset.Open(h.dir(), cfg, deviceset.OpenOptions{ReadOnly: true})
	if err != nil {
		return nil, fmt.Errorf("open home %s read-only: %w", h.dir(), err)
	}
	return ds, nil
}

// look runs f on the home opened read-only, then leaves it (Leave: mounts
// and active layers stay as they are).
func (h Home) look(f func(ds *deviceset.DeviceSet) error) error {
	ds, err := h.openReadOnly()
	if err != nil {
		return err
	}
	err = f(ds)
	if lerr := ds.Leave(); lerr != nil {
		err = errors.Join(err, fmt.Errorf("leave home %s: %w", h.dir(), lerr))
	}
	return err
}

// Whether a writing command may run while layers of the home are active.
const (
	needIdle    = false
	allowActive = true
)

// openWritable opens the home to change it, after prepareWrite. adjust
// may change the options.
func (h Home) openWritable(activeOK bool, adjust func(*deviceset.Config)) (*deviceset.DeviceSet, error) {
	cfg, err := h.config()
	if err != nil {
		return nil, err
	}
	if adjust != nil {
		adjust(&cfg)
	}
	if err := h.prepareWrite(activeOK); err != nil {
		return nil, err
	}
	ds, err := deviceset.New(h.dir(), cfg)
	if err != nil {
		return nil, fmt.Errorf("open home %s: %w", h.dir(), err)
	}
	return ds, nil
}

// prepareWrite checks that a writing command may open the home: a usable
// kernel, and no layer of the home in use unless activeOK (ensureIdle).
func (h Home) prepareWrite(activeOK bool) error {
	cfg, err := h.config()
	if err != nil {
		return err
	}
	if err := KernelUsable(); err != nil {
		return err
	}
	return h.ensureIdle(cfg, activeOK)
}

// ensureIdle refuses a writing command while a layer device of the home
// is active (mounted by `thinlayer mount`, or by an engine that takes no
// home lock, as Moby's driver does not) unless activeOK: the writer's
// Shutdown would take them down. A pool a read-only command left up
// (read_only in its table) is taken down when nothing is on it, and
// refused otherwise: a writer cannot work on it.
func (h Home) ensureIdle(cfg deviceset.Config, activeOK bool) error {
	prefix, err := deviceset.DevicePrefix(h.dir())
	if errors.Is(err, os.ErrNotExist) {
		return nil // a new home
	}
	if err != nil {
		return err
	}
	ctl, err := dm.Open()
	if err != nil {
		return err
	}
	defer ctl.Close()
	pool := poolName(prefix, cfg)
	active, err := activeLayers(ctl, prefix, pool)
	if err != nil {
		return err
	}
	ro, err := poolIsReadOnly(ctl, pool)
	if err != nil {
		return err
	}
	if err := checkNoDockerd(ctl, pool, ro); err != nil {
		return err
	}
	if len(active) > 0 && (ro || !activeOK) {
		return fmt.Errorf("%w: %s active: %s", ErrHomeBusy, plural(len(active), "layer device"), strings.Join(active, ", "))
	}
	if ro {
		return h.dropReadOnlyPool(ctl, pool)
	}
	return nil
}

// checkNoDockerd refuses a live read-write pool while dockerd runs: the
// pool may be Docker's own, and Moby's driver takes no lock a writer meets.
func checkNoDockerd(ctl *dm.Control, pool string, readOnly bool) error {
	if up, _ := ctl.Exists(pool); !up || readOnly {
		return nil
	}
	if pid := runningDockerd(); pid != 0 {
		return fmt.Errorf("%w: dockerd (pid %d) is running and may be using pool %s", ErrHomeBusy, pid, pool)
	}
	return nil
}

// runningDockerd is the pid of a running dockerd, or 0.
func runningDockerd() int {
	comms, _ := filepath.Glob("/proc/[0-9]*/comm")
	for _, c := range comms {
		if b, err := os.ReadFile(c); err == nil && strings.TrimSpace(string(b)) == "dockerd" {
			var pid int
			if _, err := fmt.Sscanf(filepath.Base(filepath.Dir(c)), "%d", &pid); err == nil {
				return pid
			}
		}
	}
	return 0
}

func poolName(prefix string, cfg deviceset.Config) string {
	if cfg.ThinPoolDevice != "" {
		return cfg.ThinPoolDevice
	}
	return prefix + "-pool"
}

// activeLayers names the home's active devices other than the pool, each
// with where it is mounted.
func activeLayers(ctl *dm.Control, prefix, pool string) ([]string, error) {
	devs, err := ctl.List()
	if err != nil {
		return nil, err
	}
	var active []string
	for _, d := range devs {
		if d.Name == pool || !strings.HasPrefix(d.Name, prefix+"-") {
			continue
		}
		desc := d.Name
		if mps := mountPointsOf(d.Major, d.Minor); len(mps) > 0 {
			desc += " (mounted on " + strings.Join(mps, ", ") + ")"
		}
		active = append(active, desc)
	}
	return active, nil
}

// dropReadOnlyPool removes the pool a read-only command brought up and
// left, holding the home lock so that no reader is using it meanwhile.
func (h Home) dropReadOnlyPool(ctl *dm.Control, pool string) error {
	unlock, err := lockHome(h.dir(), unix.LOCK_EX)
	if err != nil {
		return err
	}
	defer unlock()
	if err := ctl.Remove(pool, 0); err != nil && !errors.Is(err, dm.ErrNotFound) {
		return fmt.Errorf("take down read-only pool %s: %w", pool, err)
	}
	return nil
}

// poolIsReadOnly reports whether pool is active with read_only in its
// table; false when it is not active.
func poolIsReadOnly(ctl *dm.Control, pool string) (bool, error) {
	tp, err := thinPoolTable(ctl, pool)
	if errors.Is(err, dm.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return tp.ReadOnly, nil
}

// thinPoolTable reads and parses the one line of a thin pool's table.
func thinPoolTable(ctl *dm.Control, pool string) (dm.ThinPool, error) {
	table, err := ctl.Table(pool)
	if err != nil {
		return dm.ThinPool{}, err
	}
	if len(table) != 1 || table[0].Type != dm.TypeThinPool {
		return dm.ThinPool{}, fmt.Errorf("device %s is not a thin pool", pool)
	}
	return dm.ParseThinPool(table[0].Params)
}

// lockHome flocks the home directory as deviceset does (the home lock),
// without waiting: ErrHomeLocked when another process holds it.
func lockHome(dir string, how int) (unlock func(), err error) {
	f, err := os.Open(dir)
	if err != nil {
		return nil, err
	}
	if err := unix.Flock(int(f.Fd()), how|unix.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, fmt.Errorf("%w: %s", deviceset.ErrHomeLocked, dir)
		}
		return nil, fmt.Errorf("lock home %s: %w", dir, err)
	}
	return func() { f.Close() }, nil
}

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}
