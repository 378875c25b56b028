package snapshotter

import (
	"errors"
	"time"
)

// The types below mirror containerd's snapshots package (Kind, Info, Usage,
// mount.Mount) so the library needs none of containerd's modules; the
// proxy-plugin server in the containerd module converts one to one.

// Kind is a snapshot's kind, numbered as containerd numbers them.
type Kind uint8

const (
	KindUnknown Kind = iota
	KindView
	KindActive
	KindCommitted
)

func (k Kind) String() string {
	switch k {
	case KindView:
		return "View"
	case KindActive:
		return "Active"
	case KindCommitted:
		return "Committed"
	}
	return "Unknown"
}

// Info describes a snapshot: its key (Name), its parent's name, labels.
type Info struct {
	Kind    Kind
	Name    string
	Parent  string `json:",omitempty"`
	Labels  map[string]string
	Created time.Time
	Updated time.Time
}

// Usage is what a snapshot takes beyond its parent (see
// Snapshotter.Usage). Inodes is not known for a block device without
// mounting it and stays 0.
type Usage struct {
	Inodes int64
	Size   int64
}

// Mount is a mount spec for the client to mount: a block device.
type Mount struct {
	Type    string
	Source  string
	Options []string
}

// Opt sets snapshot properties at Prepare, View and Commit.
type Opt func(*Info) error

// WithLabels sets the labels of a new snapshot.
func WithLabels(labels map[string]string) Opt {
	return func(i *Info) error {
		i.Labels = labels
		return nil
	}
}

// Sentinel errors, one per errdefs class containerd's clients branch on.
var (
	ErrNotFound           = errors.New("snapshot not found")
	ErrAlreadyExists      = errors.New("snapshot already exists")
	ErrFailedPrecondition = errors.New("failed precondition")
	ErrInvalidArgument    = errors.New("invalid argument")
	ErrClosed             = errors.New("snapshotter closed")
)
