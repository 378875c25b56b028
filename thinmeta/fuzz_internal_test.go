package thinmeta

import (
	"encoding/binary"
	"testing"
)

// sealed pads in to a block and gives it a valid checksum and location, so
// fuzzing reaches the decoders behind them.
func sealed(in []byte, loc uint64, salt uint32) []byte {
	b := make([]byte, BlockSize)
	copy(b, in)
	binary.LittleEndian.PutUint64(b[8:], loc)
	binary.LittleEndian.PutUint32(b, blockChecksum(b, salt))
	return b
}

// FuzzParseNode: any block, decoded as a node of any value size, either
// fails cleanly or yields accessors that stay inside the block.
func FuzzParseNode(f *testing.F) {
	img := gunzipTestdata(f, "mixed.meta.gz")
	for b := 1; b < 128; b++ {
		f.Add(img[b*BlockSize:(b+1)*BlockSize], uint8(8))
	}
	f.Add([]byte{}, uint8(24))
	f.Fuzz(func(t *testing.T, in []byte, vs uint8) {
		b := sealed(in, 7, btreeCsumXor)
		n, err := parseNode(b, 7, int(vs%32))
		if err != nil {
			return
		}
		_ = n.checkKeys(allKeys)
		_ = n.checkChildren(1 << 20)
		for i := 0; i < n.len(); i++ {
			_ = n.key(i)
			_ = n.value(i)
			if !n.leaf() {
				_ = n.childRange(i, allKeys)
			}
		}
	})
}

// FuzzParseSuperblock: any superblock fails cleanly or passes its checks.
func FuzzParseSuperblock(f *testing.F) {
	img := gunzipTestdata(f, "held.meta.gz")
	f.Add(img[:BlockSize])
	f.Fuzz(func(t *testing.T, in []byte) {
		sb, err := parseSuperblock(sealed(in, 0, superblockCsumXor), 0)
		if err != nil {
			return
		}
		if err := sb.checkSize(1 << 20); err == nil && sb.dataSM.NrBlocks > sb.MetadataBlocks*entriesPerBitmap {
			t.Fatalf("size check passed %d data blocks on %d metadata blocks", sb.dataSM.NrBlocks, sb.MetadataBlocks)
		}
	})
}
