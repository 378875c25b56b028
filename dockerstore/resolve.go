package dockerstore

import (
	"fmt"
	"sort"
	"strings"
)

// Tags are the "repo:tag" names of each image (digest references left
// out: an archive carries tags).
func Tags(refs []Ref) map[Digest][]string {
	m := map[Digest][]string{}
	for _, r := range refs {
		if !r.IsDigest() {
			m[r.Image] = append(m[r.Image], r.Ref)
		}
	}
	for _, t := range m {
		sort.Strings(t)
	}
	return m
}

// Resolve finds the image a name means, as the docker CLI does: "repo:tag",
// "repo" (its :latest), "repo@sha256:…", a full "sha256:…" id, or a prefix
// of at least 4 hex digits of one id. It returns the image id and, for a
// tag, the tag.
func Resolve(name string, refs []Ref, ids []Digest) (Digest, string, error) {
	for _, want := range []string{name, name + ":latest"} {
		for _, r := range refs {
			if r.Ref == want {
				if r.IsDigest() {
					return r.Image, "", nil
				}
				return r.Image, r.Ref, nil
			}
		}
	}
	prefix := strings.TrimPrefix(name, digestPrefix)
	if len(prefix) < 4 || !isHexPrefix(prefix) {
		return "", "", fmt.Errorf("%w: no image %q", ErrNotFound, truncate(name))
	}
	var found []Digest
	for _, id := range ids {
		if strings.HasPrefix(id.Hex(), prefix) {
			found = append(found, id)
		}
	}
	switch len(found) {
	case 0:
		return "", "", fmt.Errorf("%w: no image %q", ErrNotFound, truncate(name))
	case 1:
		return found[0], "", nil
	}
	return "", "", fmt.Errorf("%w: %q is the prefix of %d images", ErrNotFound, name, len(found))
}

func isHexPrefix(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return len(s) <= 64
}
