package graphdriver

import (
	"errors"
	"fmt"
	"io"

	"github.com/thinlayer/thinlayer/internal/faults"
	"github.com/thinlayer/thinlayer/layertar"
)

// The diff methods work on mounted trees, as Moby's naive diff driver does:
// snapshots share blocks, but the tar format wants files.

// mounted mounts a layer (and its parent, if any) for the length of f.
func (d *driver) mounted(id, parent string, f func(root, parentRoot string) error) (err error) {
	root, err := d.Get(id, "")
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, d.release(id)) }()
	parentRoot := ""
	if parent != "" {
		if parentRoot, err = d.Get(parent, ""); err != nil {
			return err
		}
		defer func() { err = errors.Join(err, d.release(parent)) }()
	}
	return f(root, parentRoot)
}

// Changes lists what differs in id from parent ("" = from nothing).
func (d *driver) Changes(id, parent string) (changes []Change, err error) {
	err = d.mounted(id, parent, func(root, parentRoot string) error {
		changes, err = layertar.Changes(root, parentRoot)
		return err
	})
	return changes, err
}

// DiffSize is the size of the regular files id adds or changes over parent.
func (d *driver) DiffSize(id, parent string) (size int64, err error) {
	err = d.mounted(id, parent, func(root, parentRoot string) error {
		size, err = layertar.DiffSize(root, parentRoot)
		return err
	})
	return size, err
}

// Diff returns the layer as a tar: the whole tree when parent is "", else
// its changes over parent with whiteouts for deletions. The layers stay
// mounted until the stream is closed.
func (d *driver) Diff(id, parent string) (io.ReadCloser, error) {
	root, err := d.Get(id, "")
	if err != nil {
		return nil, err
	}
	release := func() error { return d.release(id) }
	var rc io.ReadCloser
	if parent == "" {
		rc, err = layertar.TarTree(root, d.idMap)
	} else {
		rc, err = d.diffAgainst(root, parent, &release)
	}
	if err != nil {
		return nil, errors.Join(err, release())
	}
	return &releaseOnClose{ReadCloser: rc, release: release}, nil
}

func (d *driver) diffAgainst(root, parent string, release *func() error) (io.ReadCloser, error) {
	parentRoot, err := d.Get(parent, "")
	if err != nil {
		return nil, err
	}
	putID := *release
	*release = func() error { return errors.Join(d.release(parent), putID()) }
	changes, err := layertar.Changes(root, parentRoot)
	if err != nil {
		return nil, err
	}
	return layertar.ExportChanges(root, changes, d.idMap)
}

// release is Put for the driver's own Gets, which no caller can repeat:
// a Put that failed and left the layer mounted is tried once more.
func (d *driver) release(id string) error {
	err := d.Put(id)
	if err != nil && stillMounted(d.mountPoint(id)) {
		if err2 := d.Put(id); err2 == nil {
			return err // reported, but nothing is left behind
		}
	}
	return err
}

type releaseOnClose struct {
	io.ReadCloser
	release func() error
	closed  bool
}

func (r *releaseOnClose) Close() error {
	if r.closed {
		return nil
	}
	r.closed = true
	return errors.Join(r.ReadCloser.Close(), r.release())
}

// ApplyDiff unpacks a layer tar (plain, gzip or zstd) into id, which must
// already exist (created on parent), and returns the bytes of file content
// written.
func (d *driver) ApplyDiff(id, parent string, diff io.Reader) (size int64, err error) {
	root, err := d.Get(id, "")
	if err != nil {
		return 0, err
	}
	defer func() { err = errors.Join(err, d.release(id)) }()
	stream, err := layertar.DecompressStream(diff)
	if err != nil {
		return 0, fmt.Errorf("apply diff to layer %q: %w", id, err)
	}
	defer stream.Close()
	if err := faults.Point("applydiff.untar"); err != nil {
		return 0, err
	}
	size, err = layertar.ApplyLayer(root, &faultAfter{r: stream, n: 32 << 10}, layertar.ApplyOptions{IDMap: d.idMap})
	if err != nil {
		return size, fmt.Errorf("apply diff to layer %q: %w", id, err)
	}
	return size, nil
}

// faultAfter passes the "applydiff.midstream" fault point once n bytes of
// the layer have been read: a crash walk can stop an apply half-way.
type faultAfter struct {
	r    io.Reader
	n    int64
	done bool
}

func (f *faultAfter) Read(p []byte) (int, error) {
	if !f.done && f.n <= 0 {
		f.done = true
		if err := faults.Point("applydiff.midstream"); err != nil {
			return 0, err
		}
	}
	k, err := f.r.Read(p)
	f.n -= int64(k)
	return k, err
}
