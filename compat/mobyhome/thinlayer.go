//go:build linux

package mobyhome

import (
	"github.com/docker/docker/daemon/graphdriver"
	"github.com/docker/docker/pkg/archive"

	tl "github.com/thinlayer/thinlayer/graphdriver"
)

// OpenThinlayer opens home with thinlayer's driver, with the same storage
// options Open gives Moby's, and returns it behind Moby's Driver interface
// so that the same helpers (WriteLayers, ReadFiles) drive both.
func OpenThinlayer(home string, opts []string) (graphdriver.Driver, error) {
	d, err := tl.Init(home, Options(opts...), tl.IdentityMapping{})
	if err != nil {
		return nil, err
	}
	return thinlayerDriver{d}, nil
}

// thinlayerDriver converts between Moby's option and change types and
// thinlayer's; everything else passes through.
type thinlayerDriver struct{ tl.Driver }

func convOpts(o *graphdriver.CreateOpts) *tl.CreateOpts {
	if o == nil {
		return nil
	}
	return &tl.CreateOpts{MountLabel: o.MountLabel, StorageOpt: o.StorageOpt}
}

func (d thinlayerDriver) Create(id, parent string, o *graphdriver.CreateOpts) error {
	return d.Driver.Create(id, parent, convOpts(o))
}

func (d thinlayerDriver) CreateReadWrite(id, parent string, o *graphdriver.CreateOpts) error {
	return d.Driver.CreateReadWrite(id, parent, convOpts(o))
}

func (d thinlayerDriver) Changes(id, parent string) ([]archive.Change, error) {
	cs, err := d.Driver.Changes(id, parent)
	out := make([]archive.Change, len(cs))
	for i, c := range cs {
		out[i] = archive.Change{Path: c.Path, Kind: archive.ChangeType(c.Kind)}
	}
	return out, err
}
