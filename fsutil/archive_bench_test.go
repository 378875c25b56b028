package fsutil

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
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

// TestSyscallProbe runs only when FSUTIL_PROBE is "apply:N" or "tar:N":
// N applies (or tars) of benchTree's layer, for counting syscalls with
// strace -c -f; the difference between two values of N, divided by their
// difference and by 110 entries, leaves the setup out. It leaves its
// applied trees in a temporary directory, whose removal would be counted
// too.
func TestSyscallProbe(t *testing.T) {
	what, n, ok := strings.Cut(os.Getenv("FSUTIL_PROBE"), ":")
	if !ok {
		t.Skip("set FSUTIL_PROBE=apply:N or tar:N")
	}
	runs, err := strconv.Atoi(n)
	must(t, err)
	const maxRuns = 32
	dir := t.TempDir()
	body := string(bytes.Repeat([]byte("x"), 4096))
	for i := 0; i < 100; i++ {
		mkNode(t, dir, node{path: fmt.Sprintf("d%d/f%d", i%10, i), kind: unix.S_IFREG, mode: 0o644, body: body})
	}
	rc, err := TarTree(dir, IdentityMapping{})
	must(t, err)
	data := readAllClose(t, rc)
	// Not t.TempDir: its cleanup would count N times. The caller removes it.
	work, err := os.MkdirTemp("", "fsutil-probe-")
	must(t, err)
	for i := 0; i < maxRuns; i++ {
		must(t, os.Mkdir(filepath.Join(work, strconv.Itoa(i)), 0o755))
	}
	for i := 0; i < runs && i < maxRuns; i++ {
		switch what {
		case "apply":
			_, err = ApplyLayer(filepath.Join(work, strconv.Itoa(i)), bytes.NewReader(data), ApplyOptions{})
			must(t, err)
		case "tar":
			rc, err := TarTree(dir, IdentityMapping{})
			must(t, err)
			_, err = io.Copy(io.Discard, rc)
			must(t, err)
			must(t, rc.Close())
		}
	}
}
