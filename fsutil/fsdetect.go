package fsutil

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"strings"
)

// ErrNoFilesystem is returned by ProbeFilesystem and ProbeDevice when no
// known filesystem superblock is found.
var ErrNoFilesystem = errors.New("no known filesystem found")

// FSInfo describes a filesystem found by ProbeFilesystem.
type FSInfo struct {
	// Type is the filesystem type as blkid names it: "xfs", "ext4",
	// "ext3", "ext2", "jbd" (an external ext journal) or "btrfs".
	Type string
	// UUID is the filesystem UUID in the canonical lowercase
	// 8-4-4-4-12 form that blkid prints, or "" when it is all zeros.
	UUID string
	// Label is the volume label, or "" when there is none.
	Label string
}

// prober looks for one filesystem family. It returns ok=false when the
// superblock is absent or invalid, and an error only for I/O failures.
type prober func(r io.ReaderAt) (info FSInfo, ok bool, err error)

// probers are tried in order; the first match wins.
var probers = []prober{probeXFS, probeExt, probeBtrfs}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// ProbeFilesystem identifies the filesystem whose superblock r holds,
// without calling blkid. It recognises XFS, ext2/3/4 (classified by
// feature flags the way libblkid does) and btrfs. It returns an error
// wrapping ErrNoFilesystem when nothing is recognised, and any other
// read error as is. Short inputs are not an error: they hold no
// filesystem.
func ProbeFilesystem(r io.ReaderAt) (FSInfo, error) {
	for _, probe := range probers {
		info, ok, err := probe(r)
		if err != nil {
			return FSInfo{}, err
		}
		if ok {
			return info, nil
		}
	}
	return FSInfo{}, ErrNoFilesystem
}

// ProbeDevice opens the block device or image file at path read-only
// and identifies its filesystem with ProbeFilesystem.
func ProbeDevice(path string) (FSInfo, error) {
	f, err := os.Open(path)
	if err != nil {
		return FSInfo{}, fmt.Errorf("probe filesystem: %w", err)
	}
	defer f.Close()
	info, err := ProbeFilesystem(f)
	if err != nil {
		return FSInfo{}, fmt.Errorf("probe filesystem on %s: %w", path, err)
	}
	return info, nil
}

// readAt reads exactly n bytes at off. It reports ok=false, without an
// error, when r ends before off+n.
func readAt(r io.ReaderAt, off int64, n int) ([]byte, bool, error) {
	buf := make([]byte, n)
	got, err := r.ReadAt(buf, off)
	if got == n {
		return buf, true, nil
	}
	if err == nil || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return nil, false, nil
	}
	return nil, false, fmt.Errorf("read %d bytes at offset %d: %w", n, off, err)
}

// formatUUID renders a 16-byte UUID as blkid does, or "" if it is zero.
func formatUUID(b []byte) string {
	if len(b) != 16 || bytes.Equal(b, make([]byte, 16)) {
		return ""
	}
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

// cString returns b up to its first NUL, with trailing whitespace
// removed, as libblkid stores labels.
func cString(b []byte) string {
	if i := bytes.IndexByte(b, 0); i >= 0 {
		b = b[:i]
	}
	return strings.TrimRight(string(b), " \t\r\n")
}

// isPow2In reports whether v is a power of two within [lo, hi].
func isPow2In(v, lo, hi uint64) bool {
	return v >= lo && v <= hi && v&(v-1) == 0
}

// XFS superblock layout (fs/xfs/libxfs/xfs_format.h), big-endian.
const (
	xfsMagic       = "XFSB"
	xfsOffBlock    = 4
	xfsOffUUID     = 32
	xfsOffAgBlocks = 84
	xfsOffAgCount  = 88
	xfsOffVersion  = 100
	xfsOffSectSize = 102
	xfsOffInoSize  = 104
	xfsOffName     = 108
	xfsNameLen     = 12
	xfsOffCRC      = 224
	xfsSBLen       = 512
)

// probeXFS recognises an XFS superblock at offset 0, sanity-checks its
// geometry and, for v5 filesystems, verifies its CRC like libblkid.
func probeXFS(r io.ReaderAt) (FSInfo, bool, error) {
	sb, ok, err := readAt(r, 0, xfsSBLen)
	if !ok || string(sb[:4]) != xfsMagic {
		return FSInfo{}, false, err
	}
	if !xfsGeometryValid(sb) {
		return FSInfo{}, false, nil
	}
	if sb[xfsOffVersion+1]&0x0f == 5 {
		if ok, err := xfsCRCValid(r, sb); !ok || err != nil {
			return FSInfo{}, false, err
		}
	}
	return FSInfo{
		Type:  "xfs",
		UUID:  formatUUID(sb[xfsOffUUID : xfsOffUUID+16]),
		Label: cString(sb[xfsOffName : xfsOffName+xfsNameLen]),
	}, true, nil
}

// xfsGeometryValid applies the cheap checks of libblkid's
// xfs_verify_sb so that a stray "XFSB" is not taken for a filesystem.
func xfsGeometryValid(sb []byte) bool {
	be := binary.BigEndian
	version := be.Uint16(sb[xfsOffVersion:]) & 0x0f
	return version >= 1 && version <= 5 &&
		isPow2In(uint64(be.Uint32(sb[xfsOffBlock:])), 512, 65536) &&
		isPow2In(uint64(be.Uint16(sb[xfsOffSectSize:])), 512, 32768) &&
		isPow2In(uint64(be.Uint16(sb[xfsOffInoSize:])), 256, 2048) &&
		be.Uint32(sb[xfsOffAgBlocks:]) != 0 &&
		be.Uint32(sb[xfsOffAgCount:]) != 0
}

// xfsCRCValid verifies the CRC32C of a v5 XFS superblock, which covers
// the whole first sector with the CRC field taken as zero.
func xfsCRCValid(r io.ReaderAt, sb []byte) (bool, error) {
	sect := int(binary.BigEndian.Uint16(sb[xfsOffSectSize:]))
	buf, ok, err := readAt(r, 0, sect)
	if !ok {
		return false, err
	}
	want := binary.LittleEndian.Uint32(buf[xfsOffCRC:])
	clear(buf[xfsOffCRC : xfsOffCRC+4])
	return crc32.Checksum(buf, castagnoli) == want, nil
}
