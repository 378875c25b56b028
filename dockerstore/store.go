package dockerstore

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"

	"github.com/thinlayer/thinlayer/layertar"
)

// Bounds on the store's files: Docker writes none bigger.
const (
	maxSmallFile  = 4 << 10  // diff, parent, size, cache-id, mount-id, …
	maxConfigFile = 16 << 20 // an image config, a container's config.v2.json
	maxReposFile  = 64 << 20 // repositories.json
)

// ErrNotFound: the store has no such image, layer or container.
var ErrNotFound = errors.New("not in the Docker store")

// Store is Docker's image store for one storage driver and its containers'
// configs, under a data root (/var/lib/docker).
type Store struct {
	DataRoot, Driver string
	image            *layertar.LayerRoot // <data-root>/image/<driver>
	containers       *layertar.LayerRoot // <data-root>/containers; nil if absent
}

// Open opens the store of driver (devicemapper) under dataRoot.
func Open(dataRoot, driver string) (*Store, error) {
	if driver == "" || driver == "." || driver == ".." || filepath.Base(driver) != driver {
		return nil, fmt.Errorf("%w: driver name %q", ErrInvalid, driver)
	}
	dir := filepath.Join(dataRoot, "image", driver)
	img, err := layertar.OpenLayerRoot(dir)
	if err != nil {
		return nil, fmt.Errorf("docker image store: %w", err)
	}
	s := &Store{DataRoot: dataRoot, Driver: driver, image: img}
	c, err := layertar.OpenLayerRoot(filepath.Join(dataRoot, "containers"))
	switch {
	case err == nil:
		s.containers = c
	case !errors.Is(err, os.ErrNotExist):
		img.Close()
		return nil, fmt.Errorf("docker containers: %w", err)
	}
	return s, nil
}

// Close releases the store's directories.
func (s *Store) Close() error {
	err := s.image.Close()
	if s.containers != nil {
		err = errors.Join(err, s.containers.Close())
	}
	return err
}

// readFile reads rel below root: a regular file reached without a
// symlink, at most max bytes. A missing file wraps ErrNotFound.
func readFile(root *layertar.LayerRoot, rel string, max int64) ([]byte, error) {
	f, err := root.OpenFile(rel)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%w: %w", ErrNotFound, err)
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, max+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", rel, err)
	}
	if int64(len(b)) > max {
		return nil, fmt.Errorf("%w: %s is larger than %d bytes", ErrInvalid, rel, max)
	}
	return b, nil
}

// listDir names the entries of dir, sorted; none when it does not exist.
// A name is only listed here: it is opened through a LayerRoot.
func listDir(dir string) ([]string, error) {
	ents, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	names := make([]string, 0, len(ents))
	for _, e := range ents {
		names = append(names, e.Name())
	}
	sort.Strings(names)
	return names, nil
}

func (s *Store) imageDir() string { return filepath.Join(s.DataRoot, "image", s.Driver) }
