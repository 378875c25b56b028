// Package thinmeta reads a dm-thin pool's own metadata, read-only, in pure
// Go: the superblock, the data and metadata space maps, the device-details
// tree and the two-level mapping tree (thin id → virtual block → data block
// and time), in the on-disk format of the kernel's dm-thin-metadata.c and
// persistent-data library.
//
// Open reads an inactive metadata device or file; OpenLive reads a live
// pool through a metadata snapshot (reserve_metadata_snap), which the
// kernel keeps unchanged until it is released.
//
// Every block read is checked (checksum, self-location, btree header) and
// every walk is bounded: keys must lie in the range their parent gives
// them, trees may be at most 32 levels deep, and nothing is allocated in
// proportion to a count the metadata claims without that count being
// checked against the size of the device first. Hostile or corrupt
// metadata gives an error wrapping ErrCorrupt, ErrChecksum or
// ErrNotThinMetadata, naming the block, never a panic or an endless loop.
package thinmeta
