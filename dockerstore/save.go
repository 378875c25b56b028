package dockerstore

import (
	"archive/tar"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"time"
)

// LayerSource gives the files of the home's layers by graph-driver id.
type LayerSource interface {
	// Files opens the layer's files (read-only) until release.
	Files(cacheID string) (files FileOpener, release func() error, err error)
	// PlainDiff is a plain tar of the layer's changes over the layer
	// parentCacheID ("" for none): what is saved without a tar-split record.
	PlainDiff(cacheID, parentCacheID string) (io.ReadCloser, error)
}

// SaveImage is one image to save, under its tags (none: saved by id).
type SaveImage struct {
	ID   Digest
	Tags []string
}

// SaveReport says what an archive holds.
type SaveReport struct {
	Images []SavedImage `json:"images"`
	Layers int          `json:"layers"` // layer tars written (shared ones once)
	Bytes  int64        `json:"bytes"`  // of layer tars
	// Rebuilt are layers without a tar-split record, saved as plain tars:
	// their digests (and their images' ids) are new.
	Rebuilt []Rebuilt `json:"rebuilt,omitempty"`
}

// SavedImage is an image in the archive; OriginalID is set when a rebuilt
// layer gave it a new id.
type SavedImage struct {
	ID         Digest   `json:"id"`
	OriginalID Digest   `json:"original_id,omitempty"`
	Tags       []string `json:"tags"`
	DiffIDs    []Digest `json:"diff_ids"`
}

// Rebuilt is a layer saved as a plain tar.
type Rebuilt struct {
	ChainID   Digest `json:"chain_id"`
	CacheID   string `json:"cache_id"`
	DiffID    Digest `json:"original_diff_id"`
	NewDiffID Digest `json:"new_diff_id"`
}

type manifestEntry struct {
	Config   string
	RepoTags []string
	Layers   []string
}

// Format is an archive's layout.
type Format int

const (
	// DockerArchive is `docker save`'s: <diff id>/layer.tar, <id>.json,
	// manifest.json, repositories.
	DockerArchive Format = iota
	// OCIArchive is an OCI image layout (oci-layout, index.json,
	// blobs/sha256/…) with a manifest.json into its blobs, as Docker 25's
	// `docker save` writes: containerd and Docker of any version load it.
	OCIArchive
)

// saver writes one archive.
type saver struct {
	s       *Store
	src     LayerSource
	format  Format
	tw      *tar.Writer
	written map[Digest]Digest // chain id → diff id its tar has
	sizes   map[Digest]int64  // diff id → size of the tar written
	index   []ociDescriptor   // OCIArchive: a manifest per image and tag
	rep     *SaveReport
	warn    io.Writer
}

// archiveTime is every member's mtime: the archive depends on the images
// only.
var archiveTime = time.Unix(0, 0).UTC()

// Save writes the images as a `docker save` archive to w: manifest.json,
// repositories, each config as <id>.json and each layer once as
// <diff id>/layer.tar, reassembled byte for byte from the layer's files and
// tar-split record. A layer without a record is written as a plain tar of
// its changes, with a note on warn. An error means the archive is
// incomplete and must be thrown away. OCIArchive names the same bytes by
// their digests instead.
func Save(w io.Writer, format Format, s *Store, images []SaveImage, src LayerSource, warn io.Writer) (*SaveReport, error) {
	sv := newSaver(w, format, s, src, warn)
	var manifest []manifestEntry
	for _, want := range images {
		m, err := sv.image(want)
		if err != nil {
			return sv.rep, err
		}
		manifest = append(manifest, m)
	}
	return sv.rep, sv.finish(manifest)
}

func newSaver(w io.Writer, format Format, s *Store, src LayerSource, warn io.Writer) *saver {
	return &saver{s: s, src: src, format: format, tw: tar.NewWriter(w), written: map[Digest]Digest{},
		sizes: map[Digest]int64{}, rep: &SaveReport{}, warn: warn}
}

// layerName and configName are where a layer's tar and an image's config
// go in the archive.
func (sv *saver) layerName(diff Digest) string {
	if sv.format == OCIArchive {
		return blobName(diff)
	}
	return diff.Hex() + "/layer.tar"
}

func (sv *saver) configName(id Digest) string {
	if sv.format == OCIArchive {
		return blobName(id)
	}
	return id.Hex() + ".json"
}

// finish writes manifest.json and repositories (each tag's top layer), or
// for OCIArchive manifest.json, index.json and oci-layout, and ends the
// archive.
func (sv *saver) finish(manifest []manifestEntry) error {
	if sv.format == OCIArchive {
		return sv.finishOCI(manifest)
	}
	repos := map[string]map[string]string{}
	for _, m := range manifest {
		for _, t := range m.RepoTags {
			repo, tag := splitTag(t)
			if repos[repo] == nil {
				repos[repo] = map[string]string{}
			}
			if len(m.Layers) > 0 {
				repos[repo][tag] = path.Dir(m.Layers[len(m.Layers)-1])
			}
		}
	}
	if err := sv.writeJSON("manifest.json", manifest); err != nil {
		return err
	}
	if err := sv.writeJSON("repositories", repos); err != nil {
		return err
	}
	return sv.tw.Close()
}

func splitTag(ref string) (string, string) {
	for i := len(ref) - 1; i >= 0 && ref[i] != '/'; i-- {
		if ref[i] == ':' {
			return ref[:i], ref[i+1:]
		}
	}
	return ref, "latest"
}

// image writes one image's layers and config.
func (sv *saver) image(want SaveImage) (manifestEntry, error) {
	img, err := sv.s.Image(want.ID)
	if err != nil {
		return manifestEntry{}, err
	}
	m, diffIDs, err := sv.layers(img)
	if err != nil {
		return m, err
	}
	m.RepoTags = want.Tags
	raw, saved := img.Raw, SavedImage{ID: img.ID, Tags: want.Tags, DiffIDs: diffIDs}
	if !equalDigests(diffIDs, img.DiffIDs) {
		if raw, err = withDiffIDs(img.Raw, diffIDs); err != nil {
			return m, fmt.Errorf("image %s: %w", img.ID.Short(), err)
		}
		saved.ID, saved.OriginalID = DigestOf(raw), img.ID
	}
	return sv.addImage(m, saved, raw)
}

// addImage writes an image's config (and, for OCIArchive, its manifest)
// once its layers are in the archive.
func (sv *saver) addImage(m manifestEntry, saved SavedImage, raw []byte) (manifestEntry, error) {
	m.Config = sv.configName(saved.ID)
	sv.rep.Images = append(sv.rep.Images, saved)
	if err := sv.writeFile(m.Config, raw); err != nil {
		return m, err
	}
	if sv.format == OCIArchive {
		return m, sv.ociManifest(saved, raw)
	}
	return m, nil
}

// layers writes the image's layers; their diff ids as written.
func (sv *saver) layers(img *Image) (manifestEntry, []Digest, error) {
	var m manifestEntry
	layers, err := sv.s.Layers(img)
	if err != nil {
		return m, nil, err
	}
	diffIDs := make([]Digest, len(layers))
	for i, l := range layers {
		parent := ""
		if i > 0 {
			parent = layers[i-1].CacheID
		}
		if diffIDs[i], err = sv.layer(l, parent); err != nil {
			return m, nil, err
		}
		m.Layers = append(m.Layers, sv.layerName(diffIDs[i]))
	}
	return m, diffIDs, nil
}

// layer writes layer l's tar unless written already; its diff id.
func (sv *saver) layer(l *Layer, parentCacheID string) (Digest, error) {
	if d, ok := sv.written[l.ChainID]; ok {
		return d, nil
	}
	if _, ok := sv.sizes[l.DiffID]; ok {
		sv.written[l.ChainID] = l.DiffID // the same tar in another chain (an empty layer)
		return l.DiffID, nil
	}
	size, err := sv.tarSize(l)
	if errors.Is(err, ErrNoTarSplit) {
		return sv.rebuilt(l, parentCacheID)
	}
	if err != nil {
		return "", err
	}
	files, release, err := sv.src.Files(l.CacheID)
	if err != nil {
		return "", fmt.Errorf("layer %s (%s): %w", l.ChainID.Short(), l.CacheID, err)
	}
	rec, err := sv.s.TarSplit(l)
	if err == nil {
		if err = sv.header(sv.layerName(l.DiffID), size); err == nil {
			_, err = Assemble(sv.tw, l, files, rec)
		}
		rec.Close()
	}
	if rerr := release(); err == nil && rerr != nil {
		err = fmt.Errorf("layer %s (%s): release its files: %w", l.ChainID.Short(), l.CacheID, rerr)
	}
	if err != nil {
		return "", err
	}
	sv.done(l.ChainID, l.DiffID, size)
	return l.DiffID, nil
}

func (sv *saver) tarSize(l *Layer) (int64, error) {
	rec, err := sv.s.TarSplit(l)
	if err != nil {
		return 0, err
	}
	defer rec.Close()
	n, err := TarSize(rec)
	if err != nil {
		return 0, fmt.Errorf("layer %s: %w", l.ChainID.Short(), err)
	}
	return n, nil
}

func (sv *saver) done(chain, diff Digest, size int64) {
	sv.written[chain] = diff
	sv.sizes[diff] = size
	sv.rep.Layers++
	sv.rep.Bytes += size
}

// rebuilt writes a plain tar of the layer's changes in place of the
// byte-exact one.
func (sv *saver) rebuilt(l *Layer, parentCacheID string) (Digest, error) {
	fmt.Fprintf(sv.warn, "layer %s (%s) has no tar-split record: saving a plain tar of its files; its digest and its images' ids change\n", l.ChainID.Short(), l.CacheID)
	d, n, err := sv.plainLayer(l.CacheID, parentCacheID)
	if err != nil {
		return "", fmt.Errorf("layer %s (%s): %w", l.ChainID.Short(), l.CacheID, err)
	}
	sv.rep.Rebuilt = append(sv.rep.Rebuilt, Rebuilt{ChainID: l.ChainID, CacheID: l.CacheID, DiffID: l.DiffID, NewDiffID: d})
	sv.done(l.ChainID, d, n)
	return d, nil
}

// plainLayer writes a plain tar of cacheID's changes over parentCacheID,
// spooled first to learn its size and digest; its digest and size.
func (sv *saver) plainLayer(cacheID, parentCacheID string) (Digest, int64, error) {
	rc, err := sv.src.PlainDiff(cacheID, parentCacheID)
	if err != nil {
		return "", 0, err
	}
	spool, err := os.CreateTemp("", "thinlayer-layer-")
	if err != nil {
		rc.Close()
		return "", 0, err
	}
	defer func() { spool.Close(); os.Remove(spool.Name()) }()
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(spool, h), rc)
	if cerr := rc.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return "", 0, fmt.Errorf("plain tar: %w", err)
	}
	d := Digest("sha256:" + hex.EncodeToString(h.Sum(nil)))
	if _, ok := sv.sizes[d]; ok {
		return d, n, nil // in the archive already
	}
	if _, err := spool.Seek(0, io.SeekStart); err != nil {
		return "", 0, err
	}
	if err := sv.header(sv.layerName(d), n); err != nil {
		return "", 0, err
	}
	_, err = io.Copy(sv.tw, spool)
	return d, n, err
}

func (sv *saver) header(name string, size int64) error {
	return sv.tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: size, ModTime: archiveTime, Typeflag: tar.TypeReg, Format: tar.FormatPAX})
}

func (sv *saver) writeFile(name string, b []byte) error {
	if err := sv.header(name, int64(len(b))); err != nil {
		return err
	}
	_, err := sv.tw.Write(b)
	return err
}

func (sv *saver) writeJSON(name string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return sv.writeFile(name, b)
}

// withDiffIDs is the config raw with rootfs.diff_ids replaced, every
// other field kept.
func withDiffIDs(raw []byte, ids []Digest) ([]byte, error) {
	var cfg map[string]json.RawMessage
	if err := json.Unmarshal(raw, &cfg); err != nil {
		return nil, err
	}
	var rootfs map[string]json.RawMessage
	if err := json.Unmarshal(cfg["rootfs"], &rootfs); err != nil {
		return nil, err
	}
	var err error
	if rootfs["diff_ids"], err = json.Marshal(ids); err != nil {
		return nil, err
	}
	if cfg["rootfs"], err = json.Marshal(rootfs); err != nil {
		return nil, err
	}
	return json.Marshal(cfg)
}

func equalDigests(a, b []Digest) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
