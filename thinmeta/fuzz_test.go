package thinmeta_test

import (
	"bytes"
	"encoding/binary"
	"hash/crc32"
	"testing"

	"github.com/thinlayer/thinlayer/thinmeta"
)

// FuzzOpen corrupts real metadata images (the fixtures) and runs every
// reader over them: none may panic, loop or run away with memory. The
// input picks a base image, then lists patches of 6 bytes each — block,
// offset, value, and whether to reseal the block's checksum afterwards, so
// damage reaches past the checksums into the format's own rules.
func FuzzOpen(f *testing.F) {
	bases := loadFuzzBases(f)
	f.Add([]byte{0})
	for i := range bases {
		for b := range min(bases[i].used, 120) {
			f.Add([]byte{byte(i), byte(b), 100, 0, 0, 0x55, 1})
			f.Add([]byte{byte(i), byte(b), 16, 0, 0, 0xff, 1}) // nr_entries of a node
		}
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		if len(in) == 0 {
			return
		}
		base := bases[int(in[0])%len(bases)]
		img := base.patched(in[1:])
		m, err := thinmeta.OpenReader(img, int64(len(base.img)))
		if err != nil {
			return
		}
		defer m.Close()
		exercise(m)
	})
}

// exercise runs every read-only call; results are not judged, only that
// each returns.
func exercise(m *thinmeta.Metadata) {
	_ = m.Superblock()
	devs, _ := m.Devices()
	for i, d := range devs {
		_ = m.Mappings(d.ID, func(thinmeta.Mapping) error { return nil })
		_, _ = m.Delta(devs[(i+1)%len(devs)].ID, d.ID)
	}
	_, _ = m.DevicesWithUsage()
	for _, p := range m.Check() {
		_ = p.Error()
	}
}

type fuzzBase struct {
	img   []byte
	used  int      // blocks up to the last nonzero one
	salts []uint32 // the checksum salt each block validates with
}

var knownSalts = []uint32{160774, 121107, 240779, 160478}

func loadFuzzBases(f *testing.F) []fuzzBase {
	var bases []fuzzBase
	for _, name := range []string{"mixed", "refcounts", "held"} {
		img := readTestdata(f, name+".meta.gz")
		b := fuzzBase{img: img, salts: make([]uint32, len(img)/4096)}
		for i := range b.salts {
			blk := img[i*4096 : (i+1)*4096]
			if !allZero(blk) {
				b.used = i + 1
			}
			b.salts[i] = btreeSalt
			for _, s := range knownSalts {
				if binary.LittleEndian.Uint32(blk) == ^crc32.Checksum(blk[4:], crc32.MakeTable(crc32.Castagnoli))^s {
					b.salts[i] = s
				}
			}
		}
		bases = append(bases, b)
	}
	return bases
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// patched applies 6-byte patches: block, offset (2 bytes, little-endian),
// a spare byte, value, reseal. The base stays untouched: changed blocks
// are copies laid over it.
func (b fuzzBase) patched(p []byte) overlay {
	o := overlay{base: b.img, blocks: map[int64][]byte{}}
	var reseal []int64
	for n := 0; len(p) >= 6 && n < 64; n, p = n+1, p[6:] {
		blk := int64(int(p[0]) % b.used)
		off := int(binary.LittleEndian.Uint16(p[1:])) % 4096
		o.block(blk)[off] = p[4] // p[3] is spare: keeps records aligned for the mutator
		if p[5]&1 != 0 {
			reseal = append(reseal, blk)
		}
	}
	for _, blk := range reseal {
		rawImage(o.block(blk)).reseal(0, b.salts[blk])
	}
	return o
}

// overlay is an image with some 4 KiB blocks replaced.
type overlay struct {
	base   []byte
	blocks map[int64][]byte
}

func (o overlay) block(b int64) []byte {
	if c, ok := o.blocks[b]; ok {
		return c
	}
	c := append([]byte(nil), o.base[b*4096:(b+1)*4096]...)
	o.blocks[b] = c
	return c
}

func (o overlay) ReadAt(p []byte, off int64) (int, error) {
	n, err := bytes.NewReader(o.base).ReadAt(p, off)
	for i := int64(0); i < int64(n); {
		b, in := (off+i)/4096, (off+i)%4096
		end := min(int64(n)-i, 4096-in)
		if c, ok := o.blocks[b]; ok {
			copy(p[i:i+end], c[in:in+end])
		}
		i += end
	}
	return n, err
}
