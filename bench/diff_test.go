//go:build linux && cgo

package bench_test

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/docker/docker/pkg/archive"
	"github.com/thinlayer/thinlayer/compat/mobyhome"
	"golang.org/x/sys/unix"
)

// benchApplyDiff100 is an image build's step: the 100-file layer exported
// with Diff and piped straight into ApplyDiff of a new layer. Creating and
// removing the new layer is not timed.
func benchApplyDiff100(b *testing.B, e *env, name string) {
	d := e.driver(b, name)
	e.fixture(b, d, fxSrc100)
	want := src100Files()
	b.ResetTimer()
	for i := range b.N {
		b.StopTimer()
		id := e.id("apply")
		must(b, "create", d.Create(id, "", nil))
		b.StartTimer()
		rc, err := d.Diff("src100", "")
		must(b, "diff", err)
		_, err = d.ApplyDiff(id, "", rc)
		must(b, "apply diff", errors.Join(err, rc.Close()))
		b.StopTimer()
		if i == 0 {
			got, err := mobyhome.ReadFiles(d, id)
			must(b, "read back", err)
			if !maps.Equal(got, want) {
				b.Fatalf("%s: applied layer holds %d files, want the %d of src100", d.name, len(got), len(want))
			}
		}
		must(b, "remove", d.Remove(id))
		b.StartTimer()
	}
}

var bigTar = sync.OnceValue(func() []byte { return bigFileTar(64 << 20) })

// benchApplyDiff64M applies a layer of one 64 MiB file (from memory).
func benchApplyDiff64M(b *testing.B, e *env, name string) {
	d := e.driver(b, name)
	layer := bigTar()
	b.SetBytes(64 << 20)
	b.ResetTimer()
	for i := range b.N {
		b.StopTimer()
		id := e.id("big")
		must(b, "create", d.Create(id, "", nil))
		b.StartTimer()
		n, err := d.ApplyDiff(id, "", bytes.NewReader(layer))
		must(b, "apply diff", err)
		b.StopTimer()
		if n != 64<<20 {
			b.Fatalf("%s: ApplyDiff reports %d bytes, want %d", d.name, n, 64<<20)
		}
		if i == 0 {
			checkBigFile(b, d, id)
		}
		must(b, "remove", d.Remove(id))
		b.StartTimer()
	}
}

func checkBigFile(b *testing.B, d *driver, id string) {
	root, err := d.Get(id, "")
	must(b, "get", err)
	defer func() { must(b, "put", d.Put(id)) }()
	got, err := os.ReadFile(filepath.Join(root, "blob"))
	must(b, "read blob", err)
	tr := tar.NewReader(bytes.NewReader(bigTar()))
	_, _ = tr.Next()
	want, _ := io.ReadAll(tr)
	if sha256.Sum256(got) != sha256.Sum256(want) {
		b.Fatalf("%s: applied 64 MiB file differs from the layer's", d.name)
	}
}

// benchDiffBase exports a base layer (250 files) as a tar.
func benchDiffBase(b *testing.B, e *env, name string) {
	d := e.driver(b, name)
	e.fixture(b, d, fxBase)
	checkBaseTar(b, d)
	b.ResetTimer()
	for range b.N {
		rc, err := d.Diff(baseID, "")
		must(b, "diff", err)
		_, err = io.Copy(io.Discard, rc)
		must(b, "read diff", errors.Join(err, rc.Close()))
	}
}

// checkBaseTar reads the base layer's tar once and counts its files.
func checkBaseTar(b *testing.B, d *driver) {
	rc, err := d.Diff(baseID, "")
	must(b, "diff", err)
	defer rc.Close()
	tr := tar.NewReader(rc)
	n := 0
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		must(b, "read tar", err)
		if h.Typeflag == tar.TypeReg && h.Size == 4096 {
			n++
		}
	}
	if n != baseFiles {
		b.Fatalf("%s: Diff of %s has %d files of 4 KiB, want %d", d.name, baseID, n, baseFiles)
	}
}

// benchChanges lists what the child changed over the base layer.
func benchChanges(b *testing.B, e *env, name string) {
	d := e.driver(b, name)
	e.fixture(b, d, fxBase)
	checkChanges(b, d)
	b.ResetTimer()
	for range b.N {
		_, err := d.Changes(childID, baseID)
		must(b, "changes", err)
	}
}

func checkChanges(b *testing.B, d *driver) {
	cs, err := d.Changes(childID, baseID)
	must(b, "changes", err)
	// Files only (their names start with "f"): how directories show up
	// (mtime changes) is not what this scenario measures.
	kinds := map[archive.ChangeType]int{}
	var files []string
	for _, c := range cs {
		if strings.HasPrefix(filepath.Base(c.Path), "f") {
			kinds[c.Kind]++
			files = append(files, c.Path)
		}
	}
	want := map[archive.ChangeType]int{archive.ChangeModify: childChanged, archive.ChangeAdd: childChanged, archive.ChangeDelete: childChanged}
	if !maps.Equal(kinds, want) {
		slices.Sort(files)
		b.Fatalf("%s: changes of %s by kind %v, want %v: %v", d.name, childID, kinds, want, files)
	}
}

// benchDiffSize sizes what the child added or changed over the base layer.
func benchDiffSize(b *testing.B, e *env, name string) {
	d := e.driver(b, name)
	e.fixture(b, d, fxBase)
	want := int64(2 * childChanged * childFileBytes)
	b.ResetTimer()
	for range b.N {
		n, err := d.DiffSize(childID, baseID)
		must(b, "diff size", err)
		if n != want {
			b.Fatalf("%s: DiffSize = %d, want %d", d.name, n, want)
		}
	}
}

// benchReadChain reads a 4 MiB file written in the bottom layer through the
// top of a 20-deep chain, its page cache dropped before each read so that
// every read goes to the thin device.
func benchReadChain(b *testing.B, e *env, name string) {
	d := e.driver(b, name)
	e.fixture(b, d, fxChain)
	root, err := d.Get(chainTop(), "")
	must(b, "get", err)
	defer func() { must(b, "put", d.Put(chainTop())) }()
	path := filepath.Join(root, chainBlob)
	b.Logf("%s: read-ahead of the layer's device: %s KiB", d.name, readAheadKB(root))
	buf := make([]byte, chainBlobBytes)
	b.SetBytes(chainBlobBytes)
	b.ResetTimer()
	for range b.N {
		n, err := readUncached(path, buf)
		must(b, "read", err)
		if n != chainBlobBytes {
			b.Fatalf("%s: read %d bytes of %s, want %d", d.name, n, path, chainBlobBytes)
		}
	}
	b.StopTimer()
	if string(buf) != content(4, chainBlobBytes) {
		b.Fatalf("%s: file read through the chain differs from the one written", d.name)
	}
}

func readUncached(path string, buf []byte) (int, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	if err := unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED); err != nil {
		return 0, err
	}
	return io.ReadFull(f, buf)
}

// readAheadKB is the read-ahead the block device under dir is set to: it
// decides how many requests a cold sequential read takes.
func readAheadKB(dir string) string {
	var st unix.Stat_t
	if err := unix.Stat(dir, &st); err != nil {
		return err.Error()
	}
	b, err := os.ReadFile(fmt.Sprintf("/sys/dev/block/%d:%d/queue/read_ahead_kb", unix.Major(st.Dev), unix.Minor(st.Dev)))
	if err != nil {
		return err.Error()
	}
	return strings.TrimSpace(string(b))
}
