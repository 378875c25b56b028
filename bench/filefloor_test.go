//go:build linux && cgo

package bench_test

import (
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"

	"github.com/thinlayer/thinlayer/compat/mobyhome"
	dm "github.com/thinlayer/thinlayer/devmapper"
	"golang.org/x/sys/unix"
)

// The floor of file work: the files of ApplyDiff100 and DiffBase copied or
// read by the least code, on layers the floor mounts itself (raw ioctls, as
// the Get+Put floor): openat/read/close per source file, openat/write/close
// per target file, one mkdirat per directory and one syncfs. A second
// reference, driver=tar, pipes GNU tar between the same mounts (it walks,
// stats and writes headers as a layer tar must). Both include activating,
// mounting, unmounting and removing the devices, which a driver cannot
// avoid either. Their layers are snapshots made through thinlayer's driver
// and never mounted by it, so no device of theirs is active elsewhere.
const tarName = "tar"

// mountLayer activates thin device thinID under a fresh name and mounts it
// on dir; undo unmounts and removes the device.
func (f *floor) mountLayer(thinID dm.ThinID, size dm.Sectors, dir string) (undo func() error, err error) {
	f.seq++
	name := fmt.Sprintf("bench-floor-%d", f.seq)
	info, err := f.ctl.Create(name, "")
	if err != nil {
		return nil, err
	}
	err = f.ctl.Load(name, []dm.TableLine{dm.Line(0, size, dm.Thin{PoolDev: f.pool, DeviceID: thinID})}, false)
	if err == nil {
		err = f.ctl.Resume(name, 0)
	}
	if err == nil {
		err = unix.Mount(fmt.Sprintf("/dev/dm-%d", info.Minor), dir, "ext4", 0, "")
	}
	if err != nil {
		return nil, errors.Join(fmt.Errorf("floor mount of thin %d: %w", thinID, err), f.ctl.Remove(name, 0))
	}
	return func() error {
		return errors.Join(unix.Unmount(dir, 0), f.ctl.Remove(name, 0))
	}, nil
}

// floorLayer is a layer of thinlayer's made for the floor: a snapshot of
// parent ("" for an empty one), never mounted by the driver.
type floorLayer struct {
	id   string
	thin dm.ThinID
	size dm.Sectors
}

func newFloorLayer(b *testing.B, e *env, d *driver, parent string) floorLayer {
	b.Helper()
	id := e.id("floor-layer")
	must(b, "create", d.Create(id, parent, nil))
	thin, size := thinOf(b, d, id)
	return floorLayer{id, thin, size}
}

// floorMounts mounts src and dst (either may be nil) on the floor's two
// mount points and runs fn on their rootfs/ directories.
func (f *floor) mounted(b *testing.B, e *env, src, dst *floorLayer, fn func(srcRoot, dstRoot string) error) error {
	dirs := []string{f.mnt, filepath.Join(e.dir, "floor-mnt-b")}
	var undo []func() error
	var err error
	for i, l := range []*floorLayer{src, dst} {
		if l == nil || err != nil {
			continue
		}
		must(b, "mkdir", os.MkdirAll(dirs[i], 0o755))
		var u func() error
		if u, err = f.mountLayer(l.thin, l.size, dirs[i]); err == nil {
			undo = append(undo, u)
		}
	}
	if err == nil {
		err = fn(filepath.Join(dirs[0], "rootfs"), filepath.Join(dirs[1], "rootfs"))
	}
	for i := len(undo) - 1; i >= 0; i-- {
		err = errors.Join(err, undo[i]())
	}
	return err
}

// copyFiles is the least code that copies names from src to dst: mkdirat
// for each directory, openat/read/close and openat/write/close for each
// file, one syncfs.
func copyFiles(src, dst string, names []string, buf []byte) error {
	if err := unix.Mkdir(dst, 0o755); err != nil && err != unix.EEXIST {
		return err
	}
	made := map[string]bool{}
	for _, name := range names {
		for _, dir := range parents(name) {
			if !made[dir] {
				made[dir] = true
				if err := unix.Mkdir(filepath.Join(dst, dir), 0o755); err != nil {
					return fmt.Errorf("mkdir %s: %w", dir, err)
				}
			}
		}
		n, err := readFile(filepath.Join(src, name), buf)
		if err != nil {
			return err
		}
		fd, err := unix.Open(filepath.Join(dst, name), unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_CLOEXEC, 0o644)
		if err != nil {
			return fmt.Errorf("create %s: %w", name, err)
		}
		_, err = unix.Write(fd, buf[:n])
		if err = errors.Join(err, unix.Close(fd)); err != nil {
			return fmt.Errorf("write %s: %w", name, err)
		}
	}
	return syncfs(dst)
}

// readFile reads a file of at most len(buf) bytes with one read.
func readFile(path string, buf []byte) (int, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return 0, fmt.Errorf("open %s: %w", path, err)
	}
	n, err := unix.Read(fd, buf)
	if err = errors.Join(err, unix.Close(fd)); err != nil {
		return 0, fmt.Errorf("read %s: %w", path, err)
	}
	return n, nil
}

func syncfs(dir string) error {
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	return errors.Join(unix.Syncfs(fd), unix.Close(fd))
}

// parents are the directories above name, outermost first.
func parents(name string) []string {
	var ds []string
	for dir := filepath.Dir(name); dir != "."; dir = filepath.Dir(dir) {
		ds = append([]string{dir}, ds...)
	}
	return ds
}

// benchFloorApplyDiff100 copies src100's files into a new layer.
func benchFloorApplyDiff100(b *testing.B, e *env) {
	fileWork(b, e, func(src, dst string) error {
		return copyFiles(src, dst, slices.Sorted(maps.Keys(src100Files())), make([]byte, 64<<10))
	})
}

// benchTarApplyDiff100 pipes GNU tar from src100's files into a new layer.
func benchTarApplyDiff100(b *testing.B, e *env) {
	fileWork(b, e, func(src, dst string) error {
		if err := unix.Mkdir(dst, 0o755); err != nil && err != unix.EEXIST {
			return err
		}
		out := exec.Command("tar", "-C", src, "-cf", "-", ".")
		in := exec.Command("tar", "-C", dst, "-xf", "-")
		pipe, err := out.StdoutPipe()
		if err != nil {
			return err
		}
		in.Stdin = pipe
		if err := out.Start(); err != nil {
			return err
		}
		inOut, inErr := in.CombinedOutput()
		if inErr != nil {
			inErr = fmt.Errorf("tar -x: %w: %s", inErr, inOut)
		}
		return errors.Join(inErr, out.Wait())
	})
}

// fileWork times copy from a snapshot of src100 into a fresh empty layer
// (made and removed untimed), and checks the first copy through the driver.
func fileWork(b *testing.B, e *env, copy func(src, dst string) error) {
	f, d := e.floor(b)
	e.fixture(b, d, fxSrc100)
	src := newFloorLayer(b, e, d, "src100")
	want := src100Files()
	b.ResetTimer()
	for i := range b.N {
		b.StopTimer()
		dst := newFloorLayer(b, e, d, "")
		b.StartTimer()
		must(b, "floor copy", f.mounted(b, e, &src, &dst, copy))
		b.StopTimer()
		if i == 0 {
			got, err := mobyhome.ReadFiles(d, dst.id)
			must(b, "read back", err)
			if !maps.Equal(got, want) {
				b.Fatalf("floor: copied layer holds %d files, want the %d of src100", len(got), len(want))
			}
		}
		must(b, "remove", d.Remove(dst.id))
		b.StartTimer()
	}
	b.StopTimer()
	must(b, "remove", d.Remove(src.id))
}

// benchFloorDiffBase reads the base layer's 250 files, one read each.
func benchFloorDiffBase(b *testing.B, e *env) {
	names := slices.Sorted(maps.Keys(files("usr/lib", baseFiles, baseDirs, childFileBytes, 3)))
	buf := make([]byte, 64<<10)
	readBase(b, e, func(root string) (int64, error) {
		var total int64
		for _, name := range names {
			n, err := readFile(filepath.Join(root, name), buf)
			if err != nil {
				return total, err
			}
			total += int64(n)
		}
		return total, nil
	})
}

// benchTarDiffBase tars the base layer with GNU tar, read to the end.
func benchTarDiffBase(b *testing.B, e *env) {
	readBase(b, e, func(root string) (int64, error) {
		cmd := exec.Command("tar", "-C", root, "-cf", "-", ".")
		pipe, err := cmd.StdoutPipe()
		if err != nil {
			return 0, err
		}
		if err := cmd.Start(); err != nil {
			return 0, err
		}
		n, err := io.Copy(io.Discard, pipe)
		return n, errors.Join(err, cmd.Wait())
	})
}

// readBase times read on a snapshot of the base layer (made untimed), and
// wants at least the base's file bytes read each time.
func readBase(b *testing.B, e *env, read func(root string) (int64, error)) {
	f, d := e.floor(b)
	e.fixture(b, d, fxBase)
	base := newFloorLayer(b, e, d, baseID)
	b.ResetTimer()
	for range b.N {
		var n int64
		must(b, "floor read", f.mounted(b, e, &base, nil, func(root, _ string) (err error) {
			n, err = read(root)
			return err
		}))
		if n < baseFiles*childFileBytes {
			b.Fatalf("floor: read %d bytes of the base layer, want at least %d", n, baseFiles*childFileBytes)
		}
	}
	b.StopTimer()
	must(b, "remove", d.Remove(base.id))
}
