package graphdriver_test

import (
	"testing"

	units "github.com/docker/go-units"
)

// A data device that is not a whole number of pool blocks (64 MiB and
// 48 KiB, 64 KiB blocks): Status reports the pool's own block size and
// whole blocks. It divided the table's length by the block count before,
// and said 65.58kB.
func TestStatusBlockSizeOfUnevenDataDevice(t *testing.T) {
	data, meta := attachSparse(t, 64<<20+48<<10), attachSparse(t, 16<<20)
	d := newDriver(t, t.TempDir(), walkOptions("dm.datadev="+data, "dm.metadatadev="+meta))
	if got, want := statusRow(d, "Pool Blocksize"), units.HumanSize(64<<10); got != want {
		t.Errorf("Pool Blocksize %s, want %s", got, want)
	}
	if got, want := statusRow(d, "Data Space Total"), units.HumanSize(64<<20); got != want {
		t.Errorf("Data Space Total %s, want %s (1024 whole blocks)", got, want)
	}
	mustCreate(t, d, "a", "")
}
