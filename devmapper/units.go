package devmapper

import "fmt"

// Sizes of the units device-mapper talks in.
const (
	// SectorSize is the size of a Sectors unit in bytes. Device-mapper
	// tables always count 512-byte sectors, whatever the device's logical
	// block size.
	SectorSize = 512
	// MetaBlockSize is the size of a thin-pool metadata block in bytes
	// (THIN_METADATA_BLOCK_SIZE in the kernel).
	MetaBlockSize = 4096
)

// Sectors counts 512-byte sectors. Table lines, offsets and thin mappings
// are in sectors; keeping it a distinct type stops a block count being
// passed where sectors are expected.
type Sectors uint64

// DataBlocks counts thin-pool data blocks, whose size is the pool's
// DataBlockSize (in sectors).
type DataBlocks uint64

// MetaBlocks counts thin-pool metadata blocks of MetaBlockSize bytes.
type MetaBlocks uint64

// Bytes returns the size in bytes. It wraps above 2^55 sectors (16 EiB),
// which no block device reaches.
func (s Sectors) Bytes() uint64 { return uint64(s) * SectorSize }

// BytesToSectors converts a byte count to sectors, dropping any partial
// trailing sector (a table may not map part of a sector).
func BytesToSectors(b uint64) Sectors { return Sectors(b / SectorSize) }

// String gives the count with an exact binary size for logs, such as
// "2048 sectors (1 MiB)".
func (s Sectors) String() string {
	return fmt.Sprintf("%d sectors (%s)", uint64(s), exactSize(s.Bytes()))
}

// Sectors converts a data block count to sectors given the pool's data
// block size.
func (b DataBlocks) Sectors(blockSize Sectors) Sectors { return Sectors(uint64(b) * uint64(blockSize)) }

// Bytes returns the size of b metadata blocks in bytes.
func (b MetaBlocks) Bytes() uint64 { return uint64(b) * MetaBlockSize }

// exactSize prints n in the largest binary unit that divides it evenly, so
// the figure is never rounded.
func exactSize(n uint64) string {
	units := []string{"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"}
	i := 0
	for n != 0 && n%1024 == 0 && i < len(units)-1 {
		n /= 1024
		i++
	}
	return fmt.Sprintf("%d %s", n, units[i])
}
