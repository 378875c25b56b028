package powercut

import (
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"testing"
	"time"

	"github.com/thinlayer/thinlayer/deviceset"
	gd "github.com/thinlayer/thinlayer/graphdriver"
	"github.com/thinlayer/thinlayer/graphdriver/internal/gdtest"
	"github.com/thinlayer/thinlayer/testutil"
	pc "github.com/thinlayer/thinlayer/testutil/powercut"
)

// The power-cut walk of thinlayer's graph driver and snapshotter
// (testutil/powercut does the recording, replay and judging; Moby's
// driver walks the same operations in compat). Beyond the operations
// every driver's walk runs: Remove with deferred deletion and the worker
// finishing it, Init settling a killed Create's transaction, and the
// snapshotter's Prepare, Commit and Remove.

func TestPowerCutWalk(t *testing.T) {
	testutil.RequireKernel(t)
	testutil.RequireFaults(t) // init-settles kills a Create at a fault point
	r := pc.NewRig(t)
	ops := append(pc.DriverOps(gdtest.CrashOptions(), gdtest.WalkOptions("dm.basesize=192MB"), 192<<20),
		// victim open (mounted) when removed: marked deleted, and
		// deleted by the worker once Put closed it (deferred removal
		// and deletion are on since init-basesize, Moby's defaults).
		pc.DriverOp{Name: "remove-deferred", Pre: createAndGet("victim", "keep"), Run: removeDeferred},
		// A Create killed with its pool transaction open (before the
		// start mark): the pool holds the new thin device, no DevInfo
		// names it yet. Init settles it: deletes the device and moves
		// the pool's transaction id, two pool commits to cut between.
		pc.DriverOp{Name: "init-settles", Init: true, Pre: killedCreate("victim", "keep", "tx.metadata"), Run: pc.InitDriver})
	recs := pc.RecordDriverOps(t, r, openThinlayer, filepath.Join(r.Mnt, "home"), ops)
	recs = append(recs, recordSnapOps(t, r, filepath.Join(r.Mnt, "snap"))...)
	s := pc.Replay(t, r, recs)
	if s.Points == 0 {
		t.Fatal("no replay points")
	}
}

// driver adapts thinlayer's graph driver to the walk.
type driver struct{ gd.Driver }

func openThinlayer(home string, opts []string) (pc.Driver, error) {
	d, err := gd.Init(home, opts, gd.IdentityMapping{})
	if err != nil {
		return nil, err
	}
	return driver{d}, nil
}

func (d driver) Create(id, parent string) error { return d.Driver.Create(id, parent, nil) }
func (d driver) CreateReadWrite(id, parent string) error {
	return d.Driver.CreateReadWrite(id, parent, nil)
}
func (d driver) ApplyDiff(id, parent string, r io.Reader) error {
	_, err := d.Driver.ApplyDiff(id, parent, r)
	return err
}
func (d driver) PoolName() string { return gdtest.StatusRow(d.Driver, "Pool Name") }

func (d driver) Get(id string) (string, error) {
	root, err := d.Driver.Get(id, "")
	if errors.Is(err, deviceset.ErrDeleted) {
		return "", fmt.Errorf("%w: %w", pc.ErrGone, err)
	}
	return root, err
}

func createAndGet(id, parent string) func(*testing.T, *pc.Live) {
	return func(t *testing.T, l *pc.Live) {
		gdtest.Must(t, l.D.Create(id, parent))
		_, err := l.D.Get(id)
		gdtest.Must(t, err)
	}
}

// removeDeferred removes victim while it is mounted, puts it, and waits
// for the deletion worker to finish it.
func removeDeferred(l *pc.Live) error {
	if err := l.D.Remove("victim"); err != nil {
		return err
	}
	if !l.D.Exists("victim") {
		return fmt.Errorf("victim deleted at once: the walk wanted a deferred deletion")
	}
	if err := l.D.Put("victim"); err != nil && !errors.Is(err, deviceset.ErrDeleted) {
		return err
	}
	deadline := time.Now().Add(time.Minute)
	for l.D.Exists("victim") { // a test's wait for the worker's backoff
		if time.Now().After(deadline) {
			return fmt.Errorf("deferred deletion of victim not done after a minute")
		}
		time.Sleep(100 * time.Millisecond)
	}
	return nil
}
