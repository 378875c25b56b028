package dockerstore

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// twoImages: "a:1" of layers l1 l2 and "a:2" (its base shared) of l1 l2 l3;
// the layers have a hard link, a symlink, a whiteout, empty files and an
// empty tar.
func twoImages(t *testing.T, f *fixture, withTarSplit bool) (img1, img2 Digest, chains []Digest) {
	l1 := tarOf(t, []member{{name: "bin/", typ: '5'}, {name: "bin/tool", body: "#!/bin/sh\necho tool\n", mode: 0o4755},
		{name: "bin/alias", typ: '2', link: "tool"}, {name: "bin/hard", typ: '1', link: "bin/tool"},
		{name: "etc/", typ: '5'}, {name: "etc/gone", body: "to delete\n"}, {name: "etc/empty"}})
	l2 := tarOf(t, []member{{name: "etc/", typ: '5'}, {name: "etc/.wh.gone"}, {name: "etc/new", body: strings.Repeat("x", 70000)}})
	l3 := tarOf(t, nil)
	c1, d1 := f.addLayer(t, "", l1, withTarSplit)
	c2, d2 := f.addLayer(t, c1, l2, withTarSplit)
	c3, d3 := f.addLayer(t, c2, l3, true)
	img1 = f.addImage(t, "2026-01-01T00:00:00Z", d1, d2)
	img2 = f.addImage(t, "2026-01-02T00:00:00Z", d1, d2, d3)
	f.setRepos(t, map[string]map[string]Digest{"a": {"a:1": img1, "a:2": img2}})
	return img1, img2, []Digest{c1, c2, c3}
}

func saveAll(t *testing.T, f *fixture) ([]byte, *SaveReport, error) {
	return saveAllAs(t, f, DockerArchive)
}

func saveAllAs(t *testing.T, f *fixture, format Format) ([]byte, *SaveReport, error) {
	s, err := Open(f.root, "devicemapper")
	must(t, err)
	defer s.Close()
	refs, err := s.Refs()
	must(t, err)
	tags := Tags(refs)
	ids, err := s.ImageIDs()
	must(t, err)
	var want []SaveImage
	for _, id := range ids {
		want = append(want, SaveImage{ID: id, Tags: tags[id]})
	}
	var buf bytes.Buffer
	var warn bytes.Buffer
	rep, err := Save(&buf, format, s, want, f, &warn)
	if rep != nil && len(rep.Rebuilt) > 0 && !strings.Contains(warn.String(), "no tar-split record") {
		t.Errorf("a rebuilt layer without a warning: %q", warn.String())
	}
	return buf.Bytes(), rep, err
}

// TestSaveByteExact: every layer tar in the archive is the very tar that
// was loaded (so diff ids and image ids are the originals), written once.
func TestSaveByteExact(t *testing.T) {
	f := newFixture(t)
	img1, img2, _ := twoImages(t, f, true)
	b, rep, err := saveAll(t, f)
	must(t, err)
	members := readArchive(t, b)
	for diff, tarBytes := range f.tars {
		if got, ok := members[diff.Hex()+"/layer.tar"]; !ok || !bytes.Equal(got, tarBytes) {
			t.Errorf("layer %s: in archive %v, equal %v", diff.Short(), ok, bytes.Equal(got, tarBytes))
		}
	}
	if rep.Layers != 3 || len(rep.Rebuilt) != 0 {
		t.Errorf("report: %d layers, %d rebuilt", rep.Layers, len(rep.Rebuilt))
	}
	var manifest []manifestEntry
	must(t, json.Unmarshal(members["manifest.json"], &manifest))
	if len(manifest) != 2 {
		t.Fatalf("manifest: %+v", manifest)
	}
	for _, m := range manifest {
		id := Digest("sha256:" + strings.TrimSuffix(m.Config, ".json"))
		if DigestOf(members[m.Config]) != id || id != img1 && id != img2 {
			t.Errorf("config %s is not an original", m.Config)
		}
		if want := map[Digest]string{img1: "a:1", img2: "a:2"}[id]; len(m.RepoTags) != 1 || m.RepoTags[0] != want {
			t.Errorf("image %s tags %v, want %s", id.Short(), m.RepoTags, want)
		}
	}
	var repos map[string]map[string]string
	must(t, json.Unmarshal(members["repositories"], &repos))
	if len(repos["a"]) != 2 {
		t.Errorf("repositories: %v", repos)
	}
}

// TestSaveDamagedLayer: a file changed, grown, shrunk or swapped for a
// symlink or FIFO on the device stops the save with an error naming the
// layer and the file; so does a record of another tar.
func TestSaveDamagedLayer(t *testing.T) {
	for name, damage := range map[string]func(t *testing.T, dir string){
		"changed": func(t *testing.T, dir string) {
			must(t, os.WriteFile(filepath.Join(dir, "bin/tool"), []byte("#!/bin/sh\necho TOOL\n"), 0o755))
		},
		"grown": func(t *testing.T, dir string) {
			must(t, os.WriteFile(filepath.Join(dir, "bin/tool"), []byte("#!/bin/sh\necho tool\n\n"), 0o755))
		},
		"shrunk": func(t *testing.T, dir string) { must(t, os.Truncate(filepath.Join(dir, "bin/tool"), 3)) },
		"symlink": func(t *testing.T, dir string) {
			must(t, os.Remove(filepath.Join(dir, "bin/tool")))
			must(t, os.Symlink("/etc/passwd", filepath.Join(dir, "bin/tool")))
		},
		"dir-symlink": func(t *testing.T, dir string) {
			must(t, os.Rename(filepath.Join(dir, "bin"), filepath.Join(dir, "bin2")))
			must(t, os.Symlink("bin2", filepath.Join(dir, "bin")))
		},
		"gone": func(t *testing.T, dir string) { must(t, os.RemoveAll(filepath.Join(dir, "bin"))) },
	} {
		t.Run(name, func(t *testing.T) {
			f := newFixture(t)
			_, _, chains := twoImages(t, f, true)
			damage(t, filepath.Join(f.layers, f.cacheIDs[chains[0]]))
			_, _, err := saveAll(t, f)
			if !errors.Is(err, ErrLayerMismatch) || !strings.Contains(err.Error(), `"bin/tool"`) || !strings.Contains(err.Error(), chains[0].Short()) {
				t.Fatalf("save: %v, want ErrLayerMismatch naming bin/tool and layer %s", err, chains[0].Short())
			}
		})
	}
	t.Run("record of another tar", func(t *testing.T) {
		f := newFixture(t)
		_, _, chains := twoImages(t, f, true)
		g := newFixture(t)
		other, _ := g.addLayer(t, "", tarOf(t, []member{{name: "bin/", typ: '5'}, {name: "bin/tool", body: "#!/bin/sh\necho tool\n", mode: 0o4755}}), true)
		rec, err := os.ReadFile(filepath.Join(g.store(), layerDir(other), "tar-split.json.gz"))
		must(t, err)
		must(t, os.WriteFile(filepath.Join(f.store(), layerDir(chains[0]), "tar-split.json.gz"), rec, 0o600))
		_, _, err = saveAll(t, f)
		if !errors.Is(err, ErrLayerMismatch) || !strings.Contains(err.Error(), "reassembles to") {
			t.Fatalf("save: %v, want a digest mismatch", err)
		}
	})
}

// TestSaveWithoutTarSplit: layers without a record are saved as plain
// tars, reported with their new digests; the images' configs name them.
func TestSaveWithoutTarSplit(t *testing.T) {
	f := newFixture(t)
	img1, _, _ := twoImages(t, f, false)
	b, rep, err := saveAll(t, f)
	must(t, err)
	if len(rep.Rebuilt) != 2 || f.plainDiffs != 2 {
		t.Fatalf("rebuilt %+v, plain diffs %d; want the 2 layers without a record, once each", rep.Rebuilt, f.plainDiffs)
	}
	members := readArchive(t, b)
	for _, img := range rep.Images {
		if img.OriginalID == "" || img.ID == img.OriginalID {
			t.Errorf("image %s keeps its id with rebuilt layers", img.ID.Short())
		}
		cfg, ok := members[img.ID.Hex()+".json"]
		parsed, err := ParseImage(img.ID, cfg)
		if !ok || err != nil || parsed.DiffIDs[0] != rep.Rebuilt[0].NewDiffID {
			t.Fatalf("config of %s: %v %v", img.ID.Short(), ok, err)
		}
		for _, d := range img.DiffIDs {
			if DigestOf(members[d.Hex()+"/layer.tar"]) != d {
				t.Errorf("layer %s in the archive has another digest", d.Short())
			}
		}
		if img.OriginalID == img1 && len(img.DiffIDs) != 2 {
			t.Errorf("image a:1 has %d layers", len(img.DiffIDs))
		}
	}
}

// TestSaveCorruptConfig: a config whose bytes are not its id stops the
// save.
func TestSaveCorruptConfig(t *testing.T) {
	f := newFixture(t)
	img1, _, _ := twoImages(t, f, true)
	p := filepath.Join(f.store(), "imagedb/content/sha256", img1.Hex())
	raw, _ := os.ReadFile(p)
	must(t, os.WriteFile(p, bytes.Replace(raw, []byte("amd64"), []byte("arm64"), 1), 0o600))
	if _, _, err := saveAll(t, f); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "has digest") {
		t.Fatalf("save: %v, want ErrInvalid for the config's digest", err)
	}
}

// TestStoreRefusesSymlinks: a store file that is a symlink is not read.
func TestStoreRefusesSymlinks(t *testing.T) {
	f := newFixture(t)
	_, _, chains := twoImages(t, f, true)
	p := filepath.Join(f.store(), layerDir(chains[1]), "cache-id")
	other := filepath.Join(t.TempDir(), "cache-id")
	must(t, os.WriteFile(other, []byte(strings.Repeat("f", 64)), 0o600))
	must(t, os.Remove(p))
	must(t, os.Symlink(other, p))
	s, err := Open(f.root, "devicemapper")
	must(t, err)
	defer s.Close()
	if _, err := s.Layer(chains[1]); err == nil {
		t.Fatal("a symlinked cache-id was read")
	}
}
