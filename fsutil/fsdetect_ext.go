package fsutil

import (
	"encoding/binary"
	"hash/crc32"
	"io"
)

// ext2/3/4 superblock layout (fs/ext4/ext4.h), little-endian, relative to
// the superblock, which starts 1024 bytes into the device.
const (
	extSBOffset     = 1024
	extSBLen        = 1024
	extOffMagic     = 56
	extOffCompat    = 92
	extOffIncompat  = 96
	extOffROCompat  = 100
	extOffUUID      = 104
	extOffName      = 120
	extNameLen      = 16
	extOffFlags     = 352
	extOffChecksum  = 1020
	extMagic        = 0xEF53
	extFlagTestFS   = 0x0004 // EXT2_FLAGS_TEST_FILESYS
	extCompatJournl = 0x0004 // EXT3_FEATURE_COMPAT_HAS_JOURNAL
	extROMetaCsum   = 0x0400 // EXT4_FEATURE_RO_COMPAT_METADATA_CSUM
	extIncJournDev  = 0x0008 // EXT3_FEATURE_INCOMPAT_JOURNAL_DEV
)

// Feature sets that ext2 and ext3 understand, as libblkid defines them
// (libblkid/src/superblocks/ext.c). A filesystem using any feature outside
// them is ext4.
const (
	// sparse_super | large_file | btree_dir
	ext2ROCompatSupp = 0x0001 | 0x0002 | 0x0004
	// filetype | meta_bg
	ext2IncompatSupp = 0x0002 | 0x0010
	ext3ROCompatSupp = ext2ROCompatSupp
	// filetype | recover | meta_bg
	ext3IncompatSupp = 0x0002 | 0x0004 | 0x0010
)

// extSuper holds the fields of an ext superblock that classification needs.
type extSuper struct {
	compat, incompat, roCompat, flags uint32
}

// probeExt recognises an ext2/3/4 superblock (or an external ext3/4
// journal, "jbd") and classifies it exactly as libblkid does.
func probeExt(r io.ReaderAt) (FSInfo, bool, error) {
	sb, ok, err := readAt(r, extSBOffset, extSBLen)
	if !ok || binary.LittleEndian.Uint16(sb[extOffMagic:]) != extMagic {
		return FSInfo{}, false, err
	}
	le := binary.LittleEndian
	s := extSuper{
		compat:   le.Uint32(sb[extOffCompat:]),
		incompat: le.Uint32(sb[extOffIncompat:]),
		roCompat: le.Uint32(sb[extOffROCompat:]),
		flags:    le.Uint32(sb[extOffFlags:]),
	}
	if s.roCompat&extROMetaCsum != 0 && !extChecksumValid(sb) {
		return FSInfo{}, false, nil
	}
	typ := s.classify()
	if typ == "" {
		return FSInfo{}, false, nil
	}
	return FSInfo{
		Type:  typ,
		UUID:  formatUUID(sb[extOffUUID : extOffUUID+16]),
		Label: cString(sb[extOffName : extOffName+extNameLen]),
	}, true, nil
}

// classify names the ext flavour the way libblkid's ext probes do, in
// their order: ext4dev, ext4, ext3, ext2, with jbd exclusive of all. It
// returns "" for a superblock no probe accepts (e.g. no journal but the
// recover flag set).
func (s extSuper) classify() string {
	journal := s.compat&extCompatJournl != 0
	switch {
	case s.incompat&extIncJournDev != 0:
		return "jbd"
	case s.flags&extFlagTestFS != 0:
		return "ext4dev"
	case !s.within(ext3ROCompatSupp, ext3IncompatSupp):
		return "ext4"
	case journal:
		return "ext3"
	case s.within(ext2ROCompatSupp, ext2IncompatSupp):
		return "ext2"
	default:
		return ""
	}
}

// within reports whether the filesystem uses only the given read-only
// compatible and incompatible features.
func (s extSuper) within(roCompat, incompat uint32) bool {
	return s.roCompat&^roCompat == 0 && s.incompat&^incompat == 0
}

// extChecksumValid verifies the CRC32C that ext4's metadata_csum feature
// stores at the end of the superblock (seed ~0, no final inversion).
func extChecksumValid(sb []byte) bool {
	want := binary.LittleEndian.Uint32(sb[extOffChecksum:])
	return ^crc32.Checksum(sb[:extOffChecksum], castagnoli) == want
}
