//go:build linux && cgo

package bench_test

import (
	"archive/tar"
	"bytes"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"

	"github.com/thinlayer/thinlayer/compat/mobyhome"
)

// Many at once: an engine starts many containers and pulls several images
// at the same time. Each goroutine runs b.N operations back to back; ns/op
// is the wall time over all goroutines' operations (the inverse of the
// throughput), and ops/s the throughput itself. Moby's driver serializes
// every call behind one lock (and, with udev, behind each udev round trip);
// thinlayer locks per layer.

// benchConcurrent runs workers goroutines of container lifecycles on a
// shared image layer: CreateReadWrite, Get, write a file, Put, Remove.
func benchConcurrent(workers int) func(b *testing.B, e *env, name string) {
	return func(b *testing.B, e *env, name string) {
		d := e.driver(b, name)
		e.fixture(b, d, fxImage)
		ids := make([][]string, workers)
		for w := range ids {
			for range b.N {
				ids[w] = append(ids[w], e.id(fmt.Sprintf("ctr%d", w)))
			}
		}
		b.ResetTimer()
		err := parallel(workers, func(w int) error {
			for i, id := range ids[w] {
				if err := lifecycle(d, id, i == 0); err != nil {
					return err
				}
			}
			return nil
		})
		b.StopTimer()
		must(b, d.name+": concurrent lifecycles", err)
		for _, l := range ids {
			for _, id := range l {
				if d.Exists(id) {
					b.Fatalf("%s: container layer %s still exists after Remove", d.name, id)
				}
			}
		}
		reportThroughput(b, workers*b.N)
	}
}

// lifecycle is one container's storage life; check also reads the image's
// file and the written one back through the container's mount.
func lifecycle(d *driver, id string, check bool) error {
	if err := d.CreateReadWrite(id, "img", nil); err != nil {
		return fmt.Errorf("create %s: %w", id, err)
	}
	root, err := d.Get(id, "")
	if err != nil {
		return fmt.Errorf("get %s: %w", id, err)
	}
	want := []byte(id + "\n")
	hostname := filepath.Join(root, "etc", "hostname")
	err = os.WriteFile(hostname, want, 0o644)
	if err == nil && check {
		err = checkContainerFiles(root, hostname, want)
	}
	if err != nil {
		return errors.Join(fmt.Errorf("%s: %w", id, err), d.Put(id))
	}
	if err := d.Put(id); err != nil {
		return fmt.Errorf("put %s: %w", id, err)
	}
	if err := d.Remove(id); err != nil {
		return fmt.Errorf("remove %s: %w", id, err)
	}
	return nil
}

func checkContainerFiles(root, hostname string, want []byte) error {
	img, err := os.ReadFile(filepath.Join(root, "etc", "d00", "f0000"))
	if err != nil || len(img) != 512 {
		return fmt.Errorf("image file not visible in the container layer (%d bytes): %v", len(img), err)
	}
	got, err := os.ReadFile(hostname)
	if err != nil || !bytes.Equal(got, want) {
		return fmt.Errorf("hostname reads %q, want %q: %v", got, want, err)
	}
	return nil
}

// Pulls: each is an image of pullDepth layers of pullFiles files, made by
// Create on the layer below and ApplyDiff of the layer's tar (from memory).
const (
	pullers   = 8
	pullDepth = 3
	pullFiles = 20
	pullBytes = 2048
)

// pullLayers are the tars of one image's layers, bottom first, and the
// files each holds.
var pullLayers = sync.OnceValues(func() ([][]byte, []map[string]string) {
	var tars [][]byte
	var contents []map[string]string
	for l := range pullDepth {
		fs := files(fmt.Sprintf("layer%d", l), pullFiles, 4, pullBytes, 1000+uint64(l)*100)
		tars = append(tars, layerTar(fs))
		contents = append(contents, fs)
	}
	return tars, contents
})

// layerTar is a layer tar holding fs (directories first, as docker's are).
func layerTar(fs map[string]string) []byte {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	dirs := map[string]bool{}
	for _, name := range sortedKeys(fs) {
		for dir := filepath.Dir(name); dir != "."; dir = filepath.Dir(dir) {
			if !dirs[dir] {
				dirs[dir] = true
				_ = tw.WriteHeader(&tar.Header{Name: dir + "/", Mode: 0o755, Typeflag: tar.TypeDir})
			}
		}
		_ = tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(fs[name])), Typeflag: tar.TypeReg})
		_, _ = tw.Write([]byte(fs[name]))
	}
	_ = tw.Close()
	return buf.Bytes()
}

// sortedKeys sorts parents before their children ("a" < "a/b").
func sortedKeys(m map[string]string) []string { return slices.Sorted(maps.Keys(m)) }

// benchPull8 runs 8 goroutines, each pulling b.N images (a chain of
// Create + ApplyDiff); the layers are removed untimed after the loop.
func benchPull8(b *testing.B, e *env, name string) {
	d := e.driver(b, name)
	tars, contents := pullLayers()
	ids := make([][]string, pullers) // per puller: b.N images × pullDepth layers, bottom first
	for w := range ids {
		for range b.N * pullDepth {
			ids[w] = append(ids[w], e.id(fmt.Sprintf("pull%d", w)))
		}
	}
	b.ResetTimer()
	err := parallel(pullers, func(w int) error {
		for i, id := range ids[w] {
			parent := ""
			if i%pullDepth > 0 {
				parent = ids[w][i-1]
			}
			if err := d.Create(id, parent, nil); err != nil {
				return fmt.Errorf("create %s: %w", id, err)
			}
			if _, err := d.ApplyDiff(id, parent, bytes.NewReader(tars[i%pullDepth])); err != nil {
				return fmt.Errorf("apply diff %s: %w", id, err)
			}
		}
		return nil
	})
	b.StopTimer()
	must(b, d.name+": concurrent pulls", err)
	checkPulled(b, d, ids[pullers-1][pullDepth-1], contents)
	for _, l := range ids {
		for i := len(l) - 1; i >= 0; i-- {
			must(b, d.name+": remove "+l[i], d.Remove(l[i]))
		}
	}
	reportThroughput(b, pullers*b.N)
}

// checkPulled reads the top layer of a pulled image and wants every file
// of every layer below.
func checkPulled(b *testing.B, d *driver, top string, contents []map[string]string) {
	b.Helper()
	want := map[string]string{}
	for _, c := range contents {
		maps.Copy(want, c)
	}
	got, err := mobyhome.ReadFiles(d, top)
	must(b, "read pulled image", err)
	if !maps.Equal(got, want) {
		b.Fatalf("%s: pulled image %s holds %d files, want the %d of its layers", d.name, top, len(got), len(want))
	}
}

// parallel runs f(0..n-1) in n goroutines and joins their errors.
func parallel(n int, f func(w int) error) error {
	errs := make([]error, n)
	var wg sync.WaitGroup
	for w := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[w] = f(w)
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// reportThroughput replaces ns/op (per b.N) with the wall time per
// operation over all goroutines and adds the throughput.
func reportThroughput(b *testing.B, ops int) {
	sec := b.Elapsed().Seconds()
	b.ReportMetric(b.Elapsed().Seconds()*1e9/float64(ops), "ns/op")
	b.ReportMetric(float64(ops)/sec, "ops/s")
}
