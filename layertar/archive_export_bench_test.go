package layertar

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// benchExportTrees is benchTree as a layer over an empty parent plus a
// copy whose files all changed, for ExportChanges and Changes.
func benchExportTrees(b *testing.B) (layer, parent string) {
	parent = benchTree(b)
	layer = filepath.Join(b.TempDir(), "layer")
	copyTree(b, parent, layer)
	for i := 0; i < 100; i += 2 {
		p := filepath.Join(layer, fmt.Sprintf("d%d/f%d", i%10, i))
		must(b, os.WriteFile(p, []byte("changed"), 0o644))
	}
	return layer, parent
}

func BenchmarkExportChanges(b *testing.B) {
	requireRoot(b)
	layer, parent := benchExportTrees(b)
	changes, err := Changes(layer, parent)
	must(b, err)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		rc, err := ExportChanges(layer, changes, IdentityMapping{})
		if err != nil {
			b.Fatal(err)
		}
		b.SetBytes(int64(len(readAllClose(b, rc))))
	}
}

func BenchmarkChanges(b *testing.B) {
	requireRoot(b)
	layer, parent := benchExportTrees(b)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := Changes(layer, parent); err != nil {
			b.Fatal(err)
		}
	}
}
