package deviceset

import (
	"encoding/binary"
	"fmt"
	"os"
)

// fsBytes is the size a filesystem's superblock gives itself (ext2/3/4
// or xfs): what an interrupted grow left, to tell whether the device can
// go back to its old size without cutting the filesystem short.
func fsBytes(dev string) (uint64, error) {
	f, err := os.Open(dev)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sb := make([]byte, 2048)
	if _, err := f.ReadAt(sb, 0); err != nil {
		return 0, fmt.Errorf("read superblock of %s: %w", dev, err)
	}
	if n, ok := xfsBytes(sb); ok {
		return n, nil
	}
	if n, ok := extBytes(sb[1024:]); ok {
		return n, nil
	}
	return 0, fmt.Errorf("%s: no ext or xfs superblock", dev)
}

// xfsBytes reads sb_blocksize and sb_dblocks (big-endian) of an xfs superblock.
func xfsBytes(sb []byte) (uint64, bool) {
	if string(sb[:4]) != "XFSB" {
		return 0, false
	}
	bs, blocks := binary.BigEndian.Uint32(sb[4:]), binary.BigEndian.Uint64(sb[8:])
	return blocks * uint64(bs), bs != 0
}

// extBytes reads the block count and size of an ext superblock (at byte
// 1024 of the device); the high half of the count only with 64bit.
func extBytes(sb []byte) (uint64, bool) {
	const magic, incompat64bit = 0xEF53, 0x80
	if binary.LittleEndian.Uint16(sb[56:]) != magic {
		return 0, false
	}
	blocks := uint64(binary.LittleEndian.Uint32(sb[4:]))
	if binary.LittleEndian.Uint32(sb[96:])&incompat64bit != 0 {
		blocks |= uint64(binary.LittleEndian.Uint32(sb[0x150:])) << 32
	}
	logBS := binary.LittleEndian.Uint32(sb[24:])
	if logBS > 6 { // 64 KiB blocks at most
		return 0, false
	}
	return blocks << (10 + logBS), true
}
