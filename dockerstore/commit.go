package dockerstore

import (
	"encoding/json"
	"fmt"
	"io"
	"time"
)

// Commit writes a `docker save` archive of what `docker commit` would make
// of container c: its image's layers (byte for byte, as Save), c's
// changes over its init layer as a new top layer (Docker's whiteout
// format), and a config that is the image's with c's run config, a
// history step and the new layer; tagged tag when not "". The new
// image's id is in the report. format is the archive's, as Save's.
func Commit(w io.Writer, format Format, s *Store, c *Container, tag string, src LayerSource, warn io.Writer, now time.Time) (*SaveReport, error) {
	if c.Driver != s.Driver || c.MountID == "" {
		return nil, fmt.Errorf("%w: container %.12s has no %s read-write layer (driver %q)", ErrNotFound, c.ID, s.Driver, c.Driver)
	}
	sv := newSaver(w, format, s, src, warn)
	img, err := s.Image(c.Image)
	if err != nil {
		return nil, err
	}
	m, diffIDs, err := sv.layers(img)
	if err != nil {
		return sv.rep, err
	}
	d, n, err := sv.plainLayer(c.MountID, c.InitID)
	if err != nil {
		return sv.rep, fmt.Errorf("container %.12s changes (%s): %w", c.ID, c.MountID, err)
	}
	sv.sizes[d] = n
	sv.rep.Layers++
	sv.rep.Bytes += n
	diffIDs = append(diffIDs, d)
	m.Layers = append(m.Layers, sv.layerName(d))
	raw, err := commitConfig(img.Raw, c, diffIDs, now)
	if err != nil {
		return sv.rep, fmt.Errorf("container %.12s: %w", c.ID, err)
	}
	saved := SavedImage{ID: DigestOf(raw), DiffIDs: diffIDs}
	if tag != "" {
		saved.Tags, m.RepoTags = []string{tag}, []string{tag}
	}
	if m, err = sv.addImage(m, saved, raw); err != nil {
		return sv.rep, err
	}
	return sv.rep, sv.finish([]manifestEntry{m})
}

// commitConfig is the image config raw made the commit of c, as Docker's
// commit builds it: c's run config, the container's id, a new created
// time and history step, the new layer.
func commitConfig(raw []byte, c *Container, diffIDs []Digest, now time.Time) ([]byte, error) {
	var cfg map[string]json.RawMessage
	if err := json.Unmarshal(raw, &cfg); err != nil {
		return nil, fmt.Errorf("%w: image config: %w", ErrInvalid, err)
	}
	var history []map[string]any
	if h, ok := cfg["history"]; ok {
		if err := json.Unmarshal(h, &history); err != nil {
			return nil, fmt.Errorf("%w: image history: %w", ErrInvalid, err)
		}
	}
	created := now.UTC().Format(time.RFC3339Nano)
	history = append(history, map[string]any{"created": created, "created_by": c.Command, "comment": "thinlayer commit"})
	set := map[string]any{"created": created, "container": c.ID, "history": history,
		"rootfs": map[string]any{"type": "layers", "diff_ids": diffIDs}}
	if len(c.RawConfig) > 0 {
		set["config"], set["container_config"] = c.RawConfig, c.RawConfig
	}
	for k, v := range set {
		b, err := json.Marshal(v)
		if err != nil {
			return nil, err
		}
		cfg[k] = b
	}
	return json.Marshal(cfg)
}
