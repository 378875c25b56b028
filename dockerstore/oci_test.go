package dockerstore

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"io"
	"slices"
	"testing"
	"time"
)

// TestSaveOCI: --oci's layout has the same layer bytes and configs as the
// docker-save archive, each blob named by its digest, an index naming
// every tag (as containerd and Docker normalize it) and a manifest.json
// into the blobs.
func TestSaveOCI(t *testing.T) {
	f := newFixture(t)
	img1, img2, _ := twoImages(t, f, true)
	b, rep, err := saveAllAs(t, f, OCIArchive)
	must(t, err)
	members := readArchive(t, b)
	if string(members["oci-layout"]) != `{"imageLayoutVersion":"1.0.0"}` {
		t.Errorf("oci-layout: %q", members["oci-layout"])
	}
	blob := func(d Digest) []byte {
		t.Helper()
		raw, ok := members[blobName(d)]
		if !ok || DigestOf(raw) != d {
			t.Fatalf("blob %s: in archive %v, digest %s", d.Short(), ok, DigestOf(raw).Short())
		}
		return raw
	}
	for diff, tarBytes := range f.tars {
		if !bytes.Equal(blob(diff), tarBytes) {
			t.Errorf("layer %s is not the loaded tar", diff.Short())
		}
	}
	var index ociIndex
	must(t, json.Unmarshal(members["index.json"], &index))
	names := map[string]Digest{}
	for _, desc := range index.Manifests {
		var m ociManifest
		must(t, json.Unmarshal(blob(desc.Digest), &m))
		if desc.MediaType != MediaTypeOCIManifest || m.MediaType != MediaTypeOCIManifest || desc.Size != int64(len(blob(desc.Digest))) {
			t.Errorf("manifest %s: %+v", desc.Digest.Short(), desc)
		}
		if desc.Platform == nil || desc.Platform.OS != "linux" || desc.Platform.Architecture != "amd64" {
			t.Errorf("manifest %s platform %+v", desc.Digest.Short(), desc.Platform)
		}
		img, err := ParseImage(m.Config.Digest, blob(m.Config.Digest))
		must(t, err)
		var layers []Digest
		for _, l := range m.Layers {
			if l.MediaType != MediaTypeOCILayer || l.Size != int64(len(blob(l.Digest))) {
				t.Errorf("layer descriptor %+v", l)
			}
			layers = append(layers, l.Digest)
		}
		if !slices.Equal(layers, img.DiffIDs) {
			t.Errorf("manifest %s layers %v, config's %v", desc.Digest.Short(), layers, img.DiffIDs)
		}
		names[desc.Annotations[annotationImageName]+" "+desc.Annotations[annotationRefName]] = img.ID
	}
	want := map[string]Digest{"docker.io/library/a:1 1": img1, "docker.io/library/a:2 2": img2}
	if len(names) != len(want) || names["docker.io/library/a:1 1"] != img1 || names["docker.io/library/a:2 2"] != img2 {
		t.Errorf("index names %v, want %v", names, want)
	}
	var manifest []manifestEntry
	must(t, json.Unmarshal(members["manifest.json"], &manifest))
	for _, m := range manifest {
		if _, ok := members[m.Config]; !ok || len(m.Layers) == 0 {
			t.Errorf("manifest.json entry %+v", m)
		}
		for _, l := range m.Layers {
			if _, ok := members[l]; !ok {
				t.Errorf("manifest.json names %s, not in the archive", l)
			}
		}
	}
	if rep.Layers != 3 || len(rep.Images) != 2 {
		t.Errorf("report: %d layers, %d images", rep.Layers, len(rep.Images))
	}
}

// TestFullName: tags as Docker's reference package normalizes them.
func TestFullName(t *testing.T) {
	for in, want := range map[string]string{
		"busybox:1":                "docker.io/library/busybox:1",
		"me/x:1":                   "docker.io/me/x:1",
		"a/b/c:2":                  "docker.io/a/b/c:2",
		"docker.io/busybox:1":      "docker.io/library/busybox:1",
		"docker.io/me/x:1":         "docker.io/me/x:1",
		"localhost/x:1":            "localhost/x:1",
		"registry:5000/x:1":        "registry:5000/x:1",
		"quay.io/org/x:1":          "quay.io/org/x:1",
		"index.docker.io/me/x:tag": "docker.io/me/x:tag",
	} {
		if got := FullName(in); got != want {
			t.Errorf("FullName(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestSaveSameDiffTwice: an empty layer at two places of a chain (two
// chain ids, one diff id) is one member of the archive.
func TestSaveSameDiffTwice(t *testing.T) {
	for _, format := range []Format{DockerArchive, OCIArchive} {
		f := newFixture(t)
		empty := tarOf(t, nil)
		c1, d1 := f.addLayer(t, "", tarOf(t, []member{{name: "etc/", typ: '5'}, {name: "etc/a", body: "a\n"}}), true)
		c2, d2 := f.addLayer(t, c1, empty, true)
		_, d3 := f.addLayer(t, c2, empty, true)
		img := f.addImage(t, "2026-01-01T00:00:00Z", d1, d2, d3)
		f.setRepos(t, map[string]map[string]Digest{"a": {"a:1": img}})
		b, rep, err := saveAllAs(t, f, format)
		must(t, err)
		n := 0
		for _, name := range memberNames(t, b) {
			if name == blobName(d2) || name == d2.Hex()+"/layer.tar" {
				n++
			}
		}
		if n != 1 || rep.Layers != 2 {
			t.Errorf("format %d: the empty layer is %d members, %d layers reported", format, n, rep.Layers)
		}
	}
}

func memberNames(t *testing.T, b []byte) []string {
	var names []string
	tr := tar.NewReader(bytes.NewReader(b))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return names
		}
		must(t, err)
		names = append(names, h.Name)
	}
}

// TestCommitOCI: commit --oci's index names the new image, whose manifest
// lists the image's layers and the container's as blobs of their sizes.
func TestCommitOCI(t *testing.T) {
	f := newFixture(t)
	img1, _, _ := twoImages(t, f, true)
	f.addContainer(t, hexA, "c1", img1, []member{{name: "written", body: "by the container\n"}})
	s, err := Open(f.root, "devicemapper")
	must(t, err)
	defer s.Close()
	list, err := s.Containers()
	must(t, err)
	c, err := FindContainer(list, "c1")
	must(t, err)
	var buf bytes.Buffer
	rep, err := Commit(&buf, OCIArchive, s, c, "a:committed", f, io.Discard, time.Date(2026, 2, 1, 0, 0, 0, 0, time.UTC))
	must(t, err)
	members := readArchive(t, buf.Bytes())
	var index ociIndex
	must(t, json.Unmarshal(members["index.json"], &index))
	if len(index.Manifests) != 1 || index.Manifests[0].Annotations[annotationImageName] != "docker.io/library/a:committed" {
		t.Fatalf("index: %+v", index)
	}
	var m ociManifest
	must(t, json.Unmarshal(members[blobName(index.Manifests[0].Digest)], &m))
	if m.Config.Digest != rep.Images[0].ID || len(m.Layers) != 3 {
		t.Fatalf("manifest: %+v, want config %s and 3 layers", m, rep.Images[0].ID)
	}
	for _, l := range m.Layers {
		if b, ok := members[blobName(l.Digest)]; !ok || DigestOf(b) != l.Digest || int64(len(b)) != l.Size {
			t.Errorf("layer blob %s: in archive %v", l.Digest.Short(), ok)
		}
	}
	if !bytes.Contains(members[blobName(m.Layers[2].Digest)], []byte("by the container\n")) {
		t.Error("the container's layer lacks its file")
	}
}
