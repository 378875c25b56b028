package adapter_test

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"encoding/json"
	"os"
	"runtime"
	"slices"
	"testing"
	"time"
)

// An OCI image archive (an image layout in a tar), built by the test:
// what `ctr images import` reads, with no registry and no network.

// layerEntry is one entry of a layer's tar: a file (body), a directory
// (dir), a symlink (link) or a whiteout (a file named .wh.<name>).
type layerEntry struct {
	name string
	mode int64
	body []byte
	link string
	dir  bool
}

func layerFile(name string, mode int64, body []byte) layerEntry {
	return layerEntry{name: name, mode: mode, body: body}
}
func layerDir(name string) layerEntry { return layerEntry{name: name, mode: 0o755, dir: true} }
func layerLink(name, target string) layerEntry {
	return layerEntry{name: name, mode: 0o777, link: target}
}

// layerTar is an uncompressed layer tar of entries, in order.
func layerTar(t testing.TB, entries []layerEntry) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	mtime := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, e := range entries {
		h := &tar.Header{Name: e.name, Mode: e.mode, ModTime: mtime, Format: tar.FormatPAX}
		switch {
		case e.dir:
			h.Typeflag, h.Name = tar.TypeDir, e.name+"/"
		case e.link != "":
			h.Typeflag, h.Linkname = tar.TypeSymlink, e.link
		default:
			h.Typeflag, h.Size = tar.TypeReg, int64(len(e.body))
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(e.body); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

type descriptor struct {
	MediaType   string            `json:"mediaType"`
	Digest      string            `json:"digest"`
	Size        int64             `json:"size"`
	Annotations map[string]string `json:"annotations,omitempty"`
	Platform    map[string]string `json:"platform,omitempty"`
}

// ociArchive collects the blobs of an image layout.
type ociArchive struct {
	blobs map[string][]byte
	order []string
}

func (a *ociArchive) add(mediaType string, b []byte) descriptor {
	sum := sha256.Sum256(b)
	d := "sha256:" + hex.EncodeToString(sum[:])
	if _, ok := a.blobs[d]; !ok {
		a.blobs[d] = b
		a.order = append(a.order, d)
	}
	return descriptor{MediaType: mediaType, Digest: d, Size: int64(len(b))}
}

func (a *ociArchive) addJSON(t testing.TB, mediaType string, v any) descriptor {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return a.add(mediaType, b)
}

// writeOCIArchive writes an image archive holding one image, name, made
// of layers (bottom first), for this machine's platform, to path. It
// returns the layers' digests (uncompressed: the diff ids).
func writeOCIArchive(t testing.TB, path, name string, layers [][]layerEntry) []string {
	t.Helper()
	a := &ociArchive{blobs: map[string][]byte{}}
	var layerDescs []descriptor
	var diffIDs []string
	for _, entries := range layers {
		d := a.add("application/vnd.oci.image.layer.v1.tar", layerTar(t, entries))
		layerDescs = append(layerDescs, d)
		diffIDs = append(diffIDs, d.Digest)
	}
	config := a.addJSON(t, "application/vnd.oci.image.config.v1+json", map[string]any{
		"architecture": runtime.GOARCH,
		"os":           "linux",
		"config":       map[string]any{"Cmd": []string{"/bin/sh"}, "Env": []string{"PATH=/bin"}},
		"rootfs":       map[string]any{"type": "layers", "diff_ids": diffIDs},
	})
	manifest := a.addJSON(t, "application/vnd.oci.image.manifest.v1+json", map[string]any{
		"schemaVersion": 2,
		"mediaType":     "application/vnd.oci.image.manifest.v1+json",
		"config":        config,
		"layers":        layerDescs,
	})
	manifest.Annotations = map[string]string{"io.containerd.image.name": name, "org.opencontainers.image.ref.name": "latest"}
	manifest.Platform = map[string]string{"architecture": runtime.GOARCH, "os": "linux"}
	index, err := json.Marshal(map[string]any{"schemaVersion": 2, "manifests": []descriptor{manifest}})
	if err != nil {
		t.Fatal(err)
	}

	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	put := func(name string, b []byte) {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(b)), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(b); err != nil {
			t.Fatal(err)
		}
	}
	put("oci-layout", []byte(`{"imageLayoutVersion":"1.0.0"}`))
	put("index.json", index)
	for _, d := range a.order {
		put("blobs/sha256/"+d[len("sha256:"):], a.blobs[d])
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return diffIDs
}

// testImageLayers: a static busybox with its applets and an 8 MiB file
// below; above it a small file, a changed file and a whiteout.
func testImageLayers(t testing.TB) [][]layerEntry {
	t.Helper()
	const need = "the image needs a static busybox (Debian package busybox-static; make deps installs it)"
	bb, err := os.ReadFile("/bin/busybox")
	if err != nil {
		t.Fatalf("%s: %v", need, err)
	}
	if f, err := elf.NewFile(bytes.NewReader(bb)); err != nil || slices.ContainsFunc(f.Progs, func(p *elf.Prog) bool { return p.Type == elf.PT_INTERP }) {
		t.Fatalf("%s: /bin/busybox is not a static executable (%v)", need, err)
	}
	base := []layerEntry{layerDir("bin"), layerDir("etc"), layerDir("tmp"), layerDir("data"), layerDir("proc"), layerDir("sys"), layerDir("dev"), layerDir("root"),
		layerFile("bin/busybox", 0o755, bb)}
	for _, applet := range []string{"sh", "cat", "echo", "ls", "test", "rm", "wc"} {
		base = append(base, layerLink("bin/"+applet, "busybox"))
	}
	base = append(base,
		layerFile("etc/passwd", 0o644, []byte("root:x:0:0:root:/root:/bin/sh\n")),
		layerFile("etc/version", 0o644, []byte("layer 1\n")),
		layerFile("etc/gone", 0o644, []byte("removed by layer 2\n")),
		layerFile("data/big", 0o644, bytes.Repeat([]byte("layer one's bulk "), (8<<20)/17)))
	top := []layerEntry{layerDir("etc"),
		layerFile("etc/version", 0o644, []byte("layer 2\n")),
		layerFile("etc/.wh.gone", 0o644, nil),
		layerFile("etc/greeting", 0o644, []byte("hello from layer 2\n"))}
	return [][]layerEntry{base, top}
}
