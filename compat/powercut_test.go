//go:build linux && cgo

package compat_test

import (
	"io"
	"path/filepath"
	"testing"

	"github.com/docker/docker/daemon/graphdriver"
	"github.com/thinlayer/thinlayer/compat/mobyhome"
	"github.com/thinlayer/thinlayer/testutil"
	pc "github.com/thinlayer/thinlayer/testutil/powercut"
)

// TestMobyPowerCutWalk is the power-cut walk (testutil/powercut) on Moby
// v24.0.9's devicemapper driver: the operations every driver's walk runs
// (thinlayer's in graphdriver/powercut), each cut at its flushes, the
// home opened by Moby's driver at each point and judged the same way. The
// peer's figure for docs/reliability.md: what it finds is logged and
// counted, not failed (a Remove cut after its pool delete leaves a
// DevInfo naming a thin id the pool no longer has).
func TestMobyPowerCutWalk(t *testing.T) {
	testutil.RequireKernel(t)
	r := pc.NewRig(t)
	ops := pc.DriverOps(mobyPowerOptions(), mobyPowerOptions("dm.basesize=192MB"), 192<<20)
	recs := pc.RecordDriverOps(t, r, openMobyPower, filepath.Join(r.Mnt, "home"), ops)
	if s := pc.ReplayPeer(t, r, recs); s.Points == 0 {
		t.Fatal("no replay points")
	}
}

// mobyPowerOptions size Moby's home as thinlayer's walk does its own.
func mobyPowerOptions(extra ...string) []string {
	return append([]string{"dm.loopdatasize=1GB", "dm.loopmetadatasize=16MB", "dm.basesize=128MB",
		"dm.mkfsarg=-Jsize=4", "dm.min_free_space=1%", "dm.blkdiscard=false"}, extra...)
}

// mobyPower adapts Moby's driver to the walk.
type mobyPower struct{ graphdriver.Driver }

func openMobyPower(home string, opts []string) (pc.Driver, error) {
	d, err := mobyhome.Open(home, opts)
	if err != nil {
		return nil, err
	}
	return mobyPower{d}, nil
}

func (d mobyPower) Create(id, parent string) error { return d.Driver.Create(id, parent, nil) }
func (d mobyPower) CreateReadWrite(id, parent string) error {
	return d.Driver.CreateReadWrite(id, parent, nil)
}
func (d mobyPower) ApplyDiff(id, parent string, r io.Reader) error {
	_, err := d.Driver.ApplyDiff(id, parent, r)
	return err
}
func (d mobyPower) Get(id string) (string, error) { return d.Driver.Get(id, "") }

func (d mobyPower) PoolName() string {
	for _, kv := range d.Driver.Status() {
		if kv[0] == "Pool Name" {
			return kv[1]
		}
	}
	return ""
}
