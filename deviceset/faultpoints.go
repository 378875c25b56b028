//go:build thinlayer_faults

package deviceset

import "github.com/thinlayer/thinlayer/internal/faults"

// This package's crash-test points (internal/faults), in the order an
// operation meets them.
func init() {
	faults.Register(
		// base device setup (first Init) and its growth (a larger dm.basesize)
		"base.mkfs", "base.initialized", "base.uuid", "basesize.grow",
		// a layer's filesystem grown to a size larger than its parent's
		"grow.start", "grow.fs", "grow.done",
		// snapshot of an active origin
		"snapshot.suspend", "snapshot.resume",
		// create and delete transactions
		"create.intent", "create.message", "tx.metadata", "tx.commit",
		"delete.intent", "delete.discard", "delete.discarding", "delete.message",
		"delete.withdraw", "delete.mark",
		// activation and mounts
		"activate", "mount", "unmount", "deactivate",
	)
}
