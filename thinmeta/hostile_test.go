package thinmeta_test

import (
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/thinlayer/thinlayer/devmapper"
	"github.com/thinlayer/thinlayer/thinmeta"
)

const (
	btreeSalt      = 121107
	superblockSalt = 160774
)

func (img rawImage) put64(b uint64, off int, v uint64) {
	binary.LittleEndian.PutUint64(img.block(b)[off:], v)
}

func (img rawImage) put32(b uint64, off int, v uint32) {
	binary.LittleEndian.PutUint32(img.block(b)[off:], v)
}

// TestHostileMetadata damages a real image in ways a checksum cannot catch
// (each block resealed) and requires every reader to fail cleanly, naming
// the block, and Check to report it — no panic, no endless walk.
func TestHostileMetadata(t *testing.T) {
	clean := rawImage(readTestdata(t, "mixed.meta.gz"))
	k := clean.blockKinds(t)
	internal, leaf, details, top := k["mapping internal node"], k["mapping leaf"], k["device details node"], k["mapping top-level node"]
	cases := []struct {
		name  string
		block uint64 // the block the error must name
		bad   func(img rawImage)
	}{
		{"cycle: a child points back to its parent", internal, func(img rawImage) {
			img.put64(internal, 32+8*int(binary.LittleEndian.Uint32(img.block(internal)[20:]))+8, internal)
			img.reseal(internal, btreeSalt)
		}},
		{"cycle the key ranges allow: a one-entry root is its own child", internal, func(img rawImage) {
			img.put32(internal, 16, 1)
			img.put64(internal, 32+8*int(binary.LittleEndian.Uint32(img.block(internal)[20:])), internal)
			img.reseal(internal, btreeSalt)
		}},
		{"leaf keys out of order", leaf, func(img rawImage) {
			k0, k1 := img.u64(leaf, 32), img.u64(leaf, 40)
			img.put64(leaf, 32, k1)
			img.put64(leaf, 40, k0)
			img.reseal(leaf, btreeSalt)
		}},
		{"leaf key outside its parent's range", leaf, func(img rawImage) {
			n := binary.LittleEndian.Uint32(img.block(leaf)[16:])
			img.put64(leaf, 32+8*int(n-1), 1<<40)
			img.reseal(leaf, btreeSalt)
		}},
		{"more entries than max", leaf, func(img rawImage) {
			img.put32(leaf, 16, 1000)
			img.reseal(leaf, btreeSalt)
		}},
		{"max entries too large for the block", leaf, func(img rawImage) {
			img.put32(leaf, 20, 600)
			img.reseal(leaf, btreeSalt)
		}},
		{"details with the wrong value size", details, func(img rawImage) {
			img.put32(details, 24, 8)
			img.reseal(details, btreeSalt)
		}},
		{"bad node flags", top, func(img rawImage) {
			img.put32(top, 4, 3)
			img.reseal(top, btreeSalt)
		}},
		{"child beyond the end of the metadata", internal, func(img rawImage) {
			img.put64(internal, 32+8*int(binary.LittleEndian.Uint32(img.block(internal)[20:])), 1<<40)
			img.reseal(internal, btreeSalt)
		}},
		{"mapping to a data block beyond the pool", leaf, func(img rawImage) {
			v := img.nodeValue(leaf, 0, 8)
			binary.LittleEndian.PutUint64(v, (1<<39)<<24)
			img.reseal(leaf, btreeSalt)
		}},
		{"internal node posing as a leaf", internal, func(img rawImage) {
			img.put32(internal, 4, 2)
			img.reseal(internal, btreeSalt)
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			img := rawImage(append([]byte(nil), clean...))
			tc.bad(img)
			m := openImage(t, img)
			requireCorrupt(t, "DevicesWithUsage", tc.block, devicesErr(m))
			probs := m.Check()
			if !hasProblem(probs, tc.block) {
				t.Errorf("Check does not name block %d: %v", tc.block, probs)
			}
		})
	}
}

func devicesErr(m *thinmeta.Metadata) error {
	if _, err := m.Devices(); err != nil {
		return err
	}
	for _, id := range []devmapper.ThinID{2, 3, 4, 6, 7, 8} {
		if err := m.Mappings(id, func(thinmeta.Mapping) error { return nil }); err != nil {
			return err
		}
	}
	_, err := m.DevicesWithUsage()
	return err
}

func hasProblem(probs []thinmeta.Problem, b uint64) bool {
	for _, p := range probs {
		if p.Block == b && !p.Data {
			return true
		}
	}
	return false
}

func requireCorrupt(t *testing.T, what string, b uint64, err error) {
	t.Helper()
	var be *thinmeta.BlockError
	switch {
	case err == nil:
		t.Errorf("%s: no error", what)
	case !errors.Is(err, thinmeta.ErrCorrupt) && !errors.Is(err, thinmeta.ErrChecksum):
		t.Errorf("%s: %v, want ErrCorrupt", what, err)
	case !errors.As(err, &be) || be.Block != b:
		t.Errorf("%s: %v does not name block %d", what, err, b)
	default:
		t.Logf("%s: %v", what, err)
	}
}

func openImage(t *testing.T, img []byte) *thinmeta.Metadata {
	t.Helper()
	m, err := thinmeta.Open(writeImage(t, img))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

func writeImage(t testing.TB, img []byte) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "metadata")
	if err := os.WriteFile(path, img, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestHostileSuperblock: Open refuses what it cannot trust.
func TestHostileSuperblock(t *testing.T) {
	clean := rawImage(readTestdata(t, "mixed.meta.gz"))
	cases := []struct {
		name string
		img  func() []byte
		want error
	}{
		{"empty file", func() []byte { return nil }, thinmeta.ErrCorrupt},
		{"zeros", func() []byte { return make([]byte, 1<<20) }, thinmeta.ErrNotThinMetadata},
		{"truncated to the superblock", func() []byte { return clean[:4096] }, thinmeta.ErrCorrupt},
		{"bit flipped", func() []byte {
			img := rawImage(append([]byte(nil), clean...))
			img.block(0)[200] ^= 1
			return img
		}, thinmeta.ErrChecksum},
		{"more data blocks than bitmaps could count", func() []byte {
			img := rawImage(append([]byte(nil), clean...))
			img.put64(0, 64, 1<<50)
			img.reseal(0, superblockSalt)
			return img
		}, thinmeta.ErrCorrupt},
		{"unknown version", func() []byte {
			img := rawImage(append([]byte(nil), clean...))
			img.put32(0, 40, 9)
			img.reseal(0, superblockSalt)
			return img
		}, thinmeta.ErrCorrupt},
		{"metadata block size not 4 KiB", func() []byte {
			img := rawImage(append([]byte(nil), clean...))
			img.put32(0, 340, 16)
			img.reseal(0, superblockSalt)
			return img
		}, thinmeta.ErrCorrupt},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m, err := thinmeta.Open(writeImage(t, tc.img()))
			if err == nil {
				m.Close()
				t.Fatal("Open succeeds")
			}
			if !errors.Is(err, tc.want) {
				t.Fatalf("Open: %v, want %v", err, tc.want)
			}
			var be *thinmeta.BlockError
			if !errors.As(err, &be) || be.Block != 0 {
				t.Fatalf("Open: %v does not name block 0", err)
			}
			t.Logf("Open: %v", err)
		})
	}
}
