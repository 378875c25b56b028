package dockerstore

import (
	"encoding/json"
	"fmt"
	"path"
	"strings"
	"time"
)

// Image is an image config from imagedb/content/sha256/<id>: its id is
// the digest of Raw, the bytes a saved archive carries unchanged.
type Image struct {
	ID      Digest    `json:"id"`
	Created time.Time `json:"created"`
	DiffIDs []Digest  `json:"diff_ids"`
	Parent  Digest    `json:"parent,omitempty"` // imagedb/metadata: a commit's base
	Raw     []byte    `json:"-"`
}

type imageConfig struct {
	Created time.Time `json:"created"`
	RootFS  struct {
		Type    string   `json:"type"`
		DiffIDs []string `json:"diff_ids"`
	} `json:"rootfs"`
}

// ParseImage checks raw is the config whose digest is id and reads it.
func ParseImage(id Digest, raw []byte) (*Image, error) {
	if got := DigestOf(raw); got != id {
		return nil, fmt.Errorf("%w: image config %s has digest %s", ErrInvalid, id, got)
	}
	var c imageConfig
	if err := json.Unmarshal(raw, &c); err != nil {
		return nil, fmt.Errorf("%w: image config %s: %w", ErrInvalid, id.Short(), err)
	}
	if c.RootFS.Type != "layers" {
		return nil, fmt.Errorf("%w: image config %s: rootfs type %q, not \"layers\"", ErrInvalid, id.Short(), truncate(c.RootFS.Type))
	}
	img := &Image{ID: id, Created: c.Created, Raw: raw}
	for _, d := range c.RootFS.DiffIDs {
		dd, err := ParseDigest(d)
		if err != nil {
			return nil, fmt.Errorf("image config %s: diff id: %w", id.Short(), err)
		}
		img.DiffIDs = append(img.DiffIDs, dd)
	}
	return img, nil
}

// ChainID is the chain id of the image's top layer ("" for no layers).
func (img *Image) ChainID() Digest {
	if len(img.DiffIDs) == 0 {
		return ""
	}
	ids := ChainIDs(img.DiffIDs)
	return ids[len(ids)-1]
}

// ImageIDs lists the image configs the store holds.
func (s *Store) ImageIDs() ([]Digest, error) {
	names, err := listDir(path.Join(s.imageDir(), "imagedb/content/sha256"))
	if err != nil {
		return nil, err
	}
	var ids []Digest
	for _, n := range names {
		if d, err := ParseDigest(digestPrefix + n); err == nil {
			ids = append(ids, d)
		}
	}
	return ids, nil
}

// Image reads and checks the config of image id, and its parent if
// Docker recorded one.
func (s *Store) Image(id Digest) (*Image, error) {
	if _, err := ParseDigest(string(id)); err != nil {
		return nil, err
	}
	raw, err := readFile(s.image, "imagedb/content/sha256/"+id.Hex(), maxConfigFile)
	if err != nil {
		return nil, fmt.Errorf("image %s: %w", id.Short(), err)
	}
	img, err := ParseImage(id, raw)
	if err != nil {
		return nil, err
	}
	p, err := readFile(s.image, "imagedb/metadata/sha256/"+id.Hex()+"/parent", maxSmallFile)
	switch {
	case isNotFound(err):
	case err != nil:
		return nil, fmt.Errorf("image %s: %w", id.Short(), err)
	default:
		if img.Parent, err = ParseDigest(strings.TrimSpace(string(p))); err != nil {
			return nil, fmt.Errorf("image %s parent: %w", id.Short(), err)
		}
	}
	return img, nil
}
