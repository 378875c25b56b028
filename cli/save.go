package cli

import (
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/thinlayer/thinlayer/deviceset"
	"github.com/thinlayer/thinlayer/dockerstore"
	"github.com/thinlayer/thinlayer/layertar"
)

// SaveImages writes the images names name (or every image with all) of
// the Docker at dataRoot as one `docker save` archive to w, each layer
// reassembled from its thin device and tar-split record. The home is
// opened read-only; warn gets a note per layer saved without a record.
func (h Home) SaveImages(dataRoot string, names []string, all bool, format dockerstore.Format, w, warn io.Writer) (rep *dockerstore.SaveReport, err error) {
	s, err := openDockerStore(h.dataRoot(dataRoot))
	if err != nil {
		return nil, err
	}
	defer s.Close()
	want, err := imagesToSave(s, names, all)
	if err != nil {
		return nil, err
	}
	if bar := h.bar(-1, "save"); bar != nil {
		w = io.MultiWriter(w, bar)
		defer bar.Finish()
	}
	err = h.look(func(ds *deviceset.DeviceSet) error {
		rep, err = dockerstore.Save(w, format, s, want, homeLayers{ds}, warn)
		return err
	})
	return rep, err
}

// CommitContainer writes what `docker commit` + `docker save` would have
// made of container name, tagged tag, to w. The home is opened read-only.
func (h Home) CommitContainer(dataRoot, name, tag string, format dockerstore.Format, w, warn io.Writer) (rep *dockerstore.SaveReport, err error) {
	s, err := openDockerStore(h.dataRoot(dataRoot))
	if err != nil {
		return nil, err
	}
	defer s.Close()
	list, err := s.Containers()
	if err != nil {
		return nil, err
	}
	ctr, err := dockerstore.FindContainer(list, name)
	if err != nil {
		return nil, err
	}
	if tag != "" {
		if tag, err = dockerstore.NormalizeTag(tag); err != nil {
			return nil, fmt.Errorf("%w: --tag: %w", ErrUsage, err)
		}
	}
	if ctr.State.Running || ctr.State.Paused {
		fmt.Fprintf(warn, "note: container %s was running when Docker stopped: its files may be half written\n", ctr.Name)
	}
	err = h.look(func(ds *deviceset.DeviceSet) error {
		rep, err = dockerstore.Commit(w, format, s, ctr, tag, homeLayers{ds}, warn, time.Now())
		return err
	})
	return rep, err
}

// imagesToSave resolves names as the docker CLI does; each image once,
// under the tags asked for (all its tags when named by id or with all).
func imagesToSave(s *dockerstore.Store, names []string, all bool) ([]dockerstore.SaveImage, error) {
	if all == (len(names) > 0) {
		return nil, fmt.Errorf("%w: name images, or --all", ErrUsage)
	}
	refs, err := s.Refs()
	if err != nil {
		return nil, err
	}
	ids, err := s.ImageIDs()
	if err != nil {
		return nil, err
	}
	tags := dockerstore.Tags(refs)
	if all {
		want := make([]dockerstore.SaveImage, 0, len(ids))
		for _, id := range ids {
			want = append(want, dockerstore.SaveImage{ID: id, Tags: tags[id]})
		}
		return want, nil
	}
	var want []dockerstore.SaveImage
	at := map[dockerstore.Digest]int{}
	for _, n := range names {
		id, tag, err := dockerstore.Resolve(n, refs, ids)
		if err != nil {
			return nil, err
		}
		i, seen := at[id]
		if !seen {
			i, at[id] = len(want), len(want)
			want = append(want, dockerstore.SaveImage{ID: id})
		}
		switch {
		case tag == "":
			want[i].Tags = tags[id]
		case !contains(want[i].Tags, tag):
			want[i].Tags = append(want[i].Tags, tag)
		}
	}
	return want, nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// homeLayers gives the files of the home's layers to dockerstore: each
// layer id is checked, its device mounted read-only while it is read.
type homeLayers struct{ ds *deviceset.DeviceSet }

func (hl homeLayers) Files(cacheID string) (dockerstore.FileOpener, func() error, error) {
	if err := hl.ds.CheckLayerID(cacheID); err != nil {
		return nil, nil, err
	}
	root, release, err := mountForRead(hl.ds, cacheID)
	if err != nil {
		return nil, nil, err
	}
	lr, err := layertar.OpenLayerRoot(root)
	if err != nil {
		return nil, nil, errors.Join(err, release())
	}
	return lr, func() error { return errors.Join(lr.Close(), release()) }, nil
}

func (hl homeLayers) PlainDiff(cacheID, parentCacheID string) (io.ReadCloser, error) {
	for _, id := range []string{cacheID, parentCacheID} {
		if err := hl.ds.CheckLayerID(id); err != nil {
			return nil, err
		}
	}
	root, release, err := mountForRead(hl.ds, cacheID)
	if err != nil {
		return nil, err
	}
	rc, err := exportStream(hl.ds, root, parentCacheID)
	if err != nil {
		return nil, errors.Join(err, release())
	}
	return &releasingReader{ReadCloser: rc, release: release}, nil
}

// releasingReader releases the layer's mount once its tar is read.
type releasingReader struct {
	io.ReadCloser
	release func() error
}

func (r *releasingReader) Close() error { return errors.Join(r.ReadCloser.Close(), r.release()) }
