package graphdriver_test

import (
	"archive/tar"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	gd "github.com/thinlayer/thinlayer/graphdriver"
)

// A running container owns its layer's files: Diff, Changes and DiffSize
// must never read through a symlink it made, whatever it swaps and when.

const (
	hostSecret = "HOST-SECRET-0123456789"
	hostOnly   = "hostonly"
)

// secretDir is a host directory beside the home holding what no diff may
// carry: files f0..f9 with the secret, and a 1 MiB file only it has.
func secretDir(t *testing.T) string {
	dir := t.TempDir()
	for i := 0; i < 10; i++ {
		must(t, os.WriteFile(filepath.Join(dir, fmt.Sprintf("f%d", i)), []byte(hostSecret), 0o644))
	}
	must(t, os.WriteFile(filepath.Join(dir, hostOnly), bytes.Repeat([]byte(hostSecret), 1<<20/len(hostSecret)), 0o644))
	return dir
}

// diffBytes reads a whole Diff (nil, err on failure).
func diffBytes(d gd.Driver, id, parent string) ([]byte, error) {
	rc, err := d.Diff(id, parent)
	if err != nil {
		return nil, err
	}
	data, err := io.ReadAll(rc)
	return data, errors.Join(err, rc.Close())
}

// symlinkNamed says whether the tar has name as a symlink entry.
func symlinkNamed(t *testing.T, data []byte, name string) bool {
	tr := tar.NewReader(bytes.NewReader(data))
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return false
		}
		must(t, err)
		if hdr.Name == name && hdr.Typeflag == tar.TypeSymlink {
			return true
		}
	}
}

// A container flips a directory of its layer between itself and a symlink
// to a host directory while Diff, Changes and DiffSize run over and over.
func TestDiffWhileContainerSwapsDirs(t *testing.T) {
	d := newDriver(t, t.TempDir(), walkOptions())
	secrets := secretDir(t)
	mustCreate(t, d, "img", "")
	writeFile(t, get(t, d, "img")+"/passwd", "root", 0o644, 0, 0)
	put(t, d, "img")
	mustCreate(t, d, "ctr", "img")
	root := get(t, d, "ctr")
	defer put(t, d, "ctr")
	must(t, os.Mkdir(root+"/d", 0o755))
	for i := 0; i < 10; i++ {
		writeFile(t, fmt.Sprintf("%s/d/f%d", root, i), "layer-content-abcdefgh", 0o644, 0, 0)
	}
	var stop atomic.Bool
	var swaps atomic.Int64
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // the container
		defer wg.Done()
		for !stop.Load() {
			if os.Rename(root+"/d", root+"/d.real") != nil || os.Symlink(secrets, root+"/d") != nil {
				t.Error("swap failed")
				return
			}
			swaps.Add(1)
			if os.Remove(root+"/d") != nil || os.Rename(root+"/d.real", root+"/d") != nil {
				t.Error("swap back failed")
				return
			}
		}
	}()
	var runs, sawLink int
	var err error
	for deadline := time.Now().Add(5 * time.Second); err == nil && (time.Now().Before(deadline) || runs < 20); runs++ {
		err = diffOnce(t, d, &sawLink)
	}
	stop.Store(true)
	wg.Wait()
	if err != nil {
		t.Fatalf("run %d: %v", runs, err)
	}
	t.Logf("diff while swapping: %d runs of Diff×2+Changes+DiffSize, %d swaps, %d diffs saw d as the symlink; no host data", runs, swaps.Load(), sawLink)
	if swaps.Load() == 0 {
		t.Fatal("the container never swapped")
	}
}

// diffOnce runs Diff (over the image and over nothing), Changes and
// DiffSize of "ctr" once, and says what carried host data.
func diffOnce(t *testing.T, d gd.Driver, sawLink *int) error {
	for _, parent := range []string{"img", ""} {
		data, err := diffBytes(d, "ctr", parent)
		if err != nil {
			return fmt.Errorf("Diff(ctr, %q): %w", parent, err)
		}
		if bytes.Contains(data, []byte(hostSecret)) || bytes.Contains(data, []byte(hostOnly)) {
			return fmt.Errorf("Diff(ctr, %q) carries the host directory", parent)
		}
		if symlinkNamed(t, data, "d") {
			*sawLink++
		}
	}
	changes, err := d.Changes("ctr", "img")
	if err != nil {
		return fmt.Errorf("Changes: %w", err)
	}
	for _, c := range changes {
		if strings.Contains(c.Path, hostOnly) {
			return fmt.Errorf("Changes lists %s, a host file", c.Path)
		}
	}
	size, err := d.DiffSize("ctr", "img")
	if err != nil {
		return fmt.Errorf("DiffSize: %w", err)
	}
	if size >= 1<<20 {
		return fmt.Errorf("DiffSize %d counts the host directory", size)
	}
	return nil
}

// A layer whose rootfs is a symlink (not something a graph driver layer
// can get by its own writes, but a layer is input): Diff, Changes and
// DiffSize refuse it, and the next Get refuses to hand it out.
func TestRootfsSymlinkRefused(t *testing.T) {
	d := newDriver(t, t.TempDir(), walkOptions())
	secrets := secretDir(t)
	mustCreate(t, d, "l", "")
	root := get(t, d, "l")
	must(t, os.Remove(root))
	must(t, os.Symlink(secrets, root))
	if data, err := diffBytes(d, "l", ""); err == nil {
		t.Errorf("Diff of a layer whose rootfs is a symlink: %d bytes, host secret carried: %v",
			len(data), bytes.Contains(data, []byte(hostSecret)))
	}
	if _, err := d.Changes("l", ""); err == nil {
		t.Error("Changes followed a symlinked rootfs")
	}
	if _, err := d.DiffSize("l", ""); err == nil {
		t.Error("DiffSize followed a symlinked rootfs")
	}
	put(t, d, "l")
	if p, err := d.Get("l", ""); err == nil {
		put(t, d, "l")
		t.Errorf("Get handed out %s, a symlink to %s", p, secrets)
	} else {
		t.Logf("Get of a layer whose rootfs is a symlink: %v", err)
	}
}
