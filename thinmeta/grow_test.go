package thinmeta_test

import (
	"os"
	"testing"

	"github.com/thinlayer/thinlayer/loopback"
	"github.com/thinlayer/thinlayer/testutil"
	"github.com/thinlayer/thinlayer/thinmeta"
)

// A pool whose metadata device grew: the kernel extends the metadata space
// map but leaves the superblock's metadata_nr_blocks as formatted. The
// space map is the truth, as thin_check takes it.
func TestGrownMetadataDevice(t *testing.T) {
	p := newPool(t, testutil.PoolOptions{DataSize: 256 << 20, MetadataSize: 4 << 20})
	p.create(1)
	p.write(1, 0, 1, 2)
	// Grow the metadata file and its loop device, then reload the pool
	// with the same table: the resume resizes the metadata space map.
	must(t, os.Truncate(p.MetadataFile, 16<<20))
	must(t, p.Metadata.SetCapacity())
	table, err := p.Control.Table(p.Name)
	must(t, err)
	must(t, p.Control.Suspend(p.Name, 0))
	must(t, p.Control.Load(p.Name, table, false))
	must(t, p.Control.Resume(p.Name, 0))
	st, err := p.Control.PoolStatus(p.Name, false)
	must(t, err)
	if st.TotalMetaBlocks != (16<<20)/4096 {
		t.Fatalf("pool did not grow its metadata: %d blocks", st.TotalMetaBlocks)
	}
	p.stop()

	ro, err := loopback.Attach(p.MetadataFile, loopback.Options{ReadOnly: true})
	must(t, err)
	defer ro.Detach()
	if out, ok := thinCheck(ro.Path); !ok {
		t.Fatalf("thin_check on the grown metadata: %s", out)
	}
	m, err := thinmeta.Open(p.MetadataFile)
	must(t, err)
	defer m.Close()
	if got := m.Superblock().MetadataBlocks; got != (16<<20)/4096 {
		t.Fatalf("MetadataBlocks = %d, want the grown %d", got, (16<<20)/4096)
	}
	if probs := m.Check(); len(probs) != 0 {
		t.Fatalf("Check on a grown pool: %v", probs)
	}
	devs, err := m.Devices()
	if err != nil || len(devs) != 1 || devs[0].MappedBlocks != 3 {
		t.Fatalf("devices %+v %v", devs, err)
	}
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
