package cli

import (
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"time"

	units "github.com/docker/go-units"

	"github.com/thinlayer/thinlayer/dockerstore"
)

// Leaving devicemapper: Docker's image store beside the home lists the
// images and containers (images, containers) and save writes them as
// `docker save` archives any engine loads. Docker must be stopped: its
// store changes under a running dockerd.

// dataRoot is Docker's data root: given, or the directory holding the home.
func (h Home) dataRoot(given string) string {
	if given != "" {
		return given
	}
	return filepath.Dir(filepath.Clean(h.dir()))
}

// openDockerStore opens Docker's store for the devicemapper driver,
// refusing while a dockerd runs.
func openDockerStore(dataRoot string) (*dockerstore.Store, error) {
	if pid := runningDockerd(); pid != 0 {
		return nil, fmt.Errorf("%w (pid %d): its image store may change under us; stop it first (systemctl stop docker docker.socket)", ErrDockerRunning, pid)
	}
	return dockerstore.Open(dataRoot, DockerBuiltinDriver)
}

// ImageList is what `thinlayer images` shows.
type ImageList struct {
	DataRoot string                 `json:"data_root"`
	Images   []dockerstore.ImageRow `json:"images"`
}

// Images lists the images of the Docker whose data root is dataRoot (""
// for the home's parent), as `docker images` did (-a with all).
func (h Home) Images(dataRoot string, all bool) (*ImageList, error) {
	l := &ImageList{DataRoot: h.dataRoot(dataRoot)}
	s, err := openDockerStore(l.DataRoot)
	if err != nil {
		return nil, err
	}
	defer s.Close()
	l.Images, err = s.ImageRows(all)
	return l, err
}

// Print writes the list as `docker images` does.
func (l *ImageList) Print(w io.Writer) error {
	rows := [][]string{{"REPOSITORY", "TAG", "IMAGE ID", "CREATED", "LAYERS", "SIZE"}}
	for _, r := range l.Images {
		rows = append(rows, []string{r.Repo, r.Tag, r.ID.Short(), ago(r.Created), fmt.Sprint(r.Layers),
			units.HumanSizeWithPrecision(float64(r.Size), 3)})
	}
	return table(w, rows)
}

func ago(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return units.HumanDuration(time.Since(t)) + " ago"
}

// ContainerList is what `thinlayer containers` shows.
type ContainerList struct {
	DataRoot   string          `json:"data_root"`
	Containers []ContainerInfo `json:"containers"`
	Warning    string          `json:"warning,omitempty"`
}

// ContainerInfo is a container and the space its writes took.
type ContainerInfo struct {
	*dockerstore.Container
	// Changed is the space the pool mapped for the read-write layer alone:
	// what the container wrote. Nil when unknown.
	Changed *uint64 `json:"changed,omitempty"`
}

// Containers lists the containers as `docker ps -a` did, with their
// read-write layers and, when the home can be read, what each wrote.
func (h Home) Containers(dataRoot string) (*ContainerList, error) {
	l := &ContainerList{DataRoot: h.dataRoot(dataRoot)}
	s, err := openDockerStore(l.DataRoot)
	if err != nil {
		return nil, err
	}
	defer s.Close()
	cs, err := s.Containers()
	if err != nil {
		return nil, err
	}
	exclusive := map[string]*uint64{}
	if layers, err := h.List(); err != nil {
		l.Warning = "space written unknown: " + err.Error()
	} else {
		for _, x := range layers.Layers {
			exclusive[x.ID] = x.Exclusive
		}
	}
	for _, c := range cs {
		l.Containers = append(l.Containers, ContainerInfo{Container: c, Changed: exclusive[c.MountID]})
	}
	return l, nil
}

// Print writes the list as `docker ps -a` does, with the layer columns.
func (l *ContainerList) Print(w io.Writer) error {
	rows := [][]string{{"CONTAINER ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "NAMES", "RW LAYER", "WRITTEN"}}
	for _, c := range l.Containers {
		layer := c.MountID
		if len(layer) > 12 {
			layer = layer[:12]
		}
		if c.Driver != DockerBuiltinDriver {
			layer = "(driver " + c.Driver + ")"
		}
		rows = append(rows, []string{c.ID[:12], c.ImageName, quoteCommand(c.Command), ago(c.Created), c.State.Status(),
			c.Name, layer, humanOpt(c.Changed)})
	}
	if err := table(w, rows); err != nil {
		return err
	}
	if l.Warning != "" {
		_, err := fmt.Fprintf(w, "note: %s\n", l.Warning)
		return err
	}
	return nil
}

func quoteCommand(s string) string {
	if len(s) > 20 {
		s = s[:19] + "…"
	}
	return `"` + strings.Map(func(r rune) rune {
		if r < ' ' {
			return '?'
		}
		return r
	}, s) + `"`
}
