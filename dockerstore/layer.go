package dockerstore

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"github.com/klauspost/compress/gzip"
)

// Layer is one layer of Docker's layer store, layerdb/sha256/<chain id>/.
type Layer struct {
	ChainID Digest `json:"chain_id"`
	DiffID  Digest `json:"diff_id"`          // sha256 of its uncompressed tar
	Parent  Digest `json:"parent,omitempty"` // chain id below it
	Size    int64  `json:"size"`             // bytes of file content, as Docker counted
	CacheID string `json:"cache_id"`         // the graph driver's id: a layer of the home
}

// LayerFiles are the contents of a layer's small files; Parent is nil
// when the layer has none (the bottom one).
type LayerFiles struct {
	Diff, Parent, Size, CacheID []byte
}

// ParseLayer checks a layer's files: digests, a size, a graph-driver id.
func ParseLayer(chain Digest, f LayerFiles) (*Layer, error) {
	l := &Layer{ChainID: chain}
	var err error
	if l.DiffID, err = ParseDigest(strings.TrimSpace(string(f.Diff))); err != nil {
		return nil, fmt.Errorf("layer %s diff: %w", chain.Short(), err)
	}
	if f.Parent != nil {
		if l.Parent, err = ParseDigest(strings.TrimSpace(string(f.Parent))); err != nil {
			return nil, fmt.Errorf("layer %s parent: %w", chain.Short(), err)
		}
	}
	if l.Size, err = strconv.ParseInt(strings.TrimSpace(string(f.Size)), 10, 64); err != nil || l.Size < 0 {
		return nil, fmt.Errorf("%w: layer %s size %q", ErrInvalid, chain.Short(), truncate(string(f.Size)))
	}
	l.CacheID = strings.TrimSpace(string(f.CacheID))
	if err := checkLayerID(l.CacheID, false); err != nil {
		return nil, fmt.Errorf("layer %s cache-id: %w", chain.Short(), err)
	}
	if f.Parent == nil && l.DiffID != chain {
		return nil, fmt.Errorf("%w: bottom layer %s has diff id %s", ErrInvalid, chain.Short(), l.DiffID)
	}
	if f.Parent != nil && ChainIDs([]Digest{l.Parent, l.DiffID})[1] != chain {
		return nil, fmt.Errorf("%w: layer %s is not the chain of its parent %s and diff %s", ErrInvalid, chain.Short(), l.Parent.Short(), l.DiffID.Short())
	}
	return l, nil
}

func layerDir(chain Digest) string { return "layerdb/sha256/" + chain.Hex() + "/" }

// Layer reads the layer with chain id chain.
func (s *Store) Layer(chain Digest) (*Layer, error) {
	if _, err := ParseDigest(string(chain)); err != nil {
		return nil, err
	}
	var f LayerFiles
	for _, x := range []struct {
		name     string
		to       *[]byte
		optional bool
	}{{"diff", &f.Diff, false}, {"parent", &f.Parent, true}, {"size", &f.Size, false}, {"cache-id", &f.CacheID, false}} {
		b, err := readFile(s.image, layerDir(chain)+x.name, maxSmallFile)
		if x.optional && isNotFound(err) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("layer %s: %w", chain.Short(), err)
		}
		*x.to = b
	}
	return ParseLayer(chain, f)
}

// Layers are the layers of img, bottom first, each checked to be the
// image's diff id at its place in the chain.
func (s *Store) Layers(img *Image) ([]*Layer, error) {
	var layers []*Layer
	for i, chain := range ChainIDs(img.DiffIDs) {
		l, err := s.Layer(chain)
		if err != nil {
			return nil, fmt.Errorf("image %s: %w", img.ID.Short(), err)
		}
		if i > 0 && l.Parent != layers[i-1].ChainID || i == 0 && l.Parent != "" {
			return nil, fmt.Errorf("%w: image %s: layer %s has parent %q", ErrInvalid, img.ID.Short(), chain.Short(), l.Parent)
		}
		layers = append(layers, l)
	}
	return layers, nil
}

// maxTarSplit bounds a decompressed tar-split record: headers only, some
// hundred bytes a file.
const maxTarSplit = 1 << 30

// ErrNoTarSplit: the layer has no tar-split record (a layer Docker made
// before it kept them, or one whose record was lost).
var ErrNoTarSplit = errors.New("no tar-split record")

// TarSplit opens the layer's decompressed tar-split record.
func (s *Store) TarSplit(l *Layer) (io.ReadCloser, error) {
	f, err := s.image.OpenFile(layerDir(l.ChainID) + "tar-split.json.gz")
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("layer %s: %w", l.ChainID.Short(), ErrNoTarSplit)
	}
	if err != nil {
		return nil, fmt.Errorf("layer %s: %w", l.ChainID.Short(), err)
	}
	zr, err := gzip.NewReader(f)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("%w: layer %s tar-split.json.gz: %w", ErrInvalid, l.ChainID.Short(), err)
	}
	return &boundedReadCloser{r: zr, left: maxTarSplit, close: f.Close, what: "layer " + l.ChainID.Short() + " tar-split"}, nil
}

// boundedReadCloser fails past left bytes rather than stopping quietly.
type boundedReadCloser struct {
	r     io.Reader
	left  int64
	close func() error
	what  string
}

func (b *boundedReadCloser) Read(p []byte) (int, error) {
	if b.left <= 0 {
		return 0, fmt.Errorf("%w: %s is larger than %d bytes", ErrInvalid, b.what, int64(maxTarSplit))
	}
	n, err := b.r.Read(p[:min(int64(len(p)), b.left)])
	b.left -= int64(n)
	return n, err
}

func (b *boundedReadCloser) Close() error { return b.close() }

func isNotFound(err error) bool { return errors.Is(err, ErrNotFound) }
