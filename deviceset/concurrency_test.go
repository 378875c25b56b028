package deviceset

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	dm "github.com/thinlayer/thinlayer/devmapper"
)

// Host tests of the DeviceSet's concurrent pieces that need no kernel;
// make test runs them under -race (the kernel-backed concurrency test,
// graphdriver's TestConcurrentStress, runs in User-Mode Linux, where the
// race detector cannot).

// Regression: two creates each naming the other as parent took the two
// layer locks in opposite orders (parent, then child) and could deadlock.
// Neither parent exists, so AddDevice returns after taking the locks and
// looking for the parent: no kernel is involved.
func TestAddDeviceCrossedParentsNoDeadlock(t *testing.T) {
	ds := &DeviceSet{store: store{dir: t.TempDir()}, devices: map[string]*DevInfo{}}
	done := make(chan struct{})
	go func() {
		defer close(done)
		var wg sync.WaitGroup
		for _, pair := range [][2]string{{"a", "b"}, {"b", "a"}, {"b", "c"}, {"c", "a"}} {
			wg.Add(1)
			go func(x, y string) {
				defer wg.Done()
				for i := 0; i < 5000; i++ {
					if err := ds.AddDevice(x, y, nil); !errors.Is(err, ErrNotFound) {
						t.Errorf("AddDevice(%s, %s): %v", x, y, err)
						return
					}
				}
			}(pair[0], pair[1])
		}
		wg.Wait()
	}()
	select {
	case <-done:
	case <-time.After(time.Minute):
		t.Fatal("AddDevice deadlocked")
	}
}

func TestIDIndexConcurrent(t *testing.T) {
	x := &idIndex{built: true, owners: map[dm.ThinID][]string{}}
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; i < 2000; i++ {
				h := fmt.Sprint("g", g, "-", i)
				id := dm.ThinID(i)
				x.add(id, h)
				if !x.named(id) {
					t.Errorf("id %d not named after add", id)
				}
				x.other(id, h)
				x.remove(id, h)
			}
		}(g)
	}
	wg.Wait()
	if len(x.owners) != 0 {
		t.Fatalf("index not empty: %d ids", len(x.owners))
	}
	x.add(5, "a")
	x.add(5, "a")
	x.add(5, "b")
	if o, ok := x.other(5, "a"); !ok || o != "b" {
		t.Fatalf("other(5, a) = %q %v", o, ok)
	}
	if _, ok := x.other(5, "zz"); !ok {
		t.Fatal("other of a non-owner")
	}
	x.remove(5, "b")
	if _, ok := x.other(5, "a"); ok {
		t.Fatal("a alone names 5")
	}
}

// The deletion worker: queued work is retried (not at once: a layer is
// queued just after a delete failed busy), failures back off, dropped
// work is not retried, and close stops the worker promptly even while
// deletions keep failing.
func TestDeleterWorker(t *testing.T) {
	var calls sync.Map // hash -> *atomic.Int32
	var busy atomic.Bool
	busy.Store(true)
	del := func(h string) error {
		n, _ := calls.LoadOrStore(h, new(atomic.Int32))
		n.(*atomic.Int32).Add(1)
		if busy.Load() {
			return errors.New("busy")
		}
		return nil
	}
	d := newDeleter(del, func() []string { return []string{"left-by-last-run"} }, logrus.NewEntry(logrus.New()))
	defer d.close()
	waitFor(t, "the layer a previous run left", func() bool { return called(&calls, "left-by-last-run") >= 1 })
	var wg sync.WaitGroup
	for i := 0; i < 50; i++ { // adds race with the worker
		wg.Add(1)
		go func(i int) { defer wg.Done(); d.add(fmt.Sprint("l", i)); _ = d.count() }(i)
	}
	wg.Wait()
	d.add("dropped")
	d.drop("dropped")
	if called(&calls, "l0") != 0 {
		t.Fatal("a layer just queued was retried at once")
	}
	busy.Store(false)
	waitFor(t, "every queued deletion done", func() bool { return d.count() == 0 })
	if called(&calls, "dropped") != 0 {
		t.Fatal("a dropped layer was deleted")
	}
	busy.Store(true)
	d.add("stuck")
	start := time.Now()
	d.close()
	if time.Since(start) > 5*time.Second {
		t.Fatalf("close took %v", time.Since(start))
	}
}

func called(m *sync.Map, h string) int32 {
	if n, ok := m.Load(h); ok {
		return n.(*atomic.Int32).Load()
	}
	return 0
}

func waitFor(t *testing.T, what string, ok func() bool) {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); !ok(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 20s", what)
		}
	}
}

// Regression: Shutdown wrote ds.meta under txMu alone while HomeRecord and
// Status read it under mu (a data race under -race).
func TestSaveNextDeviceIDWhileRead(t *testing.T) {
	ds := &DeviceSet{store: store{dir: t.TempDir()}, devices: map[string]*DevInfo{}}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		for i := 0; i < 200; i++ {
			ds.txMu.Lock()
			ds.nextID = i
			ds.txMu.Unlock()
			if err := ds.saveNextDeviceID(); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	go func() {
		defer wg.Done()
		for i := 0; i < 200; i++ {
			_ = ds.HomeRecord()
		}
	}()
	wg.Wait()
	if got := ds.HomeRecord().NextDeviceID; got != 199 {
		t.Fatalf("NextDeviceID %d after the last save of 199", got)
	}
}
