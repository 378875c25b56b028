package dmopts

import (
	"reflect"
	"strings"
	"testing"
)

// validOptionCases: each option's well-formed value and the Config it gives,
// as a change to DefaultConfig.
var validOptionCases = []struct {
	opts []string
	want func(c *Config)
}{
	{[]string{"dm.basesize=20G"}, func(c *Config) { c.BaseSize, c.BaseSizeSet = 20<<30, true }},
	{[]string{"dm.basesize=10G"}, func(c *Config) { c.BaseSizeSet = true }},
	{[]string{"dm.loopdatasize=200GB"}, func(c *Config) { c.LoopDataSize = 200 << 30 }}, // binary, as Moby
	{[]string{"dm.loopmetadatasize=4g"}, func(c *Config) { c.LoopMetadataSize = 4 << 30 }},
	{[]string{"dm.fs=xfs"}, func(c *Config) { c.Filesystem = "xfs" }},
	{[]string{"dm.fs=ext4"}, func(c *Config) { c.Filesystem = "ext4" }},
	{[]string{"dm.mkfsarg=-K", "dm.mkfsarg=-E=foo"}, func(c *Config) { c.MkfsArgs = []string{"-K", "-E=foo"} }},
	{[]string{"dm.mountopt=nodiscard", "dm.mountopt=", "dm.mountopt=noatime"}, func(c *Config) { c.MountOptions = "nodiscard,noatime" }},
	{[]string{"dm.datadev=/dev/sdb", "dm.metadatadev=/dev/sdc"}, func(c *Config) {
		c.DataDevice, c.MetadataDevice, c.DoBlkDiscard = "/dev/sdb", "/dev/sdc", false
	}},
	{[]string{"dm.datadev=/dev/sdb", "dm.metadatadev=/dev/sdc", "dm.blkdiscard=true"}, func(c *Config) {
		c.DataDevice, c.MetadataDevice = "/dev/sdb", "/dev/sdc"
	}},
	{[]string{"dm.thinpooldev=/dev/mapper/docker-thinpool"}, func(c *Config) { c.ThinPoolDevice, c.DoBlkDiscard = "docker-thinpool", false }},
	{[]string{"dm.thinpooldev=pool", "dm.blkdiscard=true"}, func(c *Config) { c.ThinPoolDevice = "pool" }},
	{[]string{"dm.directlvm_device=/dev/xvdf"}, func(c *Config) { c.DirectLVM.Device = "/dev/xvdf" }},
	{[]string{"dm.directlvm_device=/dev/xvdf", "dm.directlvm_device_force=true"}, func(c *Config) {
		c.DirectLVM.Device, c.DirectLVM.AutoForceClean = "/dev/xvdf", true
	}},
	{[]string{"dm.directlvm_device=/dev/xvdf", "dm.thinp_percent=90", "dm.thinp_metapercent=5%"}, func(c *Config) {
		c.DirectLVM.Device, c.DirectLVM.ThinpPercent, c.DirectLVM.ThinpMetaPercent = "/dev/xvdf", 90, 5
	}},
	{[]string{"dm.directlvm_device=/dev/xvdf", "dm.thinp_autoextend_percent=30", "dm.thinp_autoextend_threshold=100%"}, func(c *Config) {
		c.DirectLVM.Device, c.DirectLVM.AutoExtendPercent, c.DirectLVM.AutoExtendThreshold = "/dev/xvdf", 30, 100
	}},
	{[]string{"dm.blocksize=512K"}, func(c *Config) { c.BlockSize = 512 << 10 }},
	{[]string{"dm.blocksize=1G"}, func(c *Config) { c.BlockSize = 1 << 30 }},
	{[]string{"dm.blkdiscard=false"}, func(c *Config) { c.DoBlkDiscard = false }},
	{[]string{"dm.override_udev_sync_check=1"}, func(c *Config) { c.OverrideUdevSyncCheck = true }},
	{[]string{"dm.use_deferred_removal=false", "dm.use_deferred_deletion=false"}, func(c *Config) {
		c.DeferredRemove, c.DeferredDelete = false, false
	}},
	{[]string{"dm.use_deferred_deletion=false"}, func(c *Config) { c.DeferredDelete = false }},
	{[]string{"dm.min_free_space=0%"}, func(c *Config) { c.MinFreeSpacePercent = 0 }},
	{[]string{"dm.min_free_space=99%"}, func(c *Config) { c.MinFreeSpacePercent = 99 }},
	{[]string{"dm.xfs_nospace_max_retries=0"}, func(c *Config) { c.XFSNoSpaceMaxRetries = "0" }},
	{[]string{"dm.libdm_log_level=7"}, func(c *Config) { c.LibdmLogLevel = 7 }},
	{[]string{" dm.basesize = 20G "}, func(c *Config) { c.BaseSize, c.BaseSizeSet = 20<<30, true }}, // trimmed, as Moby
	{[]string{"dm.basesize=1G", "dm.basesize=2G"}, func(c *Config) { c.BaseSize, c.BaseSizeSet = 2<<30, true }},
}

func TestParseOptionsValid(t *testing.T) {
	for _, tc := range validOptionCases {
		got, err := ParseOptions(tc.opts)
		if err != nil {
			t.Errorf("%q: %v", tc.opts, err)
			continue
		}
		want := DefaultConfig()
		tc.want(&want)
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%q:\n got %+v\nwant %+v", tc.opts, got, want)
		}
	}
}

// lvmBase gives the options direct-lvm needs, so a case tests only its own.
var lvmBase = []string{"dm.directlvm_device=/dev/xvdf", "dm.thinp_percent=90", "dm.thinp_metapercent=5"}

// invalidOptionCases: each option's malformed values; the error must name
// the option and contain want.
var invalidOptionCases = []struct {
	opt, val, want string
	extra          []string
}{
	{"dm.basesize", "abc", `dm.basesize: invalid size "abc"`, nil},
	{"dm.basesize", "-1", `invalid size "-1"`, nil},
	{"dm.basesize", "1e30", `size "1e30" is too large`, nil},
	{"dm.basesize", "512K", "below the 1MiB minimum", nil},
	{"dm.loopdatasize", "lots", `invalid size "lots"`, nil},
	{"dm.loopdatasize", "10M", "below the 64MiB minimum", nil},
	{"dm.loopmetadatasize", "1M", "below the 2MiB minimum", nil},
	{"dm.loopmetadatasize", "2X", `invalid size "2X"`, nil},
	{"dm.fs", "btrfs", `unsupported filesystem "btrfs"`, nil},
	{"dm.fs", "XFS", `unsupported filesystem "XFS"`, nil}, // values are case-sensitive in Moby
	{"dm.fs", "", "empty value", nil},
	{"dm.mkfsarg", "", "empty value", nil},
	{"dm.mountopt", "", "want key=value", nil}, // any value goes; only the form can be wrong
	{"dm.datadev", "sdb", `"sdb" is not an absolute path`, []string{"dm.metadatadev=/dev/sdc"}},
	{"dm.datadev", "", "empty value", nil},
	{"dm.datadev", "/dev/sdb", "must be given together", nil},
	{"dm.metadatadev", "/dev/sdc", "must be given together", nil},
	{"dm.metadatadev", "", "empty value", nil},
	{"dm.thinpooldev", "/dev/mapper/", "empty value", nil},
	{"dm.thinpooldev", "/dev/sdb", "not a device-mapper name", nil},
	{"dm.directlvm_device", "xvdf", `"xvdf" is not an absolute path`, nil},
	{"dm.directlvm_device", "", "empty value", nil},
	{"dm.directlvm_device_force", "maybe", `invalid boolean "maybe"`, nil},
	{"dm.thinp_percent", "100", "100 is out of range 1..99", lvmBase},
	{"dm.thinp_percent", "0", "0 is out of range 1..99", lvmBase},
	{"dm.thinp_percent", "ten", `invalid percentage "ten"`, lvmBase},
	{"dm.thinp_metapercent", "100%", "100 is out of range 1..99", lvmBase},
	{"dm.thinp_metapercent", "-1", `invalid percentage "-1"`, lvmBase},
	{"dm.thinp_autoextend_percent", "101", "101 is out of range 1..100", lvmBase},
	{"dm.thinp_autoextend_percent", "0", "0 is out of range 1..100", lvmBase},
	{"dm.thinp_autoextend_threshold", "101%", "101 is out of range 1..100", lvmBase},
	{"dm.thinp_autoextend_threshold", "x", `invalid percentage "x"`, lvmBase},
	{"dm.blocksize", "32K", "32768 bytes must be a multiple of 64KiB", nil},
	{"dm.blocksize", "96K", "98304 bytes must be a multiple of 64KiB", nil},
	{"dm.blocksize", "8G", `block size "8G" exceeds 1GiB`, nil},
	{"dm.blocksize", "big", `invalid size "big"`, nil},
	{"dm.blkdiscard", "yes", `invalid boolean "yes"`, nil},
	{"dm.override_udev_sync_check", "maybe", `invalid boolean "maybe"`, nil},
	{"dm.use_deferred_removal", "2", `invalid boolean "2"`, nil},
	{"dm.use_deferred_deletion", "on", `invalid boolean "on"`, nil},
	{"dm.min_free_space", "10", `"10" needs a % suffix`, nil}, // Moby requires the %
	{"dm.min_free_space", "100%", "100% is out of range 0%..99%", nil},
	{"dm.min_free_space", "-1%", `invalid percentage "-1%"`, nil},
	{"dm.xfs_nospace_max_retries", "-1", `invalid unsigned integer "-1"`, nil},
	{"dm.xfs_nospace_max_retries", "many", `invalid unsigned integer "many"`, nil},
	{"dm.libdm_log_level", "1", "1 is out of range 2..7", nil},
	{"dm.libdm_log_level", "8", "8 is out of range 2..7", nil},
	{"dm.libdm_log_level", "debug", `invalid integer "debug"`, nil},
}

func TestParseOptionsInvalid(t *testing.T) {
	for _, tc := range invalidOptionCases {
		opt := tc.opt + "=" + tc.val
		if tc.want == "want key=value" {
			opt = tc.opt
		}
		_, err := ParseOptions(append(append([]string{}, tc.extra...), opt))
		if err == nil {
			t.Errorf("%q: no error", opt)
			continue
		}
		if msg := err.Error(); !strings.Contains(msg, tc.opt) || !strings.Contains(msg, tc.want) {
			t.Errorf("%q: error %q lacks %q or %q", opt, msg, tc.opt, tc.want)
		}
	}
}

// TestOptionCasesCoverEveryOption keeps the tables above complete.
func TestOptionCasesCoverEveryOption(t *testing.T) {
	valid, invalid := map[string]bool{}, map[string]bool{}
	for _, tc := range validOptionCases {
		for _, o := range tc.opts {
			k, _, _ := strings.Cut(o, "=")
			valid[strings.TrimSpace(k)] = true
		}
	}
	for _, tc := range invalidOptionCases {
		invalid[tc.opt] = true
	}
	for key := range dmOptionSetters {
		if !valid[key] || !invalid[key] {
			t.Errorf("%s: valid case %v, invalid case %v", key, valid[key], invalid[key])
		}
	}
}

func TestParseOptionsConflicts(t *testing.T) {
	for _, tc := range []struct {
		opts []string
		want string
	}{
		{[]string{"dm.datadev=/dev/sdb", "dm.metadatadev=/dev/sdc", "dm.thinpooldev=pool"}, "dm.thinpooldev conflicts with dm.datadev"},
		{[]string{"dm.thinpooldev=pool", "dm.directlvm_device=/dev/xvdf"}, "cannot setup direct-lvm when `dm.thinpooldev`"},
		{[]string{"dm.directlvm_device=/dev/xvdf", "dm.datadev=/dev/sdb", "dm.metadatadev=/dev/sdc"}, "dm.directlvm_device conflicts"},
		{[]string{"dm.thinp_percent=90", "dm.thinp_metapercent=5"}, "must provide device path in `dm.directlvm_device`"},
		{[]string{"dm.thinp_autoextend_threshold=90"}, "must provide device path in `dm.directlvm_device`"},
		{[]string{"dm.directlvm_device=/dev/xvdf", "dm.thinp_percent=90"}, "must set both `dm.thinp_percent` and `dm.thinp_metapercent`"},
		{[]string{"dm.directlvm_device=/dev/xvdf", "dm.thinp_metapercent=5"}, "must set both"},
		{[]string{"dm.directlvm_device=/dev/xvdf", "dm.thinp_percent=60", "dm.thinp_metapercent=50"}, "combined `dm.thinp_percent` and `dm.thinp_metapercent`"},
		{[]string{"dm.use_deferred_removal=false"}, "dm.use_deferred_deletion requires dm.use_deferred_removal"},
		{[]string{"dm.loopdatasize=64M", "dm.blocksize=128M"}, "smaller than dm.blocksize"},
		{[]string{"dm.foo=1"}, "unknown option dm.foo"},
		{[]string{"DM.Foo=1"}, "unknown option dm.foo"},
		{[]string{"dm.basesize"}, `"dm.basesize": want key=value`},
	} {
		_, err := ParseOptions(tc.opts)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: error %v, want %q", tc.opts, err, tc.want)
		}
	}
}

func TestParseOptionsCaseInsensitive(t *testing.T) {
	got, err := ParseOptions([]string{"DM.BaseSize=20G", "Dm.FS=xfs", "dm.BLKDISCARD=FALSE", "DM.MIN_FREE_SPACE=5%"})
	if err != nil {
		t.Fatal(err)
	}
	want := DefaultConfig()
	want.BaseSize, want.BaseSizeSet, want.Filesystem = 20<<30, true, "xfs"
	want.DoBlkDiscard, want.MinFreeSpacePercent = false, 5
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %+v\nwant %+v", got, want)
	}
}

func TestDefaultConfig(t *testing.T) {
	c := DefaultConfig()
	want := Config{
		BaseSize: 10 * 1024 * 1024 * 1024, LoopDataSize: 100 << 30, LoopMetadataSize: 2 << 30,
		BlockSize: 64 << 10, DoBlkDiscard: true, DeferredRemove: true, DeferredDelete: true,
		MinFreeSpacePercent: 10, LibdmLogLevel: 2, IdleDevices: DefaultIdleDevices,
		DirectLVM: DirectLVMConfig{ThinpPercent: 95, ThinpMetaPercent: 1, AutoExtendPercent: 20, AutoExtendThreshold: 80},
	}
	if !reflect.DeepEqual(c, want) {
		t.Errorf("DefaultConfig() = %+v\nwant %+v", c, want)
	}
	if err := c.Validate(); err != nil {
		t.Errorf("DefaultConfig().Validate() = %v", err)
	}
	for _, opts := range [][]string{nil, {}} {
		if got, err := ParseOptions(opts); err != nil || !reflect.DeepEqual(got, want) {
			t.Errorf("ParseOptions(%#v) = %+v, %v", opts, got, err)
		}
	}
	if (Config{}).Validate() == nil {
		t.Error("zero Config validated")
	}
}

// TestConfigValidateReportsAll: one error carries every problem.
func TestConfigValidateReportsAll(t *testing.T) {
	_, err := ParseOptions([]string{"dm.basesize=abc", "dm.bogus=1", "dm.fs=zfs", "dm.datadev=/dev/sdb", "dm.libdm_log_level=9"})
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{"dm.basesize", "unknown option dm.bogus", `"zfs"`, "must be given together", "dm.libdm_log_level"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
	c := DefaultConfig()
	c.BlockSize, c.MinFreeSpacePercent, c.ThinPoolDevice, c.DirectLVM.Device = 1000, 100, "p", "/dev/x"
	err = c.Validate()
	for _, want := range []string{"dm.blocksize", "dm.min_free_space", "cannot setup direct-lvm"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate error %v lacks %q", err, want)
		}
	}
}

// FuzzParseOptions: never panics, and whatever parses also validates.
func FuzzParseOptions(f *testing.F) {
	for _, s := range []string{
		"dm.basesize=20G", "dm.thinpooldev=/dev/mapper/pool\ndm.blkdiscard=true",
		"dm.min_free_space=10%", "dm.blocksize=1e30", "dm.loopdatasize=0x1p70",
		"dm.directlvm_device=/dev/xvdf\ndm.thinp_percent=95%\ndm.thinp_metapercent=1",
		"DM.FS=xfs\ndm.mkfsarg=-K\ndm.mountopt=nouuid", "dm.datadev=/a\ndm.metadatadev=/b", "=\n\n=",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		c, err := ParseOptions(strings.Split(s, "\n"))
		if err != nil {
			if err.Error() == "" {
				t.Fatal("empty error message")
			}
			return
		}
		if err := c.Validate(); err != nil {
			t.Fatalf("ParseOptions(%q) succeeded but Validate: %v", s, err)
		}
	})
}
