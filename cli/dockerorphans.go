package cli

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/thinlayer/thinlayer/deviceset"
	dm "github.com/thinlayer/thinlayer/devmapper"
	"github.com/thinlayer/thinlayer/dockerstore"
)

// Docker creates a layer in the driver before it records it in its layer
// store: a dockerd or plugin killed between the two (an interrupted
// docker load, with its own devicemapper driver as with the plugin)
// leaves a layer no image or container names, which Docker never uses nor
// removes. docker-orphans finds those layers by Docker's own store, and
// removes them with --remove.

// DockerOrphanReport is what docker-orphans found, or removed.
type DockerOrphanReport struct {
	DataRoot string         `json:"data_root"`
	Driver   string         `json:"driver"` // image/<driver> of the data root
	Removed  bool           `json:"removed"`
	Orphans  []DockerOrphan `json:"orphans"`
	Failed   []Problem      `json:"failed"`
}

// DockerOrphan is a layer of the home that Docker's store does not name.
type DockerOrphan struct {
	ID       string    `json:"id"`
	DeviceID dm.ThinID `json:"device_id"`
	Parent   string    `json:"parent,omitempty"`
}

// DockerOrphans lists (remove: removes) the layers of the home that the
// Docker of dataRoot does not name. Docker must be stopped. Layers of a
// containerd snapshotter in the same home, and layers already marked
// deleted (gc's), are not Docker's to judge and are left alone.
func (h Home) DockerOrphans(dataRoot, driver string, remove bool) (*DockerOrphanReport, error) {
	r := &DockerOrphanReport{DataRoot: h.dataRoot(dataRoot), Removed: remove, Orphans: []DockerOrphan{}, Failed: []Problem{}}
	var err error
	if r.Driver, err = dockerDriverOf(r.DataRoot, driver); err != nil {
		return nil, err
	}
	if pid := runningDockerd(); pid != 0 {
		return nil, fmt.Errorf("%w (pid %d): it may be creating layers it has not recorded yet; stop it first (systemctl stop docker docker.socket)", ErrDockerRunning, pid)
	}
	s, err := dockerstore.Open(r.DataRoot, r.Driver)
	if err != nil {
		return nil, err
	}
	refs, err := s.ReferencedLayers()
	s.Close()
	if err != nil {
		return nil, err
	}
	if err := h.look(func(ds *deviceset.DeviceSet) error { return findDockerOrphans(r, ds, refs) }); err != nil || !remove || len(r.Orphans) == 0 {
		return r, err
	}
	ds, err := h.openWritable(needIdle, func(c *deviceset.Config) { c.DeferredDelete = false })
	if err != nil {
		return r, err
	}
	for _, o := range r.Orphans {
		if err := ds.DeleteDevice(o.ID, true); err != nil {
			r.Failed = append(r.Failed, Problem{What: fmt.Sprintf("layer %q: %v", o.ID, err),
				Fix: "find what still holds it open (grep its device in /proc/*/mountinfo) and run docker-orphans --remove again"})
			continue
		}
		if err := unix.Rmdir(filepath.Join(h.dir(), "mnt", o.ID)); err != nil && !errors.Is(err, unix.ENOENT) {
			r.Failed = append(r.Failed, Problem{What: fmt.Sprintf("mount point of %q: %v", o.ID, err), Fix: "remove the empty directory by hand"})
		}
	}
	if err := ds.Shutdown(); err != nil {
		return r, fmt.Errorf("close home %s: %w", h.dir(), err)
	}
	return r, nil
}

func findDockerOrphans(r *DockerOrphanReport, ds *deviceset.DeviceSet, refs map[string]bool) error {
	hashes, err := ds.List()
	if err != nil {
		return err
	}
	for _, hash := range hashes {
		if hash == "" || refs[hash] || strings.HasPrefix(hash, deviceset.SnapshotPrefix) {
			continue
		}
		info, err := ds.Info(hash)
		if err != nil {
			return fmt.Errorf("layer %q: %w: run `thinlayer check`; nothing removed", hash, err)
		}
		if info.Deleted {
			continue
		}
		r.Orphans = append(r.Orphans, DockerOrphan{ID: hash, DeviceID: info.DeviceID})
	}
	return nil
}

// dockerDriverOf is the driver whose image store to read: given, or the
// one of devicemapper (Docker's own) and the plugin's default name whose
// image store exists; both existing is for the operator to settle.
func dockerDriverOf(dataRoot, given string) (string, error) {
	if given != "" {
		if !validDriverName(given) {
			return "", fmt.Errorf("%w: --name %q is not a storage driver name", ErrUsage, given)
		}
		return given, nil
	}
	var found []string
	for _, d := range []string{DockerBuiltinDriver, DefaultPluginName} {
		if isDir(filepath.Join(dataRoot, "image", d)) {
			found = append(found, d)
		}
	}
	switch len(found) {
	case 1:
		return found[0], nil
	case 0:
		return "", fmt.Errorf("%w: no Docker image store under %s/image (devicemapper or %s): give --data-root, or --name for a plugin of another name", ErrUsage, dataRoot, DefaultPluginName)
	}
	return "", fmt.Errorf("%w: both image/%s and image/%s exist under %s: say which Docker uses with --name", ErrUsage, found[0], found[1], dataRoot)
}

// Print lists the orphans and what became of them.
func (r *DockerOrphanReport) Print(w io.Writer) error {
	verb := "not named by"
	if r.Removed {
		verb = "removed, not named by"
	}
	fmt.Fprintf(w, "%s of the home %s Docker's image store %s/image/%s\n", plural(len(r.Orphans), "layer"), verb, r.DataRoot, r.Driver)
	for _, o := range r.Orphans {
		fmt.Fprintf(w, "  %s (thin id %d)\n", o.ID, o.DeviceID)
	}
	for _, p := range r.Failed {
		fmt.Fprintf(w, "failed: %s\n  what to do: %s\n", p.What, p.Fix)
	}
	if !r.Removed && len(r.Orphans) > 0 {
		_, err := fmt.Fprintln(w, "remove them with --remove (dockerd stopped)")
		return err
	}
	return nil
}

// Err is ErrProblems when a removal failed.
func (r *DockerOrphanReport) Err() error {
	if len(r.Failed) > 0 {
		return fmt.Errorf("%w: %s not removed", ErrProblems, plural(len(r.Failed), "layer"))
	}
	return nil
}

func orphansFlags(fs *flag.FlagSet) *cmdFlags {
	f := &cmdFlags{}
	fs.StringVar(&f.dataRoot, "data-root", "", "")
	fs.StringVar(&f.name, "name", "", "")
	fs.BoolVar(&f.remove, "remove", false, "")
	return f
}

func runDockerOrphans(c *call) error {
	r, err := c.home.DockerOrphans(c.flags.dataRoot, c.flags.name, c.flags.remove)
	if err != nil {
		return err
	}
	if err := c.output(r); err != nil {
		return err
	}
	return r.Err()
}
