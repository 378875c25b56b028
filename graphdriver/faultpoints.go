//go:build thinlayer_faults

package graphdriver

import "github.com/thinlayer/thinlayer/internal/faults"

// The driver's own crash-test points (internal/faults), after deviceset's.
func init() { faults.Register("get.prepare", "applydiff.untar", "applydiff.midstream") }
