package deviceset

import (
	"errors"
	"strings"
	"testing"
)

// The home record's filesystem is checked against the superblock's; only
// xfs and ext4 (any ext, as Moby mounts it) are ever mounted.
func TestCheckFilesystem(t *testing.T) {
	ds := &DeviceSet{store: store{dir: "/h/metadata"}}
	for _, c := range []struct{ recorded, probed, want string }{
		{"", "ext4", "ext4"}, {"", "xfs", "xfs"}, {"ext4", "ext4", "ext4"}, {"xfs", "xfs", "xfs"},
		{"ext4", "ext3", "ext4"}, {"", "ext2", "ext4"},
		{"tmpfs", "ext4", ""}, {"btrfs", "btrfs", ""}, {"", "btrfs", ""}, {"", "jbd", ""},
		{"xfs", "ext4", ""}, {"ext4", "xfs", ""}, {"ext2", "ext4", ""}, {"ext4,size=1", "ext4", ""},
		{"EXT4", "ext4", ""}, {"none", "ext4", ""},
	} {
		got, err := ds.checkFilesystem(c.recorded, c.probed)
		if got != c.want || (c.want == "") != (err != nil) {
			t.Errorf("checkFilesystem(%q, %q) = %q, %v; want %q", c.recorded, c.probed, got, err, c.want)
		}
		if err != nil && (!errors.Is(err, ErrCorruptMetadata) || !strings.Contains(err.Error(), "/h/metadata/deviceset-metadata")) {
			t.Errorf("checkFilesystem(%q, %q): %v, want ErrCorruptMetadata naming the home record", c.recorded, c.probed, err)
		}
	}
}
