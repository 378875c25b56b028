package thinmeta_test

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

	"github.com/thinlayer/thinlayer/thinmeta"
)

// Fixtures: small metadata images made by the kernel, kept gzipped in
// testdata with what thin_dump and thin_ls said about them when they were
// made. TestWriteFixtures remakes them (go test -tags thinmeta_fixtures);
// TestFixtures reads them without a kernel.

var fixtures = []struct {
	name     string
	build    func(p *testPool)
	metaSize int64 // 0: newPool's default
}{
	{"empty", func(p *testPool) {}, 0},
	{"mixed", buildMixed, 0},
	{"refcounts", buildRefcounts, 0},
	{"held", buildHeld, 0},
	// 10 000 devices take a minute to build in UML: built once, here.
	{"many", func(p *testPool) { buildMany(p, manyDevices) }, 16 << 20},
}

// zeroFree zeroes the blocks the metadata space map counts 0.
func zeroFree(t *testing.T, img rawImage) {
	const metaSM, perBitmap = 192, (4096 - 16) * 4
	nr := img.u64(0, metaSM)
	index := img.u64(0, metaSM+16)
	zeroed := 0
	for b := uint64(0); b < nr; b++ {
		bitmap := img.u64(index, 16+16*int(b/perBitmap))
		if img.bitmapCount(bitmap, int(b%perBitmap)) == 0 {
			clear(img.block(b))
			zeroed++
		}
	}
	t.Logf("zeroed %d free blocks of %d", zeroed, nr)
}

func writeGz(t *testing.T, name string, data []byte) {
	var buf bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	zw.Write(data)
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	writeFile(t, name, buf.Bytes())
}

func writeFile(t *testing.T, name string, data []byte) {
	if err := os.WriteFile(filepath.Join("testdata", name), data, 0o644); err != nil {
		t.Fatal(err)
	}
}

func readTestdata(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	if filepath.Ext(name) != ".gz" {
		return b
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

// fixtureFile unpacks a fixture image into a temporary file, streaming:
// memory is dear under User-Mode Linux, where every page fault traps.
func fixtureFile(t testing.TB, name string) string {
	t.Helper()
	in, err := os.Open(filepath.Join("testdata", name+".meta.gz"))
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	zr, err := gzip.NewReader(in)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), name+".meta")
	out, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, zr); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}

func openFixture(t testing.TB, name string) *thinmeta.Metadata {
	t.Helper()
	m, err := thinmeta.Open(fixtureFile(t, name))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

func recordedDump(t *testing.T, name string) dumpXML {
	var d dumpXML
	if err := xml.Unmarshal(readTestdata(t, name), &d); err != nil {
		t.Fatal(err)
	}
	return d
}

// TestFixtures compares each fixture with what the judges recorded.
func TestFixtures(t *testing.T) {
	for _, fx := range fixtures {
		t.Run(fx.name, func(t *testing.T) {
			m := openFixture(t, fx.name)
			compareWithDump(t, m, recordedDump(t, fx.name+".dump.xml.gz"))
			rows, err := parseLs(readTestdata(t, fx.name+".ls.txt.gz"))
			if err != nil {
				t.Fatal(err)
			}
			compareUsage(t, m, rows)
			expectClean(t, m)
		})
	}
}

// TestFixtureHeldSnapshot reads the snapshot an inactive pool still holds.
func TestFixtureHeldSnapshot(t *testing.T) {
	file := fixtureFile(t, "held")
	m, err := thinmeta.OpenSnapshot(file)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	sb := m.Superblock()
	if !sb.Snapshot || sb.HeldRoot == 0 {
		t.Fatalf("superblock %+v: want a snapshot", sb)
	}
	dump := recordedDump(t, "held.dump-snap.xml.gz")
	dump.NrDataBlocks = sb.NrDataBlocks // a snapshot records no space maps: thin_dump -m says 0
	compareWithDump(t, m, dump)
	expectClean(t, m)
	if _, err := thinmeta.OpenSnapshot(fixtureFile(t, "mixed")); !errors.Is(err, thinmeta.ErrNoSnapshot) {
		t.Fatalf("OpenSnapshot without a held root: %v, want ErrNoSnapshot", err)
	}
}

// TestFixtureRefcountTrees makes sure the refcounts fixture really puts
// counts above 2 in both space maps' ref count trees, so TestFixtures
// checks the path through them.
func TestFixtureRefcountTrees(t *testing.T) {
	img := rawImage(readTestdata(t, "refcounts.meta.gz"))
	for _, sm := range []struct {
		name string
		off  int
	}{{"data", 64}, {"metadata", 192}} {
		root := img.u64(0, sm.off+24)
		if n := binary.LittleEndian.Uint32(img.block(root)[16:]); n == 0 {
			t.Errorf("%s space map's ref count tree (block %d) is empty", sm.name, root)
		}
	}
}
