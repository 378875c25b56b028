package dockerstore

import (
	"encoding/json"
	"fmt"
	"path"
	"sort"
	"strings"
	"time"
)

// Container is a container from <data-root>/containers/<id>/config.v2.json
// and its read-write layer from layerdb/mounts/<id>/.
type Container struct {
	ID        string    `json:"id"`
	Name      string    `json:"name"`
	Image     Digest    `json:"image_id"`
	ImageName string    `json:"image"` // what it was created from, as `docker ps` shows
	Command   string    `json:"command"`
	Created   time.Time `json:"created"`
	State     State     `json:"state"`
	Driver    string    `json:"driver"`
	// The read-write layer: its graph-driver id, its init layer's, and the
	// chain id of the image's top layer it sits on ("" for none).
	MountID string `json:"mount_id,omitempty"`
	// RawConfig is the container's run config, a commit's image config.
	RawConfig json.RawMessage `json:"-"`
	InitID    string          `json:"init_id,omitempty"`
	Parent    Digest          `json:"parent,omitempty"`
}

// State is what Docker last recorded of a container's process.
type State struct {
	Running    bool      `json:"running"`
	Paused     bool      `json:"paused"`
	Restarting bool      `json:"restarting"`
	Dead       bool      `json:"dead"`
	ExitCode   int       `json:"exit_code"`
	StartedAt  time.Time `json:"started_at"`
	FinishedAt time.Time `json:"finished_at"`
}

// Status is the word `docker ps` starts its STATUS column with.
func (s State) Status() string {
	switch {
	case s.Running && s.Paused:
		return "paused"
	case s.Restarting:
		return "restarting"
	case s.Running:
		return "running"
	case s.Dead:
		return "dead"
	case s.StartedAt.IsZero() || s.StartedAt.Year() <= 1:
		return "created"
	}
	return fmt.Sprintf("exited (%d)", s.ExitCode)
}

type containerConfig struct {
	ID, Name, Image, Driver, Path string
	Args                          []string
	Created                       time.Time
	State                         struct {
		Running, Paused, Restarting, Dead bool
		ExitCode                          int
		StartedAt, FinishedAt             time.Time
	}
	Config json.RawMessage
}

// ParseContainer reads a config.v2.json; id is the directory it is in.
func ParseContainer(id string, b []byte) (*Container, error) {
	var c containerConfig
	if err := json.Unmarshal(b, &c); err != nil {
		return nil, fmt.Errorf("%w: container %.12s config.v2.json: %w", ErrInvalid, id, err)
	}
	if c.ID != id || !isHex64(id) {
		return nil, fmt.Errorf("%w: container directory %q holds the config of %q", ErrInvalid, truncate(id), truncate(c.ID))
	}
	var run struct{ Image string }
	if len(c.Config) > 0 {
		if err := json.Unmarshal(c.Config, &run); err != nil {
			return nil, fmt.Errorf("%w: container %.12s config: %w", ErrInvalid, id, err)
		}
	}
	img, err := ParseDigest(c.Image)
	if err != nil {
		return nil, fmt.Errorf("container %.12s image: %w", id, err)
	}
	return &Container{ID: id, Name: strings.TrimPrefix(c.Name, "/"), Image: img, ImageName: run.Image, RawConfig: c.Config,
		Command: strings.Join(append([]string{c.Path}, c.Args...), " "), Created: c.Created, State: State(c.State), Driver: c.Driver}, nil
}

// MountFiles are the contents of layerdb/mounts/<id>/; Parent nil when
// absent (an image of no layers).
type MountFiles struct{ MountID, InitID, Parent []byte }

// ParseMount checks a container's read-write layer record into c.
func ParseMount(c *Container, f MountFiles) error {
	c.MountID = strings.TrimSpace(string(f.MountID))
	if err := checkLayerID(c.MountID, false); err != nil {
		return fmt.Errorf("container %.12s mount-id: %w", c.ID, err)
	}
	if f.InitID != nil {
		c.InitID = strings.TrimSpace(string(f.InitID))
		if err := checkLayerID(c.InitID, true); err != nil {
			return fmt.Errorf("container %.12s init-id: %w", c.ID, err)
		}
	}
	if f.Parent != nil {
		p, err := ParseDigest(strings.TrimSpace(string(f.Parent)))
		if err != nil {
			return fmt.Errorf("container %.12s parent: %w", c.ID, err)
		}
		c.Parent = p
	}
	return nil
}

// Containers reads every container's config and read-write layer record,
// newest first as `docker ps -a` lists them. A container of another
// storage driver is listed without its layer.
func (s *Store) Containers() ([]*Container, error) {
	if s.containers == nil {
		return nil, nil
	}
	ids, err := listDir(path.Join(s.DataRoot, "containers"))
	if err != nil {
		return nil, err
	}
	var list []*Container
	for _, id := range ids {
		c, err := s.Container(id)
		if err != nil {
			return nil, err
		}
		list = append(list, c)
	}
	sortNewestFirst(list)
	return list, nil
}

// Container reads container id (its full id).
func (s *Store) Container(id string) (*Container, error) {
	if !isHex64(id) || s.containers == nil {
		return nil, fmt.Errorf("%w: container %q", ErrNotFound, truncate(id))
	}
	b, err := readFile(s.containers, id+"/config.v2.json", maxConfigFile)
	if err != nil {
		return nil, fmt.Errorf("container %.12s: %w", id, err)
	}
	c, err := ParseContainer(id, b)
	if err != nil || c.Driver != s.Driver {
		return c, err
	}
	var f MountFiles
	dir := "layerdb/mounts/" + id + "/"
	for _, x := range []struct {
		name     string
		to       *[]byte
		optional bool
	}{{"mount-id", &f.MountID, false}, {"init-id", &f.InitID, true}, {"parent", &f.Parent, true}} {
		b, err := readFile(s.image, dir+x.name, maxSmallFile)
		if x.optional && isNotFound(err) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("container %.12s: %w", id, err)
		}
		*x.to = b
	}
	return c, ParseMount(c, f)
}

func sortNewestFirst(list []*Container) {
	sort.SliceStable(list, func(i, j int) bool { return list[i].Created.After(list[j].Created) })
}

// FindContainer finds a container by name, full id or a unique prefix of
// its id, as the docker CLI does.
func FindContainer(list []*Container, name string) (*Container, error) {
	var byPrefix []*Container
	for _, c := range list {
		if c.Name == strings.TrimPrefix(name, "/") || c.ID == name {
			return c, nil
		}
		if len(name) >= 1 && strings.HasPrefix(c.ID, name) {
			byPrefix = append(byPrefix, c)
		}
	}
	if len(byPrefix) == 1 {
		return byPrefix[0], nil
	}
	if len(byPrefix) > 1 {
		return nil, fmt.Errorf("%w: %q is the prefix of %d containers", ErrNotFound, truncate(name), len(byPrefix))
	}
	return nil, fmt.Errorf("%w: no container %q", ErrNotFound, truncate(name))
}
