package dockerstore

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestReferencedLayers(t *testing.T) {
	f := newFixture(t)
	chain, _ := f.addLayer(t, "", tarOf(t, []member{{name: "a", body: "1"}}), true)
	ctr := strings.Repeat("c", 64)
	rw := strings.Repeat("d", 64)
	mounts := filepath.Join(f.store(), "layerdb/mounts", ctr)
	must(t, os.MkdirAll(mounts, 0o700))
	must(t, os.WriteFile(filepath.Join(mounts, "mount-id"), []byte(rw), 0o600))
	must(t, os.WriteFile(filepath.Join(mounts, "init-id"), []byte(rw+"-init"), 0o600))
	removing := filepath.Join(f.store(), "layerdb/sha256", strings.Repeat("e", 64)+"-removing")
	must(t, os.MkdirAll(removing, 0o700))
	gone := strings.Repeat("f", 64)
	must(t, os.WriteFile(filepath.Join(removing, "cache-id"), []byte(gone), 0o600))

	s, err := Open(f.root, "devicemapper")
	must(t, err)
	defer s.Close()
	refs, err := s.ReferencedLayers()
	must(t, err)
	for _, id := range []string{f.cacheIDs[chain], rw, rw + "-init", gone} {
		if !refs[id] {
			t.Errorf("%s is not among the referenced layers %v", id, refs)
		}
	}
	if len(refs) != 4 {
		t.Errorf("%d referenced layers, want 4: %v", len(refs), refs)
	}

	// A container entry that names no layer: no answer, rather than a guess.
	must(t, os.Remove(filepath.Join(mounts, "mount-id")))
	if _, err := s.ReferencedLayers(); !errors.Is(err, ErrNotFound) {
		t.Errorf("a mount entry without mount-id: %v, want ErrNotFound", err)
	}
	must(t, os.WriteFile(filepath.Join(mounts, "mount-id"), []byte("../../x"), 0o600))
	if _, err := s.ReferencedLayers(); !errors.Is(err, ErrInvalid) {
		t.Errorf("a mount-id that is no layer id: %v, want ErrInvalid", err)
	}
}
