package testutil_test

import (
	"fmt"
	"os"
	"sync"
	"testing"

	dm "github.com/thinlayer/thinlayer/devmapper"
	"github.com/thinlayer/thinlayer/testutil"
)

// A test of code that drives device-mapper gets a thin pool of its own
// over two loop devices. Its package's TestMain hands the run to
// testutil.Main, which boots User-Mode Linux where the host kernel has no
// dm-thin:
//
//	func TestMain(m *testing.M) { testutil.Main(m) }
//
//	func TestThinDevice(t *testing.T) {
//		pool := testutil.NewLoopPool(t, testutil.PoolOptions{DataSize: 256 << 20})
//		...
//	}
//
// The test body below is such a test; an example gets no *testing.T, so
// asTest lends it one.
func ExampleNewLoopPool() {
	var poolName string
	passed := asTest(func(t testing.TB) {
		pool := testutil.NewLoopPool(t, testutil.PoolOptions{DataSize: 256 << 20})
		poolName = pool.Name
		// Thin device 1: created in the pool, activated, written to.
		if err := pool.Control.CreateThin(pool.Name, 1); err != nil {
			t.Fatal(err)
		}
		info := pool.Activate(t, pool.Name+"-thin1", 1, dm.BytesToSectors(64<<20))
		if err := pool.Control.EnsureNode(info); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(info.Path(), make([]byte, 1<<20), 0); err != nil {
			t.Fatal(err)
		}
		st, err := pool.Control.ThinDeviceStatus(info.Name)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Printf("thin device 1 maps %d KiB\n", st.MappedSectors.Bytes()>>10)
		// Left active on purpose: the fixture removes it at test end.
	})
	ctl, err := dm.Open()
	if err != nil {
		fmt.Println(err)
		return
	}
	defer ctl.Close()
	exists, err := ctl.Exists(poolName)
	fmt.Println("test passed:", passed)
	fmt.Println("pool still there after the test:", exists, err)
	// Output:
	// thin device 1 maps 1024 KiB
	// test passed: true
	// pool still there after the test: false <nil>
}

// asTest runs f as go test runs a test function, with a testing.TB whose
// Cleanup functions run when f returns, and reports whether it passed. It
// borrows the TB of a benchmark (testing.Benchmark), and runs f only once.
func asTest(f func(t testing.TB)) bool {
	var once sync.Once
	passed := false
	testing.Benchmark(func(b *testing.B) {
		once.Do(func() {
			f(b)
			passed = !b.Failed() // not reached after b.Fatal or b.Skip
		})
	})
	return passed
}
