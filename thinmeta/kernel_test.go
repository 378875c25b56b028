package thinmeta_test

import (
	"errors"
	"reflect"
	"testing"

	"github.com/thinlayer/thinlayer/devmapper"
	"github.com/thinlayer/thinlayer/testutil"
	"github.com/thinlayer/thinlayer/thinmeta"
)

func TestMain(m *testing.M) { testutil.Main(m) }

// TestLiveAndInactiveMatchThinDump reads a pool's metadata through a
// metadata snapshot while it is live, then from the inactive device, and
// compares superblock, devices and every mapping with thin_dump's.
func TestLiveAndInactiveMatchThinDump(t *testing.T) {
	p := newPool(t, testutil.PoolOptions{DataSize: 1 << 30})
	buildMixed(p)

	m, release, err := thinmeta.OpenLive(p.Control, p.Name, p.Metadata.Path)
	if err != nil {
		t.Fatal(err)
	}
	if !m.Superblock().Snapshot || m.Superblock().HeldRoot == 0 {
		t.Fatalf("live superblock %+v: want a snapshot with a held root", m.Superblock())
	}
	st, err := p.Control.PoolStatus(p.Name, true)
	if err != nil {
		t.Fatal(err)
	}
	if got := m.Superblock().NrDataBlocks; got != uint64(st.TotalDataBlocks) {
		t.Errorf("live: %d data blocks, pool status %d", got, st.TotalDataBlocks)
	}
	before, err := m.Devices()
	if err != nil {
		t.Fatal(err)
	}
	// The pool moves on; the snapshot must not.
	p.create(20)
	p.write(2, blockRange(400, 420)...)
	p.del(4)
	if _, _, err := thinmeta.OpenLive(p.Control, p.Name, ""); !errors.Is(err, devmapper.ErrBusy) {
		t.Errorf("second OpenLive while a snapshot is held: %v, want EBUSY", err)
	}
	after, err := m.Devices()
	if err != nil || !reflect.DeepEqual(before, after) {
		t.Fatalf("devices changed under the snapshot: %+v, then %+v (%v)", before, after, err)
	}
	compareWithDump(t, m, withDataBlocks(thinDump(t, p.Metadata.Path, true), m))
	compareWithLs(t, m, thinLs(t, p.Metadata.Path, true))
	expectClean(t, m)
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	if err := release(); err != nil {
		t.Fatal(err)
	}
	if st, err := p.Control.PoolStatus(p.Name, false); err != nil || st.HasHeldMetadataRoot {
		t.Fatalf("after release: status %+v, %v: want no held root", st, err)
	}
	// Again, finding the metadata device from the pool's table: now the
	// changes show.
	m, release, err = thinmeta.OpenLive(p.Control, p.Name, "")
	if err != nil {
		t.Fatal(err)
	}
	compareWithDump(t, m, withDataBlocks(thinDump(t, p.Metadata.Path, true), m))
	if err := errors.Join(m.Close(), release()); err != nil {
		t.Fatal(err)
	}

	p.stop()
	m, err = thinmeta.Open(p.MetadataFile)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	compareWithDump(t, m, thinDump(t, p.Metadata.Path, false))
	compareWithLs(t, m, thinLs(t, p.Metadata.Path, false))
	expectClean(t, m)
	if out, ok := thinCheck(p.Metadata.Path); !ok {
		t.Fatalf("thin_check fails where Check passes:\n%s", out)
	}
}

func expectClean(t *testing.T, m *thinmeta.Metadata) {
	t.Helper()
	if probs := m.Check(); len(probs) > 0 {
		for _, p := range probs {
			t.Errorf("Check: %v", p)
		}
	}
}

// compareWithLs checks DevicesWithUsage against thin_ls, device by device,
// and requires the pool to have both exclusive and shared blocks.
func compareWithLs(t *testing.T, m *thinmeta.Metadata, rows []lsRow) {
	t.Helper()
	excl, shared := compareUsage(t, m, rows)
	if excl == 0 || shared == 0 {
		t.Errorf("pool has %d exclusive and %d shared blocks: want some of each to compare", excl, shared)
	}
}

func compareUsage(t *testing.T, m *thinmeta.Metadata, rows []lsRow) (excl, shared uint64) {
	t.Helper()
	devs, err := m.DevicesWithUsage()
	if err != nil {
		t.Fatal(err)
	}
	if len(devs) != len(rows) {
		t.Fatalf("%d devices, thin_ls shows %d", len(devs), len(rows))
	}
	for i, d := range devs {
		got := lsRow{d.ID, d.MappedBlocks, d.ExclusiveBlocks, d.SharedBlocks, d.TransactionID, d.CreationTime, d.SnapshotTime}
		if got != rows[i] {
			t.Errorf("device %+v\nthin_ls %+v", got, rows[i])
		}
		excl += d.ExclusiveBlocks
		shared += d.SharedBlocks
	}
	t.Logf("%d devices match thin_ls (%d exclusive, %d shared blocks in all)", len(devs), excl, shared)
	return excl, shared
}

// withDataBlocks fills in the data block count thin_dump -m leaves 0: a
// metadata snapshot records no space maps.
func withDataBlocks(d dumpXML, m *thinmeta.Metadata) dumpXML {
	d.NrDataBlocks = m.Superblock().NrDataBlocks
	return d
}

func compareWithDump(t *testing.T, m *thinmeta.Metadata, d dumpXML) {
	t.Helper()
	sb := m.Superblock()
	if sb.TransactionID != d.Transaction || sb.Time != d.Time || sb.DataBlockSize != d.DataBlockSize ||
		sb.NrDataBlocks != d.NrDataBlocks || sb.Version != d.Version {
		t.Errorf("superblock %+v\nthin_dump   %+v", sb, d)
	}
	devs, err := m.Devices()
	if err != nil {
		t.Fatal(err)
	}
	if len(devs) != len(d.Devices) {
		t.Fatalf("%d devices, thin_dump shows %d", len(devs), len(d.Devices))
	}
	for i, dev := range devs {
		want := d.Devices[i]
		got := dumpedDev{ID: dev.ID, MappedBlocks: dev.MappedBlocks, Transaction: dev.TransactionID,
			CreationTime: dev.CreationTime, SnapTime: dev.SnapshotTime}
		want.Ranges, want.Singles = nil, nil
		if got.ID != want.ID || got.MappedBlocks != want.MappedBlocks || got.Transaction != want.Transaction ||
			got.CreationTime != want.CreationTime || got.SnapTime != want.SnapTime {
			t.Errorf("device %+v\nthin_dump %+v", got, want)
		}
		compareMappings(t, m, dev.ID, d.Devices[i])
	}
	t.Logf("%d devices match thin_dump", len(devs))
}

func compareMappings(t *testing.T, m *thinmeta.Metadata, id devmapper.ThinID, d dumpedDev) {
	t.Helper()
	want := mappingCursor{runs: d.runs()}
	bad := 0
	err := m.Mappings(id, func(got thinmeta.Mapping) error {
		w, ok := want.next()
		if (!ok || w != got) && bad < 5 {
			bad++
			t.Errorf("thin %d: mapping %+v, thin_dump has %+v (present %v)", id, got, w, ok)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n := want.remaining(); n > 0 {
		t.Errorf("thin %d: thin_dump shows %d more mappings", id, n)
	}
}
