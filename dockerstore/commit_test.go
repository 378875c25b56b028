package dockerstore

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// addContainer writes a stopped container of image img whose read-write
// layer's files are changed.
func (f *fixture) addContainer(t *testing.T, id, name string, img Digest, files []member) {
	cfg := `{"ID":"` + id + `","Name":"/` + name + `","Image":"` + string(img) + `","Driver":"devicemapper","Path":"sh","Args":["-c","x"],` +
		`"Created":"2026-01-03T00:00:00Z","State":{"ExitCode":0,"StartedAt":"2026-01-03T00:00:01Z"},"Config":{"Image":"a:1","Cmd":["sh"],"Env":["A=1"]}}`
	must(t, os.MkdirAll(filepath.Join(f.root, "containers", id), 0o700))
	must(t, os.WriteFile(filepath.Join(f.root, "containers", id, "config.v2.json"), []byte(cfg), 0o600))
	mountID := strings.Repeat("c", 64)
	dir := filepath.Join(f.store(), "layerdb/mounts", id)
	must(t, os.MkdirAll(dir, 0o700))
	must(t, os.WriteFile(filepath.Join(dir, "mount-id"), []byte(mountID), 0o600))
	must(t, os.WriteFile(filepath.Join(dir, "init-id"), []byte(mountID+"-init"), 0o600))
	extract(t, tarOf(t, files), filepath.Join(f.layers, mountID))
}

// TestCommit: the archive has the image's layers byte for byte, the
// container's changes as a new top layer, and the container's config.
func TestCommit(t *testing.T) {
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
	if c2, err := FindContainer(list, "aaaa"); err != nil || c2 != c {
		t.Fatalf("by id prefix: %v", err)
	}
	var buf bytes.Buffer
	rep, err := Commit(&buf, DockerArchive, s, c, "a:committed", f, os.Stderr, time.Date(2026, 2, 1, 0, 0, 0, 0, time.UTC))
	must(t, err)
	members := readArchive(t, buf.Bytes())
	saved := rep.Images[0]
	img, err := ParseImage(saved.ID, members[saved.ID.Hex()+".json"])
	must(t, err)
	if len(img.DiffIDs) != 3 {
		t.Fatalf("committed image has %d layers, want the image's 2 and one", len(img.DiffIDs))
	}
	for _, d := range img.DiffIDs[:2] {
		if !bytes.Equal(members[d.Hex()+"/layer.tar"], f.tars[d]) {
			t.Errorf("image layer %s not byte for byte", d.Short())
		}
	}
	top := members[img.DiffIDs[2].Hex()+"/layer.tar"]
	if DigestOf(top) != img.DiffIDs[2] || !bytes.Contains(top, []byte("by the container\n")) {
		t.Errorf("top layer: digest ok %v", DigestOf(top) == img.DiffIDs[2])
	}
	var cfg struct {
		Config    struct{ Env []string }
		Container string
		History   []struct {
			CreatedBy string `json:"created_by"`
		}
	}
	must(t, json.Unmarshal(members[saved.ID.Hex()+".json"], &cfg))
	if cfg.Container != hexA || len(cfg.Config.Env) != 1 || cfg.History[len(cfg.History)-1].CreatedBy != "sh -c x" {
		t.Errorf("config: %+v", cfg)
	}
	var manifest []manifestEntry
	must(t, json.Unmarshal(members["manifest.json"], &manifest))
	if len(manifest) != 1 || manifest[0].RepoTags[0] != "a:committed" || len(manifest[0].Layers) != 3 {
		t.Errorf("manifest: %+v", manifest)
	}
}
