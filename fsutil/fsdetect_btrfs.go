package fsutil

import (
	"encoding/binary"
	"hash/crc32"
	"io"
)

// btrfs primary superblock layout (fs/btrfs/accessors.h and
// uapi/linux/btrfs_tree.h), little-endian, relative to the superblock at
// 64 KiB.
const (
	btrfsSBOffset    = 0x10000
	btrfsSBLen       = 0x1000
	btrfsOffFSID     = 0x20
	btrfsOffBytenr   = 0x30
	btrfsOffMagic    = 0x40
	btrfsOffCsumType = 0xc4
	btrfsOffLabel    = 0x12b
	btrfsLabelLen    = 256
	btrfsMagic       = "_BHRfS_M"
	btrfsCsumCRC32C  = 0
)

// probeBtrfs recognises the primary btrfs superblock and, when it uses
// the default CRC32C checksum, verifies it as libblkid does.
func probeBtrfs(r io.ReaderAt) (FSInfo, bool, error) {
	sb, ok, err := readAt(r, btrfsSBOffset, btrfsSBLen)
	if !ok || string(sb[btrfsOffMagic:btrfsOffMagic+8]) != btrfsMagic {
		return FSInfo{}, false, err
	}
	if binary.LittleEndian.Uint64(sb[btrfsOffBytenr:]) != btrfsSBOffset {
		return FSInfo{}, false, nil
	}
	if !btrfsChecksumValid(sb) {
		return FSInfo{}, false, nil
	}
	return FSInfo{
		Type:  "btrfs",
		UUID:  formatUUID(sb[btrfsOffFSID : btrfsOffFSID+16]),
		Label: cString(sb[btrfsOffLabel : btrfsOffLabel+btrfsLabelLen]),
	}, true, nil
}

// btrfsChecksumValid checks the CRC32C over everything after the checksum
// field. Other checksum types (xxhash, sha256, blake2) are accepted
// unverified.
func btrfsChecksumValid(sb []byte) bool {
	if binary.LittleEndian.Uint16(sb[btrfsOffCsumType:]) != btrfsCsumCRC32C {
		return true
	}
	want := binary.LittleEndian.Uint32(sb[0:4])
	return crc32.Checksum(sb[btrfsOffFSID:], castagnoli) == want
}
