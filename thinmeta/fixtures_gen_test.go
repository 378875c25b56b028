//go:build thinmeta_fixtures

package thinmeta_test

import (
	"os"
	"testing"

	"github.com/thinlayer/thinlayer/testutil"
)

// TestWriteFixtures remakes testdata from pools built in the kernel:
//
//	go test -tags thinmeta_fixtures -run TestWriteFixtures -timeout 20m ./thinmeta
func TestWriteFixtures(t *testing.T) {
	for _, fx := range fixtures {
		t.Run(fx.name, func(t *testing.T) {
			p := newPool(t, testutil.PoolOptions{DataSize: 1 << 30, MetadataSize: fx.metaSize})
			fx.build(p)
			p.stop()
			img, err := os.ReadFile(p.MetadataFile)
			if err != nil {
				t.Fatal(err)
			}
			// Free blocks keep stale contents no reader looks at; zeroed
			// they compress to nothing. The judges below see this image.
			zeroFree(t, rawImage(img))
			if err := os.WriteFile(p.MetadataFile, img, 0o600); err != nil {
				t.Fatal(err)
			}
			writeGz(t, fx.name+".meta.gz", img)
			writeGz(t, fx.name+".dump.xml.gz", runTool(t, "thin_dump", p.Metadata.Path))
			writeGz(t, fx.name+".ls.txt.gz", runTool(t, "thin_ls", "--no-headers", "-o", lsFields, p.Metadata.Path))
			if fx.name == "held" {
				writeGz(t, fx.name+".dump-snap.xml.gz", runTool(t, "thin_dump", "-m", p.Metadata.Path))
			}
			if out, ok := thinCheck(p.Metadata.Path); !ok {
				t.Errorf("thin_check fails on fixture %s:\n%s", fx.name, out)
			}
		})
	}
}
