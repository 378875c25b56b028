package dockerstore

import (
	"fmt"
	"path"
	"strings"
)

// ReferencedLayers returns the storage driver's layer ids (cache ids) that
// Docker's layer store names: every image layer's cache-id, every
// container's mount-id and init-id, including those of layers Docker was
// removing ("-removing" entries, which its next start finishes). A layer
// of the driver's home not in this set is one Docker will never use or
// remove: what a load interrupted at the wrong moment leaves. An entry
// that names no layer, or not a valid one, is an error: a sweep must not
// guess.
func (s *Store) ReferencedLayers() (map[string]bool, error) {
	refs := map[string]bool{}
	for _, x := range []struct {
		dir      string
		files    []string
		optional string // a file an entry may lack
	}{
		{"layerdb/sha256", []string{"cache-id"}, ""},
		{"layerdb/mounts", []string{"mount-id", "init-id"}, "init-id"},
	} {
		entries, err := listDir(path.Join(s.imageDir(), x.dir))
		if err != nil {
			return nil, fmt.Errorf("docker layer store: %w", err)
		}
		for _, e := range entries {
			if strings.ContainsAny(e, "/\x00") || e == "." || e == ".." {
				continue
			}
			for _, name := range x.files {
				b, err := readFile(s.image, x.dir+"/"+e+"/"+name, maxSmallFile)
				if isNotFound(err) && name == x.optional {
					continue // a container without an init layer
				}
				if err != nil {
					return nil, fmt.Errorf("docker layer store: %w", err)
				}
				id := strings.TrimSpace(string(b))
				if err := checkLayerID(id, name == "init-id"); err != nil {
					return nil, fmt.Errorf("docker layer store: %s/%s/%s: %w", x.dir, e, name, err)
				}
				refs[id] = true
			}
		}
	}
	return refs, nil
}
