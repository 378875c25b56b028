package dockerstore

import (
	"sort"
	"time"
)

// ImageRow is one line of `docker images`: an image under one tag, or
// untagged (Repo and Tag "<none>").
type ImageRow struct {
	Repo    string    `json:"repository"`
	Tag     string    `json:"tag"`
	ID      Digest    `json:"id"`
	Created time.Time `json:"created"`
	Layers  int       `json:"layers"`
	Size    int64     `json:"size"` // all its layers' content, as docker images counts
}

const none = "<none>"

// ImageRows lists the images as `docker images` does (with all, as
// `docker images -a`: untagged images another was committed on too),
// newest first.
func (s *Store) ImageRows(all bool) ([]ImageRow, error) {
	refs, err := s.Refs()
	if err != nil {
		return nil, err
	}
	ids, err := s.ImageIDs()
	if err != nil {
		return nil, err
	}
	images := make([]*Image, 0, len(ids))
	hasChild := map[Digest]bool{}
	for _, id := range ids {
		img, err := s.Image(id)
		if err != nil {
			return nil, err
		}
		images = append(images, img)
		hasChild[img.Parent] = true
	}
	tags := Tags(refs)
	var rows []ImageRow
	for _, img := range images {
		row, err := s.imageRow(img)
		if err != nil {
			return nil, err
		}
		for _, r := range refs {
			if r.Image == img.ID && !r.IsDigest() {
				row.Repo, row.Tag = r.Repo, r.Tag()
				rows = append(rows, row)
			}
		}
		if len(tags[img.ID]) == 0 && (all || !hasChild[img.ID]) {
			row.Repo, row.Tag = none, none
			rows = append(rows, row)
		}
	}
	sort.SliceStable(rows, func(i, j int) bool { return rows[i].Created.After(rows[j].Created) })
	return rows, nil
}

func (s *Store) imageRow(img *Image) (ImageRow, error) {
	row := ImageRow{ID: img.ID, Created: img.Created, Layers: len(img.DiffIDs)}
	layers, err := s.Layers(img)
	if err != nil {
		return row, err
	}
	for _, l := range layers {
		row.Size += l.Size
	}
	return row, nil
}
