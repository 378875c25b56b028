package thinmeta_test

import (
	"encoding/binary"
	"errors"
	"hash/crc32"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/thinlayer/thinlayer/loopback"
	"github.com/thinlayer/thinlayer/testutil"
	"github.com/thinlayer/thinlayer/thinmeta"
)

// rawImage is a metadata image with just enough decoding, written apart
// from the package's own, to find one block of each kind to damage.
type rawImage []byte

func (img rawImage) block(b uint64) []byte { return img[b*4096 : (b+1)*4096] }
func (img rawImage) u64(b uint64, off int) uint64 {
	return binary.LittleEndian.Uint64(img.block(b)[off:])
}

// nodeValue is value i of the btree node at b (value size vs).
func (img rawImage) nodeValue(b uint64, i, vs int) []byte {
	maxEntries := int(binary.LittleEndian.Uint32(img.block(b)[20:]))
	off := 32 + 8*maxEntries + i*vs
	return img.block(b)[off : off+vs]
}

func (img rawImage) isLeaf(b uint64) bool { return binary.LittleEndian.Uint32(img.block(b)[4:]) == 2 }

// leftmostLeaf follows first children down to a leaf.
func (img rawImage) leftmostLeaf(b uint64) uint64 {
	for i := 0; i < 32 && !img.isLeaf(b); i++ {
		b = binary.LittleEndian.Uint64(img.nodeValue(b, 0, 8))
	}
	return b
}

// deviceRoot finds thin device id's subtree root in the top-level leaf.
func (img rawImage) deviceRoot(t *testing.T, id uint64) uint64 {
	top := img.leftmostLeaf(img.u64(0, 320))
	n := int(binary.LittleEndian.Uint32(img.block(top)[16:]))
	for i := 0; i < n; i++ {
		if img.u64(top, 32+8*i) == id {
			return binary.LittleEndian.Uint64(img.nodeValue(top, i, 8))
		}
	}
	t.Fatalf("thin device %d not in the top-level leaf", id)
	return 0
}

// blockKinds names one block of each kind in a metadata image made by
// buildMixed.
func (img rawImage) blockKinds(t *testing.T) map[string]uint64 {
	const dataSM, metaSM = 64, 192
	dataIndex := img.u64(0, dataSM+16)
	metaIndex := img.u64(0, metaSM+16)
	big := img.deviceRoot(t, 4) // 600 mappings: an internal root
	if img.isLeaf(big) {
		t.Fatal("thin device 4's root is a leaf; want an internal node")
	}
	return map[string]uint64{
		"superblock":                  0,
		"data space map index node":   dataIndex,
		"data space map bitmap":       binary.LittleEndian.Uint64(img.nodeValue(img.leftmostLeaf(dataIndex), 0, 16)),
		"data space map ref counts":   img.u64(0, dataSM+24),
		"metadata space map index":    metaIndex,
		"metadata space map bitmap":   img.u64(metaIndex, 16),
		"metadata space map refcount": img.u64(0, metaSM+24),
		"device details node":         img.u64(0, 328),
		"mapping top-level node":      img.u64(0, 320),
		"mapping internal node":       big,
		"mapping leaf":                img.leftmostLeaf(big),
	}
}

// reseal recomputes block b's checksum after a deliberate change, so only
// the change itself is wrong.
func (img rawImage) reseal(b uint64, salt uint32) {
	blk := img.block(b)
	binary.LittleEndian.PutUint32(blk, ^crc32.Checksum(blk[4:], crc32.MakeTable(crc32.Castagnoli))^salt)
}

func (img rawImage) bitmapCount(b uint64, e int) uint64 {
	word := binary.LittleEndian.Uint64(img.block(b)[16+8*(e/32):])
	bit := uint(e%32) * 2
	return (word>>bit&1)<<1 | word>>(bit+1)&1
}

// setBitmapCount sets entry e of the bitmap at b to v (0..3) and reseals it.
func (img rawImage) setBitmapCount(b uint64, e int, v uint64) {
	w := img.block(b)[16+8*(e/32):]
	word := binary.LittleEndian.Uint64(w)
	bit := uint(e%32) * 2
	word &^= 3 << bit
	word |= (v>>1&1)<<bit | (v&1)<<(bit+1)
	binary.LittleEndian.PutUint64(w, word)
	img.reseal(b, 240779)
}

// TestCorruptionsFound damages a copy of real metadata in one way at a
// time and requires both thin_check and Check to find each.
func TestCorruptionsFound(t *testing.T) {
	p := newPool(t, testutil.PoolOptions{DataSize: 1 << 30})
	buildMixed(p)
	p.stop()
	clean, err := os.ReadFile(p.MetadataFile)
	if err != nil {
		t.Fatal(err)
	}
	kinds := rawImage(clean).blockKinds(t)
	for kind, b := range kinds {
		t.Run("flipped bit in "+kind, func(t *testing.T) {
			img := rawImage(append([]byte(nil), clean...))
			img.block(b)[100] ^= 0x10
			judgeCorruption(t, img, b, false, true)
		})
	}
	// Wrong counts with valid checksums: the count itself must be caught.
	// thin_check 0.9.0 compares only metadata reference counts ("metadata
	// reference counts differ"), not data ones: for those, Check alone.
	dataBitmap, metaBitmap := kinds["data space map bitmap"], kinds["metadata space map bitmap"]
	leaf, details := kinds["mapping leaf"], kinds["device details node"]
	dataBlock := firstMapped(rawImage(clean), leaf)
	cases := []struct {
		name       string
		block      uint64
		data       bool
		judgeSees  bool
		bitmap     uint64
		entry, set uint64
	}{
		{"mapping leaf shared by two devices counted 1", leaf, false, true, metaBitmap, leaf, 1},
		{"device details node counted 2 (leaked)", details, false, true, metaBitmap, details, 2},
		{"metadata block in use counted 0", details, false, true, metaBitmap, details, 0},
		{"data block counted 2, referenced from one leaf", dataBlock, true, false, dataBitmap, dataBlock, 2},
		{"data block in use counted 0", dataBlock, true, false, dataBitmap, dataBlock, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			img := rawImage(append([]byte(nil), clean...))
			if got := img.bitmapCount(tc.bitmap, int(tc.entry)); got == tc.set {
				t.Fatalf("entry %d already counts %d", tc.entry, got)
			}
			img.setBitmapCount(tc.bitmap, int(tc.entry), tc.set)
			judgeCorruption(t, img, tc.block, tc.data, tc.judgeSees)
		})
	}
}

// firstMapped is the data block of a leaf's first mapping.
func firstMapped(img rawImage, leaf uint64) uint64 {
	return binary.LittleEndian.Uint64(img.nodeValue(leaf, 0, 8)) >> 24
}

// judgeCorruption writes img out, runs thin_check on it through a loop
// device and Check on the file, and requires both to fail — Check naming
// block b.
func judgeCorruption(t *testing.T, img rawImage, b uint64, data, judgeSees bool) {
	t.Helper()
	file := filepath.Join(t.TempDir(), "metadata")
	if err := os.WriteFile(file, img, 0o600); err != nil {
		t.Fatal(err)
	}
	loop, err := loopback.Attach(file, loopback.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer loop.Detach()
	out, ok := thinCheck(loop.Path)
	if ok == judgeSees {
		t.Errorf("thin_check passes=%v on this damage, want %v:\n%s", ok, !judgeSees, out)
	}
	t.Logf("thin_check: %s", lastLines(out, 2))
	m, err := thinmeta.Open(file)
	if err != nil {
		t.Logf("Open: %v", err)
		var be *thinmeta.BlockError
		if !errors.As(err, &be) || be.Block != b {
			t.Errorf("Open error %v does not name block %d", err, b)
		}
		return
	}
	defer m.Close()
	probs := m.Check()
	found := false
	for _, p := range probs {
		found = found || (p.Block == b && p.Data == data)
	}
	if !found {
		t.Errorf("Check does not name block %d (data %v); it found %d problems: %v", b, data, len(probs), probs)
	}
	t.Logf("Check: %d problems, first %v", len(probs), probs[:min(len(probs), 2)])
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], " | ")
}
