package thinmeta

import (
	"errors"
	"fmt"
	"io"
	"math"

	"github.com/thinlayer/thinlayer/devmapper"
)

// Superblock is what the metadata's superblock says about the pool.
type Superblock struct {
	UUID          [16]byte
	Flags         uint32
	NeedsCheck    bool // the kernel asked for thin_check before reuse
	Version       uint32
	Time          uint32 // the pool's snapshot clock
	TransactionID uint64
	// HeldRoot is the block of a metadata snapshot, 0 when none is held.
	HeldRoot uint64

	DataBlockSize  uint32 // in 512-byte sectors
	NrDataBlocks   uint64 // data blocks in the pool
	DataBlocksUsed uint64 // data blocks with a nonzero reference count

	MetadataBlocks     uint64 // 4 KiB metadata blocks in the pool
	MetadataBlocksUsed uint64

	CompatFlags, CompatROFlags, IncompatFlags uint32

	// Snapshot is set when the trees were read through a metadata
	// snapshot of a live pool (OpenLive); the space-map numbers then come
	// from the live superblock and may have moved on since.
	Snapshot bool
}

// Device is one thin device as the metadata records it. ExclusiveBlocks and
// SharedBlocks are filled in by DevicesWithUsage only.
type Device struct {
	ID                         devmapper.ThinID
	MappedBlocks               uint64
	TransactionID              uint64
	CreationTime, SnapshotTime uint32
	// ExclusiveBlocks are mapped blocks no other mapping, of this device
	// or another, points to: what deleting the device frees. SharedBlocks
	// are MappedBlocks - ExclusiveBlocks (thin_ls's definitions).
	ExclusiveBlocks, SharedBlocks uint64
}

// Metadata is an open, read-only view of a thin pool's metadata. Its
// methods may be called concurrently.
type Metadata struct {
	r  *blockReader
	sb rawSuperblock // block 0's, or the metadata snapshot's
	// root is block 0's superblock: it owns the space maps, which a
	// metadata snapshot does not record.
	root rawSuperblock
}

// Open reads an inactive metadata device or file. A block device is opened
// exclusively, so it fails with EBUSY while a pool is live on it (use
// OpenLive then).
func Open(path string) (*Metadata, error) {
	r, err := openBlocks(path, true)
	if err != nil {
		return nil, fmt.Errorf("thinmeta: open %s: %w", path, err)
	}
	m, err := newMetadata(r, 0)
	if err != nil {
		r.Close()
		return nil, fmt.Errorf("thinmeta: open %s: %w", path, err)
	}
	return m, nil
}

// OpenReader reads inactive metadata of size bytes from r: an image in
// memory, a backup, a stream with random access. Close does not close r.
func OpenReader(r io.ReaderAt, size int64) (*Metadata, error) {
	if size < 0 {
		size = 0
	}
	m, err := newMetadata(&blockReader{f: r, path: "reader", nr: uint64(size) / BlockSize}, 0)
	if err != nil {
		return nil, fmt.Errorf("thinmeta: open: %w", err)
	}
	return m, nil
}

// OpenSnapshot reads the trees of the metadata snapshot an inactive
// metadata device or file still holds (a pool stopped while a snapshot was
// reserved), as thin_dump -m does. It fails with ErrNoSnapshot when none
// is held.
func OpenSnapshot(path string) (*Metadata, error) {
	r, err := openBlocks(path, true)
	if err != nil {
		return nil, fmt.Errorf("thinmeta: open %s: %w", path, err)
	}
	root, err := readSuperblock(r, superblockLocation)
	if err == nil && root.HeldRoot == 0 {
		err = ErrNoSnapshot
	}
	var m *Metadata
	if err == nil {
		m, err = newMetadata(r, root.HeldRoot)
	}
	if err != nil {
		r.Close()
		return nil, fmt.Errorf("thinmeta: open snapshot in %s: %w", path, err)
	}
	return m, nil
}

// newMetadata reads block 0's superblock and, when held is not 0, the
// metadata snapshot's copy at held, whose trees are then the ones read.
func newMetadata(r *blockReader, held uint64) (*Metadata, error) {
	root, err := readSuperblock(r, superblockLocation)
	if err != nil {
		return nil, err
	}
	if err := root.checkSize(r.nr); err != nil {
		return nil, atBlock(superblockLocation, err)
	}
	r.limit(root.MetadataBlocks)
	m := &Metadata{r: r, sb: root, root: root}
	if held == 0 {
		return m, nil
	}
	if root.HeldRoot != held {
		return nil, fmt.Errorf("%w: superblock records held root %d, pool status %d", ErrNoSnapshot, root.HeldRoot, held)
	}
	if m.sb, err = readSuperblock(r, held); err != nil {
		return nil, err
	}
	m.sb.Snapshot = true
	m.sb.HeldRoot = held
	m.sb.NrDataBlocks, m.sb.DataBlocksUsed = root.NrDataBlocks, root.DataBlocksUsed
	m.sb.MetadataBlocks, m.sb.MetadataBlocksUsed = root.MetadataBlocks, root.MetadataBlocksUsed
	return m, nil
}

func readSuperblock(r *blockReader, loc uint64) (rawSuperblock, error) {
	b, err := r.read(loc)
	if err != nil {
		return rawSuperblock{}, err
	}
	sb, err := parseSuperblock(b, loc)
	return sb, atBlock(loc, err)
}

// checkSize checks the superblock's sizes against the device (fileBlocks)
// and each other, which bounds what any later walk allocates.
func (s *rawSuperblock) checkSize(fileBlocks uint64) error {
	// The kernel writes metadata_nr_blocks at format time and leaves it
	// when the metadata device grows; the space map is what was extended.
	if s.metaSM.NrBlocks > s.MetadataBlocks && s.metaSM.NrBlocks <= fileBlocks {
		s.MetadataBlocks = s.metaSM.NrBlocks
	}
	switch {
	case s.MetadataBlocks > fileBlocks:
		return corruptf("superblock: %d metadata blocks, the device holds %d", s.MetadataBlocks, fileBlocks)
	case s.metaSM.NrBlocks != s.MetadataBlocks:
		return corruptf("superblock: metadata space map covers %d blocks, superblock says %d", s.metaSM.NrBlocks, s.MetadataBlocks)
	case s.metaSM.NrBlocks > maxMetadataBitmaps*entriesPerBitmap:
		return corruptf("superblock: metadata space map of %d blocks is too large", s.metaSM.NrBlocks)
	// Each data bitmap is a metadata block: more data blocks than the
	// metadata's bitmaps can count is corruption.
	case s.dataSM.NrBlocks > s.MetadataBlocks*entriesPerBitmap:
		return corruptf("superblock: %d data blocks need more bitmaps than the %d metadata blocks", s.dataSM.NrBlocks, s.MetadataBlocks)
	case s.dataSM.NrAllocated > s.dataSM.NrBlocks, s.metaSM.NrAllocated > s.metaSM.NrBlocks:
		return corruptf("superblock: more blocks allocated than the space maps hold")
	}
	return nil
}

// Close releases the device or file.
func (m *Metadata) Close() error { return m.r.Close() }

// Superblock returns the superblock's fields.
func (m *Metadata) Superblock() Superblock { return m.sb.Superblock }

// Devices lists the thin devices, sorted by id, from the device-details
// tree. It reads no mappings: ExclusiveBlocks and SharedBlocks are zero.
func (m *Metadata) Devices() ([]Device, error) {
	var devs []Device
	err := m.walkTree(m.sb.detailsRoot, detailsValueSize, func(n *node) error {
		for i := 0; i < n.len(); i++ {
			id, err := thinID(n.key(i))
			if err != nil {
				return atBlock(n.loc, err)
			}
			d := parseDetails(n.value(i))
			devs = append(devs, Device{ID: id, MappedBlocks: d.MappedBlocks, TransactionID: d.TransactionID,
				CreationTime: d.CreationTime, SnapshotTime: d.SnapshotTime})
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("thinmeta: device details: %w", err)
	}
	return devs, nil
}

func thinID(key uint64) (devmapper.ThinID, error) {
	id, err := devmapper.ThinIDOf(key)
	if err != nil {
		return 0, corruptf("%v", err)
	}
	return id, nil
}

// Mapping is one mapped block of a thin device.
type Mapping struct {
	Virtual uint64 // block within the thin device
	Data    uint64 // block within the pool's data device
	Time    uint32 // the pool's snapshot clock when it was mapped
}

// Mappings calls fn for every mapping of thin device id, in order of virtual
// block. An error from fn stops the walk and is returned.
func (m *Metadata) Mappings(id devmapper.ThinID, fn func(Mapping) error) error {
	root, err := m.deviceRoot(id)
	if err != nil {
		return err
	}
	err = m.walkTree(root, mappingValueSize, func(n *node) error {
		for i := 0; i < n.len(); i++ {
			data, t := unpackMapping(le64(n.value(i)))
			if data >= m.sb.NrDataBlocks {
				return atBlock(n.loc, corruptf("mapping of block %d to data block %d, beyond the %d data blocks", n.key(i), data, m.sb.NrDataBlocks))
			}
			if err := fn(Mapping{Virtual: n.key(i), Data: data, Time: t}); err != nil {
				return errStop{err}
			}
		}
		return nil
	})
	var stop errStop
	if errors.As(err, &stop) {
		return stop.err
	}
	if err != nil {
		return fmt.Errorf("thinmeta: mappings of thin device %d: %w", id, err)
	}
	return nil
}

// errStop carries the caller's own error out of a walk untouched.
type errStop struct{ err error }

func (e errStop) Error() string { return e.err.Error() }

// deviceRoot looks up a thin device's mapping subtree in the top level.
func (m *Metadata) deviceRoot(id devmapper.ThinID) (uint64, error) {
	v, ok, err := m.lookup(m.sb.mappingRoot, mappingValueSize, uint64(id))
	if err != nil {
		return 0, fmt.Errorf("thinmeta: mapping tree: %w", err)
	}
	if !ok {
		return 0, fmt.Errorf("thinmeta: thin device %d: %w", id, ErrNoDevice)
	}
	return le64(v), nil
}

// satAdd adds without wrapping, for counts read from hostile metadata.
func satAdd(a, b uint64) uint64 {
	if a > math.MaxUint64-b {
		return math.MaxUint64
	}
	return a + b
}
