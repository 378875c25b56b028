package thinmeta

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
)

// The dm-thin on-disk format, from the kernel's drivers/md/dm-thin-metadata.c
// and drivers/md/persistent-data/. Every block is 4 KiB, little-endian, and
// starts with a crc32c of the rest of the block xored with a per-type salt.

// BlockSize is the size of a metadata block in bytes.
const BlockSize = 4096

const (
	superblockMagic    = 27022010
	superblockLocation = 0
	minVersion         = 1
	maxVersion         = 2
	metadataBlockSects = BlockSize / 512

	// Checksum salts (the *_CSUM_XOR constants in the kernel).
	superblockCsumXor = 160774
	btreeCsumXor      = 121107
	bitmapCsumXor     = 240779
	indexCsumXor      = 160478

	// needsCheckFlag is THIN_METADATA_NEEDS_CHECK_FLAG in the superblock.
	needsCheckFlag = 1 << 0

	smRootSize         = 128 // SPACE_MAP_ROOT_SIZE: room reserved per root
	indexEntrySize     = 16  // struct disk_index_entry
	maxMetadataBitmaps = 255 // MAX_METADATA_BITMAPS
	bitmapHeaderSize   = 16  // struct disk_bitmap_header
	// entriesPerBitmap is how many 2-bit reference counts a bitmap holds.
	entriesPerBitmap = (BlockSize - bitmapHeaderSize) * 4

	nodeHeaderSize = 32 // struct node_header
	internalNode   = 1  // INTERNAL_NODE flag
	leafNode       = 2  // LEAF_NODE flag

	detailsValueSize = 24 // struct disk_device_details
	mappingValueSize = 8  // le64: data block << 24 | time, or a subtree root
	indexValueSize   = indexEntrySize
	refCountSize     = 4 // le32 reference counts above 2

	timeBits = 24 // the low bits of a mapping value hold its time
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// blockChecksum is dm_bm_checksum over b[4:]: crc32c seeded with ~0 and not
// inverted at the end (Go's crc32 inverts), xored with the block type's salt.
func blockChecksum(b []byte, salt uint32) uint32 {
	return ^crc32.Checksum(b[4:], castagnoli) ^ salt
}

// checkBlock verifies a block's self-location and checksum, the two things
// every validator in the kernel checks.
func checkBlock(b []byte, loc uint64, salt uint32, what string) error {
	if got := le64(b[8:]); got != loc {
		return corruptf("%s: block says it is block %d", what, got)
	}
	if got, want := le32(b), blockChecksum(b, salt); got != want {
		return fmt.Errorf("%s: %w: stored %#08x, computed %#08x", what, ErrChecksum, got, want)
	}
	return nil
}

func le32(b []byte) uint32 { return binary.LittleEndian.Uint32(b) }
func le64(b []byte) uint64 { return binary.LittleEndian.Uint64(b) }

// smRoot is struct disk_sm_root: a space map's size and where it lives.
type smRoot struct {
	NrBlocks     uint64
	NrAllocated  uint64
	BitmapRoot   uint64 // data: index btree root; metadata: index block
	RefCountRoot uint64 // btree of counts above 2
}

func parseSMRoot(b []byte) smRoot {
	return smRoot{le64(b), le64(b[8:]), le64(b[16:]), le64(b[24:])}
}

// rawSuperblock is struct thin_disk_superblock with its tree roots.
type rawSuperblock struct {
	Superblock
	dataSM, metaSM    smRoot
	mappingRoot       uint64
	detailsRoot       uint64
	metadataBlockSize uint32
}

// parseSuperblock decodes and validates the superblock found at block loc
// (0, or a metadata snapshot's copy).
func parseSuperblock(b []byte, loc uint64) (rawSuperblock, error) {
	var s rawSuperblock
	if le64(b[32:]) != superblockMagic {
		return s, fmt.Errorf("%w: bad magic %d in block %d", ErrNotThinMetadata, le64(b[32:]), loc)
	}
	if err := checkBlock(b, loc, superblockCsumXor, "superblock"); err != nil {
		return s, err
	}
	s.Flags = le32(b[4:])
	s.NeedsCheck = s.Flags&needsCheckFlag != 0
	copy(s.UUID[:], b[16:32])
	s.Version = le32(b[40:])
	s.Time = le32(b[44:])
	s.TransactionID = le64(b[48:])
	s.HeldRoot = le64(b[56:])
	s.dataSM = parseSMRoot(b[64:])
	s.metaSM = parseSMRoot(b[64+smRootSize:])
	s.mappingRoot = le64(b[320:])
	s.detailsRoot = le64(b[328:])
	s.DataBlockSize = le32(b[336:])
	s.metadataBlockSize = le32(b[340:])
	s.MetadataBlocks = le64(b[344:])
	s.CompatFlags = le32(b[352:])
	s.CompatROFlags = le32(b[356:])
	s.IncompatFlags = le32(b[360:])
	s.NrDataBlocks = s.dataSM.NrBlocks
	s.DataBlocksUsed = s.dataSM.NrAllocated
	s.MetadataBlocksUsed = s.metaSM.NrAllocated
	return s, s.validate()
}

func (s *rawSuperblock) validate() error {
	switch {
	case s.Version < minVersion || s.Version > maxVersion:
		return corruptf("superblock: unknown metadata version %d", s.Version)
	case s.metadataBlockSize != metadataBlockSects:
		return corruptf("superblock: metadata block size %d sectors, want %d", s.metadataBlockSize, metadataBlockSects)
	case s.DataBlockSize == 0:
		return corruptf("superblock: data block size 0")
	case s.IncompatFlags != 0:
		return corruptf("superblock: unknown incompatible features %#x", s.IncompatFlags)
	}
	return nil
}

// nodeHeader is struct node_header at the start of every btree node.
type nodeHeader struct {
	flags      uint32
	nrEntries  uint32
	maxEntries uint32
	valueSize  uint32
}

// node is a parsed btree node: keys, then values of valueSize bytes each.
type node struct {
	loc uint64
	nodeHeader
	b []byte
}

func (n *node) leaf() bool         { return n.flags == leafNode }
func (n *node) key(i int) uint64   { return le64(n.b[nodeHeaderSize+8*i:]) }
func (n *node) child(i int) uint64 { return le64(n.value(i)) }
func (n *node) len() int           { return int(n.nrEntries) }
func (n *node) value(i int) []byte {
	off := nodeHeaderSize + 8*int(n.maxEntries) + i*int(n.valueSize)
	return n.b[off : off+int(n.valueSize)]
}

// maxEntriesFor is the kernel's calc_max_entries: as many keys and values as
// fit, rounded down to a multiple of 3 so nodes split and merge evenly.
func maxEntriesFor(valueSize int) uint32 {
	n := (BlockSize - nodeHeaderSize) / (8 + valueSize)
	return uint32(n / 3 * 3)
}

// parseNode validates a btree node's checksum and header against the value
// size its tree uses (8 bytes of child pointer in internal nodes).
func parseNode(b []byte, loc uint64, leafValueSize int) (node, error) {
	n := node{loc: loc, b: b}
	if err := checkBlock(b, loc, btreeCsumXor, "btree node"); err != nil {
		return n, err
	}
	n.flags, n.nrEntries = le32(b[4:]), le32(b[16:])
	n.maxEntries, n.valueSize = le32(b[20:]), le32(b[24:])
	want := uint32(leafValueSize)
	switch n.flags {
	case leafNode:
	case internalNode:
		want = 8
	default:
		return n, corruptf("btree node: bad flags %#x", n.flags)
	}
	if n.valueSize != want {
		return n, corruptf("btree node: value size %d, want %d", n.valueSize, want)
	}
	if n.maxEntries > maxEntriesFor(int(want)) || n.maxEntries%3 != 0 {
		return n, corruptf("btree node: max entries %d invalid for value size %d", n.maxEntries, want)
	}
	if n.nrEntries > n.maxEntries {
		return n, corruptf("btree node: %d entries, more than max %d", n.nrEntries, n.maxEntries)
	}
	return n, nil
}

// DeviceDetails is struct disk_device_details, one per thin device.
type deviceDetails struct {
	MappedBlocks  uint64
	TransactionID uint64
	CreationTime  uint32
	SnapshotTime  uint32
}

func parseDetails(v []byte) deviceDetails {
	return deviceDetails{le64(v), le64(v[8:]), le32(v[16:]), le32(v[20:])}
}

// indexEntry is struct disk_index_entry: one bitmap of a space map.
type indexEntry struct {
	Block          uint64
	NrFree         uint32
	NoneFreeBefore uint32
}

func parseIndexEntry(v []byte) indexEntry {
	return indexEntry{le64(v), le32(v[8:]), le32(v[12:])}
}

// bitmapCount is the 2-bit count of entry i in a bitmap block: in each
// little-endian 64-bit word, bit 2k is the high bit of entry k and bit 2k+1
// the low one (sm_lookup_bitmap). 3 means "look in the ref count tree".
func bitmapCount(b []byte, i int) uint32 {
	w := le64(b[bitmapHeaderSize+8*(i/32):])
	bit := uint(i%32) * 2
	return uint32(w>>bit&1)<<1 | uint32(w>>(bit+1)&1)
}

// unpackMapping splits a mapping value into data block and time.
func unpackMapping(v uint64) (block uint64, time uint32) {
	return v >> timeBits, uint32(v & (1<<timeBits - 1))
}
