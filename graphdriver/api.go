// Package graphdriver is thinlayer's container storage driver: Moby's
// "devicemapper" graphdriver contract, options and on-disk layout, on the
// pure-Go DeviceSet. Layers are thin snapshots; Get mounts a layer and
// returns its root directory, Put unmounts it after the last user.
package graphdriver

import (
	"errors"
	"io"

	"github.com/thinlayer/thinlayer/deviceset"
	"github.com/thinlayer/thinlayer/layertar"
)

// Driver is the contract a container engine uses (Moby's graphdriver.Driver
// with its diff methods).
type Driver interface {
	String() string
	CreateReadWrite(id, parent string, opts *CreateOpts) error
	Create(id, parent string, opts *CreateOpts) error
	Remove(id string) error
	Get(id, mountLabel string) (string, error)
	Put(id string) error
	Exists(id string) bool
	Status() [][2]string
	GetMetadata(id string) (map[string]string, error)
	Cleanup() error
	Diff(id, parent string) (io.ReadCloser, error)
	Changes(id, parent string) ([]Change, error)
	ApplyDiff(id, parent string, diff io.Reader) (size int64, err error)
	DiffSize(id, parent string) (size int64, err error)
}

// CreateOpts are the per-layer options of Create.
type CreateOpts struct {
	MountLabel string
	StorageOpt map[string]string // "size": grow the layer beyond its parent
}

// Types shared with fsutil, where the tree and tar work is done.
type (
	Change          = layertar.Change
	ChangeKind      = layertar.ChangeKind
	IdentityMapping = layertar.IdentityMapping
	IDMap           = layertar.IDMap
)

// Change kinds, as Moby numbers them.
const (
	ChangeModify = layertar.ChangeModify
	ChangeAdd    = layertar.ChangeAdd
	ChangeDelete = layertar.ChangeDelete
)

// Errors callers branch on.
var (
	// ErrNotSupported: Init found no usable dm-thin here (or is not root).
	ErrNotSupported = errors.New("driver not supported")
	// ErrInvalidID: an id or parent that cannot name a layer (the same
	// sentinel as the DeviceSet's).
	ErrInvalidID = deviceset.ErrInvalidHash
)

// DriverName is what String returns.
const DriverName = "devicemapper"
