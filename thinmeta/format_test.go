package thinmeta

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"encoding/xml"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
)

func gunzipTestdata(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	zr, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	out, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestParseFixtureBlocks decodes the blocks of a kernel-made image (the
// "mixed" fixture) and checks them against what thin_dump recorded and
// against the sizes the kernel's calc_max_entries gives.
func TestParseFixtureBlocks(t *testing.T) {
	img := gunzipTestdata(t, "mixed.meta.gz")
	block := func(b uint64) []byte { return img[b*BlockSize : (b+1)*BlockSize] }
	var dump struct {
		Time        uint32     `xml:"time,attr"`
		Transaction uint64     `xml:"transaction,attr"`
		BlockSize   uint32     `xml:"data_block_size,attr"`
		NrData      uint64     `xml:"nr_data_blocks,attr"`
		Devices     []struct{} `xml:"device"`
	}
	if err := xml.Unmarshal(gunzipTestdata(t, "mixed.dump.xml.gz"), &dump); err != nil {
		t.Fatal(err)
	}
	sb, err := parseSuperblock(block(0), 0)
	if err != nil {
		t.Fatal(err)
	}
	if sb.Time != dump.Time || sb.TransactionID != dump.Transaction || sb.DataBlockSize != dump.BlockSize ||
		sb.NrDataBlocks != dump.NrData || sb.MetadataBlocks != uint64(len(img)/BlockSize) {
		t.Fatalf("superblock %+v, thin_dump %+v", sb, dump)
	}
	cases := []struct {
		name       string
		loc        uint64
		valueSize  int
		maxEntries uint32
		nrEntries  int // -1: not checked
	}{
		{"device details root", sb.detailsRoot, detailsValueSize, 126, len(dump.Devices)},
		{"mapping top level root", sb.mappingRoot, mappingValueSize, 252, len(dump.Devices)},
		{"data space map index root", sb.dataSM.BitmapRoot, indexValueSize, 168, int((dump.NrData + 16319) / 16320)},
		{"data space map ref counts", sb.dataSM.RefCountRoot, refCountSize, 336, 0},
		{"metadata space map ref counts", sb.metaSM.RefCountRoot, refCountSize, 336, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			n, err := parseNode(block(tc.loc), tc.loc, tc.valueSize)
			if err != nil {
				t.Fatal(err)
			}
			if !n.leaf() || n.maxEntries != tc.maxEntries || (tc.nrEntries >= 0 && n.len() != tc.nrEntries) {
				t.Fatalf("node %+v: want a leaf of %d/%d entries", n.nodeHeader, tc.nrEntries, tc.maxEntries)
			}
			if err := n.checkKeys(allKeys); err != nil {
				t.Fatal(err)
			}
			if _, err := parseNode(block(tc.loc), tc.loc, tc.valueSize+1); !errors.Is(err, ErrCorrupt) {
				t.Fatalf("parsed with the wrong value size: %v", err)
			}
			if _, err := parseNode(block(tc.loc), tc.loc+1, tc.valueSize); err == nil {
				t.Fatal("parsed at the wrong location")
			}
		})
	}
	// The data bitmaps' nonzero counts are the blocks the superblock says
	// are allocated; each bitmap's zero ones what its index entry says.
	idx, _ := parseNode(block(sb.dataSM.BitmapRoot), sb.dataSM.BitmapRoot, indexValueSize)
	var used uint64
	for i := 0; i < idx.len(); i++ {
		e := parseIndexEntry(idx.value(i))
		bm := block(e.Block)
		if err := checkBlock(bm, e.Block, bitmapCsumXor, "bitmap"); err != nil {
			t.Fatal(err)
		}
		var free uint32
		for j := 0; j < entriesPerBitmap; j++ {
			if bitmapCount(bm, j) != 0 {
				used++
			} else {
				free++
			}
		}
		if free != e.NrFree {
			t.Errorf("bitmap %d: %d free, index says %d", i, free, e.NrFree)
		}
	}
	if used != sb.DataBlocksUsed {
		t.Fatalf("bitmaps: %d used; superblock says %d", used, sb.DataBlocksUsed)
	}
}

func TestBitmapCount(t *testing.T) {
	b := make([]byte, BlockSize)
	// Entry 0: bits 0 (high) and 1 (low) of word 0; entry 33: bits 2, 3 of word 1.
	binary.LittleEndian.PutUint64(b[bitmapHeaderSize:], 0b01)
	binary.LittleEndian.PutUint64(b[bitmapHeaderSize+8:], 0b1110<<0)
	binary.LittleEndian.PutUint64(b[BlockSize-8:], 1<<63|1<<62)
	cases := []struct {
		entry int
		want  uint32
	}{
		{0, 2},                    // high bit only
		{1, 0},                    //
		{32, 1},                   // word 1, bits 0,1 = 0,1: low bit only
		{33, 3},                   // bits 2,3 set
		{entriesPerBitmap - 1, 3}, // the last entry: the top two bits of the last word
	}
	for _, tc := range cases {
		if got := bitmapCount(b, tc.entry); got != tc.want {
			t.Errorf("entry %d: %d, want %d", tc.entry, got, tc.want)
		}
	}
}

func TestUnpackMappingAndMaxEntries(t *testing.T) {
	if b, tm := unpackMapping(5<<24 | 7); b != 5 || tm != 7 {
		t.Errorf("unpack: %d, %d", b, tm)
	}
	if b, tm := unpackMapping(^uint64(0)); b != 1<<40-1 || tm != 1<<24-1 {
		t.Errorf("unpack max: %d, %d", b, tm)
	}
	for vs, want := range map[int]uint32{8: 252, 24: 126, 16: 168, 4: 336} {
		if got := maxEntriesFor(vs); got != want {
			t.Errorf("max entries for value size %d: %d, want %d", vs, got, want)
		}
	}
}
