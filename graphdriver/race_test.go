// Built only under -race: make test runs this file's tests on the host
// with the race detector (THINLAYER_NO_UML=1), which User-Mode Linux cannot
// host, so the kernel run does not list them as skipped.

//go:build race

package graphdriver

import (
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sirupsen/logrus"
	"github.com/thinlayer/thinlayer/deviceset"
)

// TestDriverRace runs the stress workload on the driver's own code — id
// locks, mount counts, the Diff/ApplyDiff paths — over a fake DeviceSet,
// so that the race detector, which cannot run inside User-Mode Linux, can
// watch it (make test runs this under -race on the host). The fake checks
// the contract the driver keeps: never two calls on one layer at once, a
// mount only of an unmounted layer, an unmount only of a mounted one.
func TestDriverRace(t *testing.T) {
	home := t.TempDir()
	fs := newFakeStore()
	d := &driver{home: home, ds: fs, log: logrus.StandardLogger(), mounts: map[string]int{}}
	r := RunStress(t, d, StressConfig{Workers: 8, Ops: 200, Timeout: 2 * time.Minute})
	if len(r.Corrupted) > 0 {
		t.Fatalf("layers not as written: %v", r.Corrupted)
	}
	if v := fs.violations(); len(v) > 0 {
		t.Fatalf("driver broke the DeviceSet contract: %v", v)
	}
	if n := fs.mounted(); n != 0 {
		t.Fatalf("%d layers still mounted", n)
	}
	t.Logf("driver race run: 8 goroutines × 200 ops: %s", r)
}

// fakeStore keeps layers as maps of file contents; a mount writes them out
// under the mount point, an unmount reads them back.
type fakeStore struct {
	mu     sync.Mutex
	layers map[string]*fakeLayer
	busy   map[string]bool
	broken []string
}

type fakeLayer struct {
	files   map[string][]byte
	mounted string
}

func newFakeStore() *fakeStore {
	return &fakeStore{layers: map[string]*fakeLayer{"": {files: map[string][]byte{}}}, busy: map[string]bool{}}
}

// enter marks a call on hash, noting a second one at the same time.
func (f *fakeStore) enter(op, hash string) (*fakeLayer, func()) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.busy[hash] {
		f.broken = append(f.broken, fmt.Sprintf("%s %q while another call on it runs", op, hash))
	}
	f.busy[hash] = true
	return f.layers[hash], func() {
		f.mu.Lock()
		delete(f.busy, hash)
		f.mu.Unlock()
	}
}

func (f *fakeStore) violate(format string, args ...any) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	err := fmt.Errorf(format, args...)
	f.broken = append(f.broken, err.Error())
	return err
}

func (f *fakeStore) violations() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.broken...)
}

func (f *fakeStore) mounted() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, l := range f.layers {
		if l.mounted != "" {
			n++
		}
	}
	return n
}

func (f *fakeStore) AddDevice(hash, baseHash string, _ map[string]string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	parent := f.layers[baseHash]
	if parent == nil {
		return fmt.Errorf("parent %q: %w", baseHash, deviceset.ErrNotFound)
	}
	if f.layers[hash] != nil {
		return deviceset.ErrExists
	}
	files := map[string][]byte{}
	for k, v := range parent.files { // a mounted parent's last unmount: close enough
		files[k] = v
	}
	f.layers[hash] = &fakeLayer{files: files}
	return nil
}

func (f *fakeStore) DeleteDevice(hash string, _ bool) error {
	l, leave := f.enter("delete", hash)
	defer leave()
	f.mu.Lock()
	defer f.mu.Unlock()
	if l == nil {
		return deviceset.ErrNotFound
	}
	if l.mounted != "" {
		return unix.EBUSY
	}
	delete(f.layers, hash)
	return nil
}

func (f *fakeStore) MountDevice(hash, path, _ string) error {
	l, leave := f.enter("mount", hash)
	defer leave()
	if l == nil {
		return deviceset.ErrNotFound
	}
	f.mu.Lock()
	mounted, files := l.mounted, l.files
	f.mu.Unlock()
	if mounted != "" {
		return f.violate("mount of %q, already mounted on %s", hash, mounted)
	}
	for name, b := range files {
		p := filepath.Join(path, "rootfs", name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(p, b, 0o644); err != nil {
			return err
		}
	}
	f.mu.Lock()
	l.mounted = path
	f.mu.Unlock()
	return nil
}

func (f *fakeStore) UnmountDevice(hash, path string) error {
	l, leave := f.enter("unmount", hash)
	defer leave()
	f.mu.Lock()
	ok := l != nil && l.mounted == path
	f.mu.Unlock()
	if !ok {
		return f.violate("unmount of %q from %s, not mounted there", hash, path)
	}
	files := map[string][]byte{}
	root := filepath.Join(path, "rootfs")
	err := filepath.Walk(root, func(p string, fi os.FileInfo, err error) error {
		if err != nil || !fi.Mode().IsRegular() {
			return err
		}
		b, err := os.ReadFile(p)
		rel, _ := filepath.Rel(root, p)
		files[rel] = b
		return err
	})
	if err != nil {
		return err
	}
	f.mu.Lock()
	l.files, l.mounted = files, ""
	f.mu.Unlock()
	return os.RemoveAll(path)
}

func (f *fakeStore) CheckLayerID(hash string) error { return deviceset.CheckHash(hash) }

func (f *fakeStore) HasDevice(hash string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.layers[hash] != nil
}

func (f *fakeStore) Metadata(hash string) (deviceset.DeviceMetadata, error) {
	return deviceset.DeviceMetadata{DeviceName: "fake-" + hash}, nil
}

func (f *fakeStore) Status() (deviceset.Status, error) {
	return deviceset.Status{PoolName: "fake"}, nil
}

func (f *fakeStore) Shutdown() error { return nil }
