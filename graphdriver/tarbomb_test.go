// Built only under -race: make test runs this file's tests on the host
// with the race detector (THINLAYER_NO_UML=1), which User-Mode Linux cannot
// host, so the kernel run does not list them as skipped.

//go:build race

package graphdriver

import (
	"archive/tar"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	"github.com/thinlayer/thinlayer/deviceset"
)

// A tar bomb of many tiny files goes through ApplyDiff in bounded memory:
// what the apply keeps per entry is a hash, not the entry. A host test
// (its layer is a plain directory): creating a hundred thousand files in
// User-Mode Linux would take minutes.
func TestTarBombBoundedMemory(t *testing.T) {
	const files = 20000
	d := &driver{home: memDir(t), ds: dirStore{}, log: logrus.StandardLogger(), mounts: map[string]int{}}
	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	stop, peak := make(chan struct{}), make(chan uint64)
	go sampleHeap(stop, peak)
	_, err := d.ApplyDiff("bomb", "", bombStream(files))
	close(stop)
	top := <-peak
	if err != nil {
		t.Fatal(err)
	}
	grew := int64(top) - int64(before.HeapInuse)
	if grew > 8<<20 { // a few hundred bytes an entry would pass that
		t.Fatalf("applying %d tiny files grew the heap by %d MiB", files, grew>>20)
	}
	t.Logf("tar bomb: %d entries applied through ApplyDiff, heap grew by at most %d KiB", files, grew>>10)
}

// memDir is a scratch directory on tmpfs where there is one: the test is
// about memory, not the disk.
func memDir(t *testing.T) string {
	dir, err := os.MkdirTemp("/dev/shm", "thinlayer-bomb-")
	if err != nil {
		return t.TempDir()
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// bombStream generates the tar as it is read, so the test holds no copy.
func bombStream(files int) io.Reader {
	r, w := io.Pipe()
	go func() {
		tw := tar.NewWriter(w)
		for i := 0; i < files; i++ {
			if err := tw.WriteHeader(&tar.Header{Name: fmt.Sprintf("d%d/f%d", i%1000, i), Typeflag: tar.TypeReg, Mode: 0o644}); err != nil {
				w.CloseWithError(err)
				return
			}
		}
		w.CloseWithError(tw.Close())
	}()
	return r
}

func sampleHeap(stop <-chan struct{}, peak chan<- uint64) {
	var m runtime.MemStats
	var top uint64
	for {
		runtime.ReadMemStats(&m)
		top = max(top, m.HeapInuse)
		select {
		case <-stop:
			peak <- top
			return
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// dirStore is a DeviceSet whose layers are plain directories.
type dirStore struct{}

func (dirStore) AddDevice(string, string, map[string]string) error { return nil }
func (dirStore) DeleteDevice(string, bool) error                   { return nil }
func (dirStore) MountDevice(_, path, _ string) error               { return os.MkdirAll(path, 0o755) }
func (dirStore) UnmountDevice(_, path string) error                { return os.RemoveAll(filepath.Clean(path)) }
func (dirStore) HasDevice(string) bool                             { return true }
func (dirStore) CheckLayerID(string) error                         { return nil }
func (dirStore) Shutdown() error                                   { return nil }
func (dirStore) Metadata(string) (deviceset.DeviceMetadata, error) {
	return deviceset.DeviceMetadata{}, nil
}
func (dirStore) Status() (deviceset.Status, error) { return deviceset.Status{}, nil }
