package layertar

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// benchTree makes 100 files of 4 KiB in 10 directories.
func benchTree(b *testing.B) string {
	dir := b.TempDir()
	body := string(bytes.Repeat([]byte("x"), 4096))
	for i := 0; i < 100; i++ {
		mkNode(b, dir, node{path: fmt.Sprintf("d%d/f%d", i%10, i), kind: unix.S_IFREG, mode: 0o644, body: body})
	}
	return dir
}

func BenchmarkApplyLayer100Files(b *testing.B) {
	requireRoot(b)
	rc, err := TarTree(benchTree(b), IdentityMapping{})
	must(b, err)
	data := readAllClose(b, rc)
	work := b.TempDir()
	b.SetBytes(int64(len(data)))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		dst := filepath.Join(work, "dst")
		must(b, os.RemoveAll(dst))
		must(b, os.Mkdir(dst, 0o755))
		b.StartTimer()
		if _, err := ApplyLayer(dst, bytes.NewReader(data), ApplyOptions{}); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkTarTree(b *testing.B) {
	requireRoot(b)
	dir := benchTree(b)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		rc, err := TarTree(dir, IdentityMapping{})
		if err != nil {
			b.Fatal(err)
		}
		b.SetBytes(int64(len(readAllClose(b, rc))))
	}
}
