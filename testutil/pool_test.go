package testutil_test

import (
	"errors"
	"os"
	"testing"

	dm "github.com/thinlayer/thinlayer/devmapper"
	"github.com/thinlayer/thinlayer/loopback"
	"github.com/thinlayer/thinlayer/testutil"
)

func TestMain(m *testing.M) { testutil.Main(m) }

func TestHarnessRunsInAKernelWithThinPool(t *testing.T) {
	testutil.RequireKernel(t)
	if err := testutil.KernelUsable(); err != nil {
		t.Fatal(err)
	}
	if testutil.InUML() && os.Geteuid() != 0 {
		t.Fatal("not root inside the UML guest")
	}
}

// Everything NewLoopPool made is gone once its test ends: thin devices left
// active, the pool, the loop devices.
func TestNewLoopPoolCleansUp(t *testing.T) {
	var pool *testutil.LoopPool
	t.Run("use", func(t *testing.T) {
		pool = testutil.NewLoopPool(t, testutil.PoolOptions{DataSize: 256 << 20})
		if err := pool.Control.CreateThin(pool.Name, 1); err != nil {
			t.Fatal(err)
		}
		pool.Activate(t, pool.Name+"-left-active", 1, 2048)
	})
	c, err := dm.Open()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for _, name := range []string{pool.Name, pool.Name + "-left-active"} {
		if ok, err := c.Exists(name); ok || err != nil {
			t.Errorf("%s still exists after the test (err %v)", name, err)
		}
	}
	for _, f := range []string{pool.DataFile, pool.MetadataFile} {
		if d, err := loopback.FindByFile(f); !errors.Is(err, loopback.ErrNotFound) && !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s still attached (%v, %v)", f, d, err)
		}
	}
}
