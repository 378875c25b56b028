package devmapper_test

import (
	"os"
	"os/exec"
	"testing"

	dm "github.com/thinlayer/thinlayer/devmapper"
)

func open(t testing.TB) *dm.Control {
	t.Helper()
	c, err := dm.Open()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func mkfs(t testing.TB, fs, dev string) {
	t.Helper()
	out, err := exec.Command("mkfs."+fs, dev).CombinedOutput()
	if err != nil {
		t.Fatalf("mkfs.%s %s: %v\n%s", fs, dev, err, out)
	}
}

func writeAt(t testing.TB, path string, off int64, b []byte) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_SYNC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}

func readAt(t testing.TB, path string, off int64, n int) []byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, n)
	if _, err := f.ReadAt(b, off); err != nil {
		t.Fatal(err)
	}
	return b
}
