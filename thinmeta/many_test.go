package thinmeta_test

import (
	"testing"
	"time"

	"github.com/thinlayer/thinlayer/loopback"
	"github.com/thinlayer/thinlayer/thinmeta"
)

// manyDevices is the size of the large pool: container hosts keep
// thousands of layers in one pool.
const manyDevices = 10000

// manyFixture unpacks the 10 000-device image the kernel built (see
// buildMany, TestWriteFixtures) and attaches it to a read-only loop device
// for the judges, which need O_DIRECT.
func manyFixture(t testing.TB) (file, dev string) {
	t.Helper()
	file = fixtureFile(t, "many")
	loop, err := loopback.Attach(file, loopback.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { loop.Detach() })
	return file, loop.Path
}

// TestManyDevices runs thin_ls and thin_check on the pool of 10 000
// layer-like thin devices and requires the package's numbers to equal
// theirs, device by device. (thin_dump's view of it, recorded when the
// kernel built it, is compared in TestFixtures: run live it takes 45 s
// under User-Mode Linux.)
func TestManyDevices(t *testing.T) {
	file, dev := manyFixture(t)
	m, err := thinmeta.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()

	start := time.Now()
	rows := thinLs(t, dev, false)
	lsTime := time.Since(start)
	start = time.Now()
	compareWithLs(t, m, rows)
	t.Logf("thin_ls %v; DevicesWithUsage and compare %v", lsTime, time.Since(start))

	start = time.Now()
	expectClean(t, m)
	checkTime := time.Since(start)
	start = time.Now()
	if out, ok := thinCheck(dev); !ok {
		t.Fatalf("thin_check fails:\n%s", out)
	}
	t.Logf("Check %v; thin_check %v", checkTime, time.Since(start))
}
