package dockerstore

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vbatts/tar-split/tar/asm"
	"github.com/vbatts/tar-split/tar/storage"

	"github.com/thinlayer/thinlayer/layertar"
)

// fixture is a Docker data root written as Docker 20.10 writes one: each
// layer's tar kept (want), its files extracted into a directory per
// cache-id (what the thin device holds), its tar-split record in layerdb.
type fixture struct {
	root, layers string
	tars         map[Digest][]byte // diff id → the layer tar docker loaded
	cacheIDs     map[Digest]string // chain id → cache-id
	plainDiffs   int
}

type member struct {
	name, body, link string
	typ              byte
	mode             int64
}

func newFixture(t *testing.T) *fixture {
	root := t.TempDir()
	for _, d := range []string{"image/devicemapper/imagedb/content/sha256", "image/devicemapper/layerdb/sha256", "containers"} {
		must(t, os.MkdirAll(filepath.Join(root, d), 0o700))
	}
	return &fixture{root: root, layers: t.TempDir(), tars: map[Digest][]byte{}, cacheIDs: map[Digest]string{}}
}

func (f *fixture) store() string { return filepath.Join(f.root, "image/devicemapper") }

func tarOf(t *testing.T, ms []member) []byte {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, m := range ms {
		h := &tar.Header{Name: m.name, Mode: m.mode | 0o644, ModTime: time.Unix(1700000000, 0), Typeflag: m.typ, Linkname: m.link, Size: int64(len(m.body)), Format: tar.FormatPAX}
		if m.typ == 0 {
			h.Typeflag = tar.TypeReg
		}
		if h.Typeflag != tar.TypeReg {
			h.Size = 0
		}
		if h.Typeflag == tar.TypeDir {
			h.Mode = 0o755
		}
		must(t, tw.WriteHeader(h))
		_, err := tw.Write([]byte(m.body))
		must(t, err)
	}
	must(t, tw.Close())
	return buf.Bytes()
}

// addLayer writes layer chain's layerdb entry from tarBytes, and its
// files into its cache directory.
func (f *fixture) addLayer(t *testing.T, parent Digest, tarBytes []byte, withTarSplit bool) (chain, diff Digest) {
	diff = DigestOf(tarBytes)
	chain = diff
	if parent != "" {
		chain = ChainIDs([]Digest{parent, diff})[1]
	}
	f.tars[diff] = tarBytes
	cacheID := strings.Repeat(fmt.Sprintf("%x", len(f.cacheIDs)+1), 64)[:64]
	f.cacheIDs[chain] = cacheID
	dir := filepath.Join(f.store(), layerDir(chain))
	must(t, os.MkdirAll(dir, 0o700))
	write := func(name, s string) { must(t, os.WriteFile(filepath.Join(dir, name), []byte(s), 0o600)) }
	write("diff", string(diff))
	write("cache-id", cacheID)
	write("size", "123")
	if parent != "" {
		write("parent", string(parent))
	}
	var rec bytes.Buffer
	zw := gzip.NewWriter(&rec)
	r, err := asm.NewInputTarStream(bytes.NewReader(tarBytes), storage.NewJSONPacker(zw), storage.NewDiscardFilePutter())
	must(t, err)
	_, err = io.Copy(io.Discard, r)
	must(t, err)
	must(t, zw.Close())
	if withTarSplit {
		write("tar-split.json.gz", rec.String())
	}
	extract(t, tarBytes, filepath.Join(f.layers, cacheID))
	return chain, diff
}

func extract(t *testing.T, b []byte, dir string) {
	must(t, os.MkdirAll(dir, 0o755))
	tr := tar.NewReader(bytes.NewReader(b))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return
		}
		must(t, err)
		p := filepath.Join(dir, h.Name)
		switch h.Typeflag {
		case tar.TypeDir:
			must(t, os.MkdirAll(p, 0o755))
		case tar.TypeReg:
			body, _ := io.ReadAll(tr)
			must(t, os.WriteFile(p, body, 0o644))
		case tar.TypeSymlink:
			must(t, os.Symlink(h.Linkname, p))
		case tar.TypeLink:
			must(t, os.Link(filepath.Join(dir, h.Linkname), p))
		}
	}
}

// addImage writes an image config over diffIDs and returns its id.
func (f *fixture) addImage(t *testing.T, created string, diffIDs ...Digest) Digest {
	raw, err := json.Marshal(map[string]any{"architecture": "amd64", "os": "linux", "created": created,
		"config": map[string]any{"Cmd": []string{"/bin/sh"}}, "rootfs": map[string]any{"type": "layers", "diff_ids": diffIDs}})
	must(t, err)
	id := DigestOf(raw)
	must(t, os.WriteFile(filepath.Join(f.store(), "imagedb/content/sha256", id.Hex()), raw, 0o600))
	return id
}

func (f *fixture) setRepos(t *testing.T, repos map[string]map[string]Digest) {
	b, err := json.Marshal(map[string]any{"Repositories": repos})
	must(t, err)
	must(t, os.WriteFile(filepath.Join(f.store(), "repositories.json"), b, 0o600))
}

// Files and PlainDiff make the fixture the LayerSource.
func (f *fixture) Files(cacheID string) (FileOpener, func() error, error) {
	r, err := layertar.OpenLayerRoot(filepath.Join(f.layers, cacheID))
	if err != nil {
		return nil, nil, err
	}
	return r, r.Close, nil
}

func (f *fixture) PlainDiff(cacheID, parent string) (io.ReadCloser, error) {
	f.plainDiffs++
	return layertar.TarTree(filepath.Join(f.layers, cacheID), layertar.IdentityMapping{})
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// readArchive gives an archive's members by name.
func readArchive(t *testing.T, b []byte) map[string][]byte {
	m := map[string][]byte{}
	tr := tar.NewReader(bytes.NewReader(b))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return m
		}
		must(t, err)
		m[h.Name], _ = io.ReadAll(tr)
	}
}
