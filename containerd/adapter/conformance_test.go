package adapter_test

import (
	"context"
	"flag"
	"testing"

	"github.com/containerd/containerd/snapshots"
	"github.com/containerd/containerd/snapshots/testsuite"

	"github.com/thinlayer/thinlayer/containerd/adapter"
	"github.com/thinlayer/thinlayer/snapshotter"
	"github.com/thinlayer/thinlayer/testutil"
)

// TestMain enables containerd's root-only tests (its -test.root flag):
// testutil.Main runs them as root in the kernel, or skips/fails each.
func TestMain(m *testing.M) {
	_ = flag.Set("test.root", "true")
	testutil.Main(m)
}

// homeOptions: small xfs homes (no lost+found in the base, which the
// suite's directory comparisons would see), one per suite test.
var homeOptions = []string{"dm.loopdatasize=4GB", "dm.loopmetadatasize=64MB", "dm.basesize=320MB",
	"dm.fs=xfs", "dm.min_free_space=1%", "dm.use_deferred_removal=false", "dm.use_deferred_deletion=false"}

// TestConformance runs containerd's own snapshotter test suite against the
// thinlayer snapshotter, in the kernel.
func TestConformance(t *testing.T) {
	testutil.RequireKernel(t)
	testsuite.SnapshotterSuite(t, "thinlayer", func(ctx context.Context, root string) (snapshots.Snapshotter, func() error, error) {
		s, err := snapshotter.OpenHome(root, homeOptions)
		if err != nil {
			return nil, nil, err
		}
		a := adapter.Snapshotter{S: s}
		return a, a.Close, nil
	})
}
