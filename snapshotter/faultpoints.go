//go:build thinlayer_faults

package snapshotter

import "github.com/thinlayer/thinlayer/internal/faults"

// The snapshotter's own crash-test points (internal/faults).
func init() {
	faults.Register("snapshotter.prepare.intent", "snapshotter.prepare.device", "snapshotter.prepare.mounts",
		"snapshotter.commit.tx", "snapshotter.remove.intent", "snapshotter.remove.device")
}
