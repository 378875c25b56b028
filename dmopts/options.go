// Package dmopts is Moby's dm.* storage options for the devicemapper
// driver: Config, its defaults (Moby v24.0.9's), ParseOptions and the
// checks that refuse a bad set before anything is created. It holds no
// state; deviceset opens a home with a Config.
package dmopts

import (
	"errors"
	"fmt"
	"math"
	"path/filepath"
	"strconv"
	"strings"

	units "github.com/docker/go-units"
	"github.com/sirupsen/logrus"

	dm "github.com/thinlayer/thinlayer/devmapper"
	"github.com/thinlayer/thinlayer/fsutil"
)

// Moby v24.0.9's defaults (daemon/graphdriver/devmapper/deviceset.go and
// device_setup.go), plus the bounds this package adds where Moby has none.
const (
	cfgDefaultBaseSize         = 10 * 1024 * 1024 * 1024
	cfgDefaultLoopDataSize     = 100 * 1024 * 1024 * 1024
	cfgDefaultLoopMetadataSize = 2 * 1024 * 1024 * 1024
	cfgDefaultMinFreeSpace     = 10
	cfgLibdmLogFatal           = 2 // libdm's _LOG_FATAL, Moby's default: libdm is chatty
	cfgLibdmLogDebug           = 7 // libdm's _LOG_DEBUG
	cfgMinBlockSize            = 64 * 1024
	cfgMaxBlockSize            = 1024 * 1024 * 1024
	MinBaseSize                = 1024 * 1024
	cfgMinLoopDataSize         = 64 * 1024 * 1024
	cfgMinLoopMetadataSize     = 2 * 1024 * 1024
)

// DefaultIdleDevices is how many unmounted layers keep their device active
// (Config.IdleDevices). A container start and stop, or an image build's
// next step, mounts the same layer again soon: reusing its device saves a
// create, a table load and a resume (and their udev events) per Get.
const DefaultIdleDevices = 16

// MaxDeviceSize is the largest size of a layer's device, in bytes: the one
// bound for every size that comes in (dm.basesize, the size storage
// option) and every size read back (a DevInfo), so that a home made with a
// size opens again. 2^62 bytes (2^53 sectors) keeps sums of sizes and
// sector arithmetic, ours and the kernel's, clear of overflow.
const MaxDeviceSize = 1 << 62

// CheckDeviceSize reports whether size bytes can be a layer's device size.
func CheckDeviceSize(size uint64) error {
	if size < dm.SectorSize || size > MaxDeviceSize {
		return fmt.Errorf("size %d out of range %d..%d", size, dm.SectorSize, uint64(MaxDeviceSize))
	}
	return nil
}

// DeviceSize parses a device size option as Moby does, within
// CheckDeviceSize's bound.
func DeviceSize(v string) (uint64, error) {
	n, err := optSize(v)
	if err != nil {
		return 0, err
	}
	if err := CheckDeviceSize(uint64(n)); err != nil {
		return 0, fmt.Errorf("%q: %w", v, err)
	}
	return uint64(n), nil
}

// DirectLVMConfig is the dm.directlvm_device and dm.thinp_* options. Its JSON
// form matches Moby's <home>/setup-config.json, which omits the force flag.
type DirectLVMConfig struct {
	// Device is the block device to turn into the docker/thinpool LV.
	Device string
	// AutoForceClean (dm.directlvm_device_force) wipes a Device's filesystem.
	AutoForceClean bool `json:"-"`
	// ThinpPercent is the share of the VG for the data LV.
	ThinpPercent uint64
	// ThinpMetaPercent is the share of the VG for the metadata LV.
	ThinpMetaPercent uint64
	// AutoExtendPercent is LVM's thin_pool_autoextend_percent.
	AutoExtendPercent uint64
	// AutoExtendThreshold is LVM's thin_pool_autoextend_threshold.
	AutoExtendThreshold uint64
}

// Config is the parsed dm.* options; zero value is not valid, use DefaultConfig.
type Config struct {
	// BaseSize is the base device's size in bytes (dm.basesize).
	BaseSize uint64
	// BaseSizeSet reports that the user gave dm.basesize.
	BaseSizeSet bool
	// LoopDataSize and LoopMetadataSize size the loopback files in bytes.
	LoopDataSize, LoopMetadataSize int64
	// Filesystem is "xfs", "ext4" or "" (decide at base device creation).
	Filesystem string
	// MkfsArgs are extra mkfs arguments, in the order given.
	MkfsArgs []string
	// MountOptions are extra mount options, comma-joined (dm.mountopt).
	MountOptions string
	// DataDevice and MetadataDevice are block devices for a pool we create.
	DataDevice, MetadataDevice string
	// ThinPoolDevice is an existing pool's name, without "/dev/mapper/".
	ThinPoolDevice string
	// DirectLVM configures pool creation with LVM on a raw device.
	DirectLVM DirectLVMConfig
	// BlockSize is the pool's data block size in bytes.
	BlockSize uint32
	// DoBlkDiscard discards a device's blocks before deleting it.
	DoBlkDiscard bool
	// OverrideUdevSyncCheck runs even when udev sync is unsupported.
	OverrideUdevSyncCheck bool
	// DeferredRemove and DeferredDelete let busy devices go away later.
	DeferredRemove, DeferredDelete bool
	// MinFreeSpacePercent is the pool space that must stay free, 0..99.
	MinFreeSpacePercent uint32
	// XFSNoSpaceMaxRetries goes verbatim to XFS's ENOSPC max_retries; "" = leave.
	XFSNoSpaceMaxRetries string
	// LibdmLogLevel is Moby's dm.libdm_log_level, 2 (fatal) to 7 (debug).
	LibdmLogLevel int
	// IdleDevices is how many unmounted layers keep their device active
	// for a quick next mount (not a Moby option); 0 turns that off.
	IdleDevices int
	// Logger receives the DeviceSet's log lines; nil means logrus's
	// standard logger with storage-driver=devicemapper (Moby's tag).
	Logger logrus.FieldLogger
}

// DefaultConfig returns Moby v24.0.9's defaults.
func DefaultConfig() Config {
	return Config{
		BaseSize:         cfgDefaultBaseSize,
		LoopDataSize:     cfgDefaultLoopDataSize,
		LoopMetadataSize: cfgDefaultLoopMetadataSize,
		BlockSize:        cfgMinBlockSize, // 64K, Moby's 128 sectors
		DoBlkDiscard:     true,
		// Moby turns both on when the kernel has deferred removal (dm
		// driver >= 4.27); the caller must clear them on older kernels.
		DeferredRemove:      true,
		DeferredDelete:      true,
		MinFreeSpacePercent: cfgDefaultMinFreeSpace,
		LibdmLogLevel:       cfgLibdmLogFatal,
		IdleDevices:         DefaultIdleDevices,
		// Moby's setupDirectLVM fills these in for options left at 0.
		DirectLVM: DirectLVMConfig{ThinpPercent: 95, ThinpMetaPercent: 1,
			AutoExtendPercent: 20, AutoExtendThreshold: 80},
	}
}

// optionSetter stores one option's value, or says why it is malformed.
type optionSetter func(c *Config, val string) error

// dmOptionSetters maps each lower-case option name to its parser.
var dmOptionSetters = map[string]optionSetter{
	"dm.basesize": func(c *Config, v string) error {
		n, err := DeviceSize(v)
		if err == nil {
			c.BaseSize, c.BaseSizeSet = n, true
		}
		return err
	},
	"dm.loopdatasize":     sizeOpt(func(c *Config) *int64 { return &c.LoopDataSize }),
	"dm.loopmetadatasize": sizeOpt(func(c *Config) *int64 { return &c.LoopMetadataSize }),
	"dm.fs":               stringOpt(func(c *Config) *string { return &c.Filesystem }),
	"dm.mkfsarg": func(c *Config, v string) error {
		if v == "" { // would reach mkfs as an empty argument
			return errOptEmpty
		}
		c.MkfsArgs = append(c.MkfsArgs, v)
		return nil
	},
	"dm.mountopt": func(c *Config, v string) error {
		c.MountOptions = joinMountOpts(c.MountOptions, v)
		return fsutil.ValidateMountOptions(c.MountOptions)
	},
	"dm.datadev":     stringOpt(func(c *Config) *string { return &c.DataDevice }),
	"dm.metadatadev": stringOpt(func(c *Config) *string { return &c.MetadataDevice }),
	"dm.thinpooldev": func(c *Config, v string) error { // Moby drops the prefix too
		return stringOpt(func(c *Config) *string { return &c.ThinPoolDevice })(c, strings.TrimPrefix(v, "/dev/mapper/"))
	},
	"dm.directlvm_device":           stringOpt(func(c *Config) *string { return &c.DirectLVM.Device }),
	"dm.directlvm_device_force":     boolOpt(func(c *Config) *bool { return &c.DirectLVM.AutoForceClean }),
	"dm.thinp_percent":              percentOpt(func(c *Config) *uint64 { return &c.DirectLVM.ThinpPercent }),
	"dm.thinp_metapercent":          percentOpt(func(c *Config) *uint64 { return &c.DirectLVM.ThinpMetaPercent }),
	"dm.thinp_autoextend_percent":   percentOpt(func(c *Config) *uint64 { return &c.DirectLVM.AutoExtendPercent }),
	"dm.thinp_autoextend_threshold": percentOpt(func(c *Config) *uint64 { return &c.DirectLVM.AutoExtendThreshold }),
	"dm.blocksize": func(c *Config, v string) error {
		n, err := optSize(v)
		if err == nil && n > cfgMaxBlockSize { // would not fit BlockSize
			return fmt.Errorf("block size %q exceeds 1GiB", v)
		} else if err == nil {
			c.BlockSize = uint32(n)
		}
		return err
	},
	"dm.blkdiscard":               boolOpt(func(c *Config) *bool { return &c.DoBlkDiscard }),
	"dm.override_udev_sync_check": boolOpt(func(c *Config) *bool { return &c.OverrideUdevSyncCheck }),
	"dm.use_deferred_removal":     boolOpt(func(c *Config) *bool { return &c.DeferredRemove }),
	"dm.use_deferred_deletion":    boolOpt(func(c *Config) *bool { return &c.DeferredDelete }),
	"dm.min_free_space":           parseMinFreeSpace,
	"dm.xfs_nospace_max_retries": func(c *Config, v string) error {
		if _, err := strconv.ParseUint(v, 10, 64); err != nil {
			return fmt.Errorf("invalid unsigned integer %q", v)
		}
		c.XFSNoSpaceMaxRetries = v // kept verbatim, as Moby
		return nil
	},
	"dm.libdm_log_level": func(c *Config, v string) error {
		n, err := strconv.ParseInt(v, 10, 32)
		if err != nil {
			return fmt.Errorf("invalid integer %q", v)
		}
		c.LibdmLogLevel = int(n)
		return nil
	},
}

// ParseOptions parses dm.* storage options ("key=value", key
// case-insensitive) over DefaultConfig, then validates the result. The
// error reports every problem found, not just the first.
func ParseOptions(options []string) (Config, error) {
	c := DefaultConfig()
	given := make(map[string]bool, len(options))
	var errs []error
	for _, opt := range options {
		key, err := c.applyOption(opt)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		given[key] = true
	}
	// Moby: skip the costly discard on real devices unless asked for.
	if !given["dm.blkdiscard"] && (c.DataDevice != "" || c.ThinPoolDevice != "") {
		c.DoBlkDiscard = false
	}
	// Malformed options left their fields at the defaults, which are valid.
	errs = append(errs, lvmPresenceProblems(given)...)
	if err := errors.Join(append(errs, c.Validate())...); err != nil {
		return Config{}, err
	}
	return c, nil
}

// applyOption stores one "key=value" option and returns its lower-case key.
func (c *Config) applyOption(opt string) (string, error) {
	k, v, ok := strings.Cut(opt, "=")
	if !ok {
		return "", fmt.Errorf("option %q: want key=value", opt)
	}
	key, val := strings.ToLower(strings.TrimSpace(k)), strings.TrimSpace(v) // as Moby
	set, ok := dmOptionSetters[key]
	if !ok {
		return "", fmt.Errorf("unknown option %s", key)
	}
	if err := set(c, val); err != nil {
		return "", fmt.Errorf("%s: %w", key, err)
	}
	return key, nil
}

// lvmPresenceProblems applies Moby's validateLVMConfig, which needs to know
// which options were given rather than their (defaulted) values.
func lvmPresenceProblems(given map[string]bool) []error {
	var errs []error
	thinp := given["dm.thinp_percent"] || given["dm.thinp_metapercent"] ||
		given["dm.thinp_autoextend_percent"] || given["dm.thinp_autoextend_threshold"]
	if thinp && !given["dm.directlvm_device"] {
		errs = append(errs, errors.New("must provide device path in `dm.directlvm_device` in order to configure direct-lvm"))
	}
	if given["dm.thinp_percent"] != given["dm.thinp_metapercent"] {
		errs = append(errs, errors.New("must set both `dm.thinp_percent` and `dm.thinp_metapercent` if either is specified"))
	}
	return errs
}

// Validate reports every problem in c, joined with errors.Join.
func (c Config) Validate() error {
	return errors.Join(c.checkSizes(), c.checkDevices(), c.checkDirectLVM(), c.checkMisc())
}

// checkSizes checks sizes and percentages of the pool and its devices.
func (c Config) checkSizes() error {
	return errors.Join(
		// Moby has no minimum; no filesystem fits in less.
		cfgProblem(c.BaseSize < MinBaseSize, "dm.basesize: %d bytes is below the 1MiB minimum", c.BaseSize),
		// A DevInfo cannot hold more (CheckDeviceSize): the home would not open again.
		cfgProblem(c.BaseSize > MaxDeviceSize, "dm.basesize: %d bytes is above the %d maximum", c.BaseSize, uint64(MaxDeviceSize)),
		// Moby has no minimum; a smaller pool cannot hold a base device.
		cfgProblem(c.LoopDataSize < cfgMinLoopDataSize, "dm.loopdatasize: %d bytes is below the 64MiB minimum", c.LoopDataSize),
		// A pool needs at least one data block.
		cfgProblem(c.LoopDataSize < int64(c.BlockSize), "dm.loopdatasize: %d bytes is smaller than dm.blocksize (%d bytes)", c.LoopDataSize, c.BlockSize),
		// LVM's minimum thin-pool metadata size; Moby has none.
		cfgProblem(c.LoopMetadataSize < cfgMinLoopMetadataSize, "dm.loopmetadatasize: %d bytes is below the 2MiB minimum", c.LoopMetadataSize),
		// dm-thin's rule; Moby leaves it to the kernel's pool load to fail.
		cfgProblem(c.BlockSize < cfgMinBlockSize || c.BlockSize > cfgMaxBlockSize || c.BlockSize%cfgMinBlockSize != 0,
			"dm.blocksize: %d bytes must be a multiple of 64KiB from 64KiB to 1GiB", c.BlockSize),
		// Moby: below 100, or no space would ever be usable.
		cfgProblem(c.MinFreeSpacePercent > 99, "dm.min_free_space: %d%% is out of range 0%%..99%%", c.MinFreeSpacePercent),
	)
}

// checkDevices checks that the pool's backing is given one way only.
func (c Config) checkDevices() error {
	data, lvm, pool := c.DataDevice != "" || c.MetadataDevice != "", c.DirectLVM.Device != "", c.ThinPoolDevice != ""
	errs := []error{
		// Moby would back the missing one with a loopback file: half a setup.
		cfgProblem((c.DataDevice == "") != (c.MetadataDevice == ""), "dm.datadev and dm.metadatadev must be given together"),
		// Moby silently ignores datadev/metadatadev when a pool is given.
		cfgProblem(pool && data, "dm.thinpooldev conflicts with dm.datadev and dm.metadatadev"),
		cfgProblem(pool && lvm, "cannot setup direct-lvm when `dm.thinpooldev` is also specified"),
		// One device under both would have data written over the metadata.
		cfgProblem(c.DataDevice != "" && filepath.Clean(c.DataDevice) == filepath.Clean(c.MetadataDevice),
			"dm.datadev and dm.metadatadev name the same device %s", c.DataDevice),
		// Moby ignores datadev/metadatadev in direct-lvm mode too.
		cfgProblem(lvm && data, "dm.directlvm_device conflicts with dm.datadev and dm.metadatadev"),
		// Device-mapper names cannot contain '/'.
		cfgProblem(strings.Contains(c.ThinPoolDevice, "/"), "dm.thinpooldev: %q is not a device-mapper name or /dev/mapper/<name>", c.ThinPoolDevice),
	}
	// A relative path would resolve against the daemon's working directory.
	for _, d := range [...]struct{ opt, dev string }{
		{"dm.datadev", c.DataDevice}, {"dm.metadatadev", c.MetadataDevice}, {"dm.directlvm_device", c.DirectLVM.Device},
	} {
		errs = append(errs, cfgProblem(d.dev != "" && !filepath.IsAbs(d.dev), "%s: %q is not an absolute path", d.opt, d.dev))
	}
	for _, arg := range c.MkfsArgs {
		errs = append(errs, cfgProblem(arg == "", "dm.mkfsarg: empty argument"))
	}
	return errors.Join(errs...)
}

// checkDirectLVM checks the direct-lvm percentages, defaults included.
func (c Config) checkDirectLVM() error {
	l := c.DirectLVM
	// Moby takes 0 as "default"; here defaults are already filled in.
	bad := func(opt string, v, hi uint64) error {
		return cfgProblem(v == 0 || v > hi, "%s: %d is out of range 1..%d", opt, v, hi)
	}
	return errors.Join(
		bad("dm.thinp_percent", l.ThinpPercent, 99),
		bad("dm.thinp_metapercent", l.ThinpMetaPercent, 99),
		bad("dm.thinp_autoextend_percent", l.AutoExtendPercent, 100),
		bad("dm.thinp_autoextend_threshold", l.AutoExtendThreshold, 100),
		cfgProblem(l.ThinpPercent+l.ThinpMetaPercent > 100, "combined `dm.thinp_percent` and `dm.thinp_metapercent` must not be greater than 100"),
	)
}

// checkMisc checks the remaining single-valued options.
func (c Config) checkMisc() error {
	_, retriesErr := strconv.ParseUint(c.XFSNoSpaceMaxRetries, 10, 64)
	return errors.Join(
		cfgProblem(c.Filesystem != "" && c.Filesystem != "xfs" && c.Filesystem != "ext4",
			"dm.fs: unsupported filesystem %q (want xfs or ext4)", c.Filesystem),
		cfgProblem(c.LibdmLogLevel < cfgLibdmLogFatal || c.LibdmLogLevel > cfgLibdmLogDebug,
			"dm.libdm_log_level: %d is out of range %d..%d", c.LibdmLogLevel, cfgLibdmLogFatal, cfgLibdmLogDebug),
		cfgProblem(c.XFSNoSpaceMaxRetries != "" && retriesErr != nil,
			"dm.xfs_nospace_max_retries: invalid unsigned integer %q", c.XFSNoSpaceMaxRetries),
		// Moby's enableDeferredRemovalDeletion rule; deletion is on by default.
		cfgProblem(c.DeferredDelete && !c.DeferredRemove,
			"dm.use_deferred_deletion requires dm.use_deferred_removal (set dm.use_deferred_deletion=false too)"),
	)
}

// cfgProblem returns the formatted error when bad is true, else nil.
func cfgProblem(bad bool, format string, args ...any) error {
	if !bad {
		return nil
	}
	return fmt.Errorf(format, args...)
}

// optSize parses a size as Moby does (go-units RAMInBytes: binary units).
func optSize(v string) (int64, error) {
	n, err := units.RAMInBytes(v)
	if err != nil {
		return 0, fmt.Errorf("invalid size %q", v)
	}
	// RAMInBytes converts through float64; huge inputs wrap or saturate.
	if n < 0 || n == math.MaxInt64 {
		return 0, fmt.Errorf("size %q is too large", v)
	}
	return n, nil
}

// errOptEmpty rejects an empty value, which Moby would take as "unset".
var errOptEmpty = errors.New("empty value")

// sizeOpt sets an int64 size field.
func sizeOpt(field func(*Config) *int64) optionSetter {
	return func(c *Config, v string) error {
		n, err := optSize(v)
		if err == nil {
			*field(c) = n
		}
		return err
	}
}

// stringOpt sets a non-empty string field.
func stringOpt(field func(*Config) *string) optionSetter {
	return func(c *Config, v string) error {
		if v == "" {
			return errOptEmpty
		}
		*field(c) = v
		return nil
	}
}

// boolOpt sets a bool field with strconv.ParseBool, as Moby.
func boolOpt(field func(*Config) *bool) optionSetter {
	return func(c *Config, v string) error {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return fmt.Errorf("invalid boolean %q", v)
		}
		*field(c) = b
		return nil
	}
}

// percentOpt sets a dm.thinp_* percentage; Moby accepts a trailing "%".
func percentOpt(field func(*Config) *uint64) optionSetter {
	return func(c *Config, v string) error {
		n, err := strconv.ParseUint(strings.TrimSuffix(v, "%"), 10, 32)
		if err != nil {
			return fmt.Errorf("invalid percentage %q", v)
		}
		*field(c) = n
		return nil
	}
}

// parseMinFreeSpace sets dm.min_free_space, which Moby requires as "N%".
func parseMinFreeSpace(c *Config, v string) error {
	if !strings.HasSuffix(v, "%") {
		return fmt.Errorf("%q needs a %% suffix, e.g. 10%%", v)
	}
	n, err := strconv.ParseUint(strings.TrimSuffix(v, "%"), 10, 32)
	if err != nil {
		return fmt.Errorf("invalid percentage %q", v)
	}
	c.MinFreeSpacePercent = uint32(n)
	return nil
}

// joinMountOpts comma-joins mount options, as Moby's joinMountOptions.
func joinMountOpts(a, b string) string {
	if a == "" {
		return b
	}
	if b == "" {
		return a
	}
	return a + "," + b
}
