package cli

import (
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/sys/unix"

	"github.com/thinlayer/thinlayer/deviceset"
	"github.com/thinlayer/thinlayer/fsutil"
	"github.com/thinlayer/thinlayer/graphdriver"
	"github.com/thinlayer/thinlayer/layertar"
	"github.com/thinlayer/thinlayer/snapshotter"
)

// Export writes layer id as a tar to w: its whole tree, or with parent its
// changes over parent (whiteouts for deletions), as Moby's Diff does. The
// home is opened read-only. It returns the bytes written.
func (h Home) Export(id, parent string, w io.Writer) (n int64, err error) {
	err = h.look(func(ds *deviceset.DeviceSet) error {
		n, err = exportLayer(ds, id, parent, w, h.bar(-1, "export "+id))
		return err
	})
	return n, err
}

func exportLayer(ds *deviceset.DeviceSet, id, parent string, w io.Writer, bar *progressbar.ProgressBar) (n int64, err error) {
	root, release, err := mountForRead(ds, hashOf(id))
	if err != nil {
		return 0, err
	}
	defer func() { err = errors.Join(err, release()) }()
	rc, err := exportStream(ds, root, parent)
	if err != nil {
		return 0, err
	}
	n, err = copyWithProgress(w, rc, bar)
	if cerr := rc.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return n, fmt.Errorf("export layer %q: %w", id, err)
	}
	return n, nil
}

func exportStream(ds *deviceset.DeviceSet, root, parent string) (rc io.ReadCloser, err error) {
	if parent == "" {
		return layertar.TarTree(root, layertar.IdentityMapping{})
	}
	parentRoot, release, err := mountForRead(ds, hashOf(parent))
	if err != nil {
		return nil, fmt.Errorf("parent: %w", err)
	}
	// The changes are known once compared; the tar reads only root.
	defer func() { err = errors.Join(err, release()) }()
	changes, err := layertar.Changes(root, parentRoot)
	if err != nil {
		return nil, fmt.Errorf("compare with parent %q: %w", parent, err)
	}
	return layertar.ExportChanges(root, changes, layertar.IdentityMapping{})
}

// mountForRead gives a directory that shows a layer's files, read-only:
// a private bind mount of them (see layerFiles). A layer already mounted
// (by `thinlayer mount`, say) is read where it is: mounting the same
// filesystem again with other flags would fail. Else it is mounted on a
// private directory until release.
func mountForRead(ds *deviceset.DeviceSet, hash string) (root string, release func() error, err error) {
	md, err := ds.Metadata(hash)
	if err != nil {
		return "", nil, err
	}
	f, ok, err := mountedFiles(hash, md.DeviceName)
	if err != nil {
		return "", nil, err
	}
	release = func() error { return nil }
	if !ok {
		staging, err := os.MkdirTemp("", "thinlayer-read-")
		if err != nil {
			return "", nil, err
		}
		if f, err = mountFiles(ds, hash, staging); err != nil {
			os.Remove(staging)
			return "", nil, err
		}
		release = func() error { return ds.UnmountDevice(hash, staging) }
	}
	root, unbind, err := bindForRead(f)
	f.close() // before release: an open descriptor keeps the device busy
	if err != nil {
		return "", nil, errors.Join(err, release())
	}
	unmount := release
	return root, func() error { return errors.Join(unbind(), unmount()) }, nil
}

// bindForRead binds the layer's files read-only on a new private
// directory; a layer without files (no rootfs/: never mounted by a
// driver) gets an empty directory.
func bindForRead(f layerFiles) (dir string, release func() error, err error) {
	dir, err = os.MkdirTemp("", "thinlayer-files-")
	if err != nil {
		return "", nil, err
	}
	if f.none {
		return dir, func() error { return os.Remove(dir) }, nil
	}
	if err := fsutil.Mount(f.path(), dir, "", unix.MS_BIND|unix.MS_RDONLY, ""); err != nil {
		return "", nil, errors.Join(err, os.Remove(dir))
	}
	return dir, func() error {
		return errors.Join(fsutil.Unmount(dir, unix.MNT_DETACH), os.Remove(dir))
	}, nil
}

// Import creates layer id on parent ("" for the base) and applies the tar
// r holds (plain, gzip or zstd) to it; size is r's length for the progress
// bar, -1 if unknown. A failed import removes the layer again. It returns
// the bytes of file content written.
func (h Home) Import(id, parent string, r io.Reader, size int64) (n int64, err error) {
	if err := checkGraphLayerIDs(id, parent); err != nil {
		return 0, err
	}
	if err := h.prepareWrite(needIdle); err != nil {
		return 0, err
	}
	d, err := graphdriver.Init(h.dir(), h.options(), graphdriver.IdentityMapping{})
	if err != nil {
		return 0, fmt.Errorf("open home %s: %w", h.dir(), err)
	}
	defer func() { err = errors.Join(err, d.Cleanup()) }()
	if err := d.Create(id, parent, nil); err != nil {
		return 0, fmt.Errorf("import layer %q: %w", id, err)
	}
	bar := h.bar(size, "import "+id)
	if bar != nil {
		r = io.TeeReader(r, bar)
	}
	n, err = d.ApplyDiff(id, parent, r)
	if bar != nil {
		_ = bar.Finish()
	}
	if err != nil {
		return n, errors.Join(err, d.Remove(id))
	}
	return n, nil
}

// checkGraphLayerIDs refuses what import, which makes graph driver
// layers (files under rootfs/), must not make: a layer with an id of the
// containerd snapshotter's, whose reconcile would delete it as its own
// leftover, or one on a snapshotter layer, whose root is a container's "/"
// (its `rootfs` the container's to make, a link to the host's / maybe).
func checkGraphLayerIDs(id, parent string) error {
	if isSnapshotLayer(id) {
		return fmt.Errorf("%w: %q has the prefix of the containerd snapshotter's layers (%s): import makes graph driver layers", ErrUsage, id, snapshotter.IDPrefix)
	}
	if isSnapshotLayer(hashOf(parent)) {
		return fmt.Errorf("%w: parent %q is a containerd snapshot, its files at its filesystem's root: import makes graph driver layers, files under rootfs/, on graph driver layers only", ErrUsage, parent)
	}
	return nil
}

// bar is a progress bar on h.Progress, or nil when there is none.
func (h Home) bar(total int64, what string) *progressbar.ProgressBar {
	if h.Progress == nil {
		return nil
	}
	out := h.Progress
	return progressbar.NewOptions64(total,
		progressbar.OptionSetWriter(out),
		progressbar.OptionSetDescription(what),
		progressbar.OptionShowBytes(true),
		progressbar.OptionShowTotalBytes(true),
		progressbar.OptionThrottle(100*time.Millisecond),
		progressbar.OptionSpinnerType(14),
		progressbar.OptionFullWidth(),
		progressbar.OptionOnCompletion(func() { fmt.Fprintln(out) }))
}

func copyWithProgress(w io.Writer, r io.Reader, bar *progressbar.ProgressBar) (int64, error) {
	if bar == nil {
		return io.Copy(w, r)
	}
	n, err := io.Copy(io.MultiWriter(w, bar), r)
	_ = bar.Finish()
	return n, err
}
