package fsutil

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"io"
	"regexp"
	"testing"
)

var testUUID = [16]byte{0xde, 0xad, 0xbe, 0xef, 0x01, 0x23, 0x45, 0x67,
	0x89, 0xab, 0xcd, 0xef, 0x00, 0x11, 0x22, 0x33}

const testUUIDString = "deadbeef-0123-4567-89ab-cdef00112233"

// extFeatures selects the feature words of a synthetic ext superblock.
type extFeatures struct {
	compat, incompat, roCompat, flags uint32
}

// synthExt builds the first 2 KiB of an ext image with the given
// features; metadata_csum images get a valid checksum unless badCsum.
func synthExt(f extFeatures, label string, badCsum bool) []byte {
	img := make([]byte, 2048)
	sb := img[extSBOffset:]
	le := binary.LittleEndian
	le.PutUint16(sb[extOffMagic:], extMagic)
	le.PutUint32(sb[extOffCompat:], f.compat)
	le.PutUint32(sb[extOffIncompat:], f.incompat)
	le.PutUint32(sb[extOffROCompat:], f.roCompat)
	le.PutUint32(sb[extOffFlags:], f.flags)
	copy(sb[extOffUUID:], testUUID[:])
	copy(sb[extOffName:extOffName+extNameLen], label)
	sum := ^crc32.Checksum(sb[:extOffChecksum], castagnoli)
	if badCsum {
		sum++
	}
	le.PutUint32(sb[extOffChecksum:], sum)
	return img
}

// synthXFS builds an XFS superblock sector of the given version; v5 gets a
// valid CRC unless badCRC.
func synthXFS(version uint16, label string, badCRC bool) []byte {
	sb := make([]byte, xfsSBLen)
	be := binary.BigEndian
	copy(sb, xfsMagic)
	be.PutUint32(sb[xfsOffBlock:], 4096)
	copy(sb[xfsOffUUID:], testUUID[:])
	be.PutUint32(sb[xfsOffAgBlocks:], 16384)
	be.PutUint32(sb[xfsOffAgCount:], 4)
	be.PutUint16(sb[xfsOffVersion:], 0xb4a0|version)
	be.PutUint16(sb[xfsOffSectSize:], 512)
	be.PutUint16(sb[xfsOffInoSize:], 512)
	copy(sb[xfsOffName:xfsOffName+xfsNameLen], label)
	sum := crc32.Checksum(sb, castagnoli)
	if badCRC {
		sum++
	}
	binary.LittleEndian.PutUint32(sb[xfsOffCRC:], sum)
	return sb
}

// synthBtrfs builds an image holding a btrfs primary superblock.
func synthBtrfs(label string, bytenr uint64, badCsum bool) []byte {
	img := make([]byte, btrfsSBOffset+btrfsSBLen)
	sb := img[btrfsSBOffset:]
	copy(sb[btrfsOffFSID:], testUUID[:])
	binary.LittleEndian.PutUint64(sb[btrfsOffBytenr:], bytenr)
	copy(sb[btrfsOffMagic:], btrfsMagic)
	copy(sb[btrfsOffLabel:], label)
	sum := crc32.Checksum(sb[btrfsOffFSID:], castagnoli)
	if badCsum {
		sum++
	}
	binary.LittleEndian.PutUint32(sb, sum)
	return img
}

func TestProbeFilesystemSynthetic(t *testing.T) {
	const (
		journal    = extCompatJournl
		filetype   = 0x0002
		recover    = 0x0004
		extents    = 0x0040
		bit64      = 0x0080
		flexBG     = 0x0200
		sparse     = 0x0001
		hugeFile   = 0x0008
		metaCsum   = extROMetaCsum
		journalDev = extIncJournDev
	)
	tests := []struct {
		name string
		img  []byte
		want FSInfo
	}{
		{"ext2", synthExt(extFeatures{0, filetype, sparse, 0}, "two", false),
			FSInfo{"ext2", testUUIDString, "two"}},
		{"ext3", synthExt(extFeatures{journal, filetype | recover, sparse, 0}, "", false),
			FSInfo{"ext3", testUUIDString, ""}},
		{"ext4 extents", synthExt(extFeatures{journal, filetype | extents, sparse, 0}, "four", false),
			FSInfo{"ext4", testUUIDString, "four"}},
		{"ext4 64bit", synthExt(extFeatures{journal, bit64, 0, 0}, "", false),
			FSInfo{"ext4", testUUIDString, ""}},
		{"ext4 flex_bg", synthExt(extFeatures{journal, flexBG, 0, 0}, "", false),
			FSInfo{"ext4", testUUIDString, ""}},
		{"ext4 no journal", synthExt(extFeatures{0, extents, 0, 0}, "", false),
			FSInfo{"ext4", testUUIDString, ""}},
		{"ext4 ro_compat only", synthExt(extFeatures{journal, 0, hugeFile, 0}, "", false),
			FSInfo{"ext4", testUUIDString, ""}},
		{"ext4 metadata_csum", synthExt(extFeatures{journal, extents, metaCsum, 0}, "c", false),
			FSInfo{"ext4", testUUIDString, "c"}},
		{"ext4dev", synthExt(extFeatures{journal, extents, 0, extFlagTestFS}, "", false),
			FSInfo{"ext4dev", testUUIDString, ""}},
		{"jbd", synthExt(extFeatures{0, journalDev, 0, 0}, "", false),
			FSInfo{"jbd", testUUIDString, ""}},
		{"label full and space padded", synthExt(extFeatures{}, "0123456789abcdef", false),
			FSInfo{"ext2", testUUIDString, "0123456789abcdef"}},
		{"label trailing spaces", synthExt(extFeatures{}, "name   ", false),
			FSInfo{"ext2", testUUIDString, "name"}},
		{"xfs v4", synthXFS(4, "xl", false), FSInfo{"xfs", testUUIDString, "xl"}},
		{"xfs v5", synthXFS(5, "twelve-chars", false), FSInfo{"xfs", testUUIDString, "twelve-chars"}},
		{"xfs v4 ignores crc field", synthXFS(4, "", true), FSInfo{"xfs", testUUIDString, ""}},
		{"btrfs", synthBtrfs("bl", btrfsSBOffset, false), FSInfo{"btrfs", testUUIDString, "bl"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ProbeFilesystem(bytes.NewReader(tt.img))
			if err != nil {
				t.Fatalf("ProbeFilesystem: %v", err)
			}
			if got != tt.want {
				t.Fatalf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestProbeFilesystemRejects(t *testing.T) {
	zeroUUIDExt := synthExt(extFeatures{}, "", false)
	clear(zeroUUIDExt[extSBOffset+extOffUUID : extSBOffset+extOffUUID+16])
	badXFSGeometry := synthXFS(4, "", false)
	binary.BigEndian.PutUint32(badXFSGeometry[xfsOffBlock:], 4095)
	xfsMagicOnly := append([]byte(xfsMagic), make([]byte, 4096)...)
	tests := []struct {
		name string
		img  []byte
	}{
		{"empty", nil},
		{"one byte", []byte{0}},
		{"short ext", make([]byte, extSBOffset+extOffMagic+2)},
		{"zeros 4KiB", make([]byte, 4096)},
		{"zeros 128KiB", make([]byte, 128<<10)},
		{"ones 128KiB", bytes.Repeat([]byte{0xff}, 128<<10)},
		{"xfs magic only", xfsMagicOnly},
		{"xfs bad geometry", badXFSGeometry},
		{"xfs v5 bad crc", synthXFS(5, "", true)},
		{"xfs truncated", synthXFS(4, "", false)[:200]},
		{"ext4 bad metadata_csum", synthExt(extFeatures{0, 0, extROMetaCsum, 0}, "", true)},
		{"ext no journal with recover", synthExt(extFeatures{0, 0x0004, 0, 0}, "", false)},
		{"ext truncated", synthExt(extFeatures{}, "", false)[:1500]},
		{"btrfs wrong bytenr", synthBtrfs("", 0, false)},
		{"btrfs bad csum", synthBtrfs("", btrfsSBOffset, true)},
		{"btrfs truncated", synthBtrfs("", btrfsSBOffset, false)[:btrfsSBOffset+0x100]},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ProbeFilesystem(bytes.NewReader(tt.img))
			if !errors.Is(err, ErrNoFilesystem) {
				t.Fatalf("got %+v, %v; want ErrNoFilesystem", got, err)
			}
		})
	}
	t.Run("zero uuid", func(t *testing.T) {
		got, err := ProbeFilesystem(bytes.NewReader(zeroUUIDExt))
		if err != nil || got.UUID != "" || got.Type != "ext2" {
			t.Fatalf("got %+v, %v; want ext2 with empty UUID", got, err)
		}
	})
}

// failingReader fails every read with errIO.
type failingReader struct{}

var errIO = errors.New("injected I/O error")

func (failingReader) ReadAt([]byte, int64) (int, error) { return 0, errIO }

func TestProbeFilesystemReadError(t *testing.T) {
	_, err := ProbeFilesystem(failingReader{})
	if !errors.Is(err, errIO) || errors.Is(err, ErrNoFilesystem) {
		t.Fatalf("got %v, want the read error", err)
	}
}

func TestProbeDeviceErrors(t *testing.T) {
	if _, err := ProbeDevice("/nonexistent/thinlayer/dev"); err == nil || errors.Is(err, ErrNoFilesystem) {
		t.Fatalf("missing device: got %v", err)
	}
	empty := sparseImage(t, "empty.img", 1<<20)
	_, err := ProbeDevice(empty)
	if !errors.Is(err, ErrNoFilesystem) {
		t.Fatalf("empty image: got %v, want ErrNoFilesystem", err)
	}
	if !bytes.Contains([]byte(err.Error()), []byte(empty)) {
		t.Fatalf("error %q does not name %s", err, empty)
	}
}

var canonicalUUID = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)

func FuzzProbeFilesystem(f *testing.F) {
	f.Add([]byte{})
	f.Add(make([]byte, 2048))
	f.Add(synthExt(extFeatures{extCompatJournl, 0x40, extROMetaCsum, 0}, "f", false))
	f.Add(synthExt(extFeatures{0, extIncJournDev, 0, 0}, "", false))
	f.Add(synthXFS(5, "fuzz", false))
	f.Add(synthXFS(4, "", false)[:300])
	f.Add(synthBtrfs("b", btrfsSBOffset, false))
	for _, fx := range fsFixtures {
		if img, err := readFixture(fx.file); err == nil {
			f.Add(img[:min(len(img), 8192)])
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		info, err := ProbeFilesystem(bytes.NewReader(data))
		if err != nil {
			if !errors.Is(err, ErrNoFilesystem) {
				t.Fatalf("unexpected error from an in-memory reader: %v", err)
			}
			return
		}
		if info.Type == "" {
			t.Fatalf("no type: %+v", info)
		}
		if info.UUID != "" && !canonicalUUID.MatchString(info.UUID) {
			t.Fatalf("non-canonical UUID %q", info.UUID)
		}
	})
}

// Ensure failingReader satisfies io.ReaderAt.
var _ io.ReaderAt = failingReader{}
