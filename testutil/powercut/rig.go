// Package powercut cuts the power under a storage home at every flush of
// an operation, for tests: the home lives on an ext4 filesystem over a
// device-mapper log-writes device, each operation runs once between two
// marks, and the filesystem is then rebuilt from the log as it stood at
// each flush or FUA write inside the operation — what a power cut there
// would have left on stable storage — and the home opened and judged on
// it. The graph driver's walk (graphdriver/powercut) and Moby's driver's
// (compat) run the same code.
package powercut

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"

	dm "github.com/thinlayer/thinlayer/devmapper"
	"github.com/thinlayer/thinlayer/loopback"
	"github.com/thinlayer/thinlayer/testutil"
	"github.com/thinlayer/thinlayer/testutil/logwrites"
)

// Sizes of the recording: the filesystem the homes live on (ImageSize),
// and the log (sparse files in the guest's tmpfs; the log holds every
// byte written).
const (
	ImageSize = 256 << 20
	logSize   = 1 << 30
)

// Rig is the recording stack: a loop device for the homes' filesystem and
// one for the log, a log-writes device over both, ext4 on it, mounted at
// Mnt.
type Rig struct {
	Mnt       string
	ctl       *dm.Control
	dev, log  *loopback.Device
	lwName    string
	recording bool
}

// NewRig builds the stack; it is torn down at t's end.
func NewRig(t *testing.T) *Rig {
	t.Helper()
	testutil.RequireKernel(t)
	// Without them every point would read as damaged (and a peer's
	// walk only counts): missing tools fail the walk, never skip it.
	for _, tool := range []string{"mkfs.ext4", "thin_check"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("power-cut walk needs %s: %v", tool, err)
		}
	}
	dir := t.TempDir()
	ctl, err := dm.Open()
	must(t, err)
	r := &Rig{ctl: ctl, lwName: fmt.Sprintf("tlpc-%d-lw", os.Getpid()), Mnt: filepath.Join(dir, "mnt")}
	t.Cleanup(func() { r.Stop(t); ctl.Close() })
	r.dev = attach(t, filepath.Join(dir, "dev"), ImageSize)
	r.log = attach(t, filepath.Join(dir, "log"), logSize)
	line := dm.TableLine{Length: dm.BytesToSectors(ImageSize), Type: "log-writes", Params: r.dev.Path + " " + r.log.Path}
	info, err := ctl.CreateAndLoad(r.lwName, "", []dm.TableLine{line}, 0)
	if err != nil {
		t.Fatalf("create log-writes device: %v", err)
	}
	r.recording = true
	run(t, "mkfs.ext4", "-q", "-F", "-E", "nodiscard,lazy_itable_init=1,lazy_journal_init=1", info.KernelPath())
	must(t, os.Mkdir(r.Mnt, 0o755))
	must(t, unix.Mount(info.KernelPath(), r.Mnt, "ext4", 0, ""))
	return r
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func attach(t *testing.T, file string, size int64) *loopback.Device {
	t.Helper()
	must(t, loopback.CreateSparse(file, size))
	d, err := loopback.Attach(file, loopback.Options{})
	must(t, err)
	return d
}

func run(t *testing.T, name string, args ...string) {
	t.Helper()
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s %v: %v\n%s", name, args, err, out)
	}
}

// Mark puts a mark into the log.
func (r *Rig) Mark(t *testing.T, name string) {
	t.Helper()
	if _, err := r.ctl.Message(r.lwName, 0, "mark "+name); err != nil {
		t.Fatalf("mark %s: %v", name, err)
	}
}

// Stop unmounts the filesystem and takes the log-writes device down (its
// last entries and the super block's count reach the log then).
func (r *Rig) Stop(t *testing.T) {
	if !r.recording {
		return
	}
	r.recording = false
	if err := unix.Unmount(r.Mnt, 0); err != nil && err != unix.EINVAL {
		t.Errorf("unmount %s: %v", r.Mnt, err)
	}
	if err := r.ctl.Remove(r.lwName, 0); err != nil {
		t.Errorf("remove %s: %v", r.lwName, err)
	}
	for _, d := range []*loopback.Device{r.dev, r.log} {
		if err := d.Detach(); err != nil {
			t.Errorf("detach %s: %v", d.Path, err)
		}
	}
}

// DeviceFile is the file behind the recorded device.
func (r *Rig) DeviceFile() string { return r.dev.BackingFile }

// Parse reads the log once recording has stopped.
func (r *Rig) Parse(t *testing.T) *logwrites.Log {
	t.Helper()
	f, err := os.Open(r.log.BackingFile)
	must(t, err)
	t.Cleanup(func() { f.Close() })
	l, err := logwrites.Parse(f, logSize)
	must(t, err)
	return l
}

// Replayer rebuilds the filesystem entry by entry in an image file, and
// hands out copies of it as it stood at a point.
type Replayer struct {
	log     *logwrites.Log
	img     *os.File
	applied int
}

// NewReplayer starts from a zeroed device, as the rig's was.
func NewReplayer(t *testing.T, l *logwrites.Log) *Replayer {
	t.Helper()
	f, err := os.Create(filepath.Join(t.TempDir(), "image"))
	must(t, err)
	must(t, f.Truncate(ImageSize))
	t.Cleanup(func() { f.Close() })
	return &Replayer{log: l, img: f}
}

// Image is the image file as replayed so far.
func (p *Replayer) Image() string { return p.img.Name() }

// At returns a new directory holding "image": the device after entry i.
// Points must come in order.
func (p *Replayer) At(t *testing.T, i int) string {
	t.Helper()
	if i+1 < p.applied {
		t.Fatalf("replay points out of order: %d after %d", i, p.applied-1)
	}
	must(t, p.log.Replay(logwrites.File{File: p.img}, p.applied, i+1))
	p.applied = i + 1
	dst := t.TempDir()
	must(t, copySparse(p.img, filepath.Join(dst, "image")))
	return dst
}

// copySparse copies the data extents of src to a new file dst.
func copySparse(src *os.File, dst string) error {
	out, err := os.Create(dst)
	if err != nil {
		return err
	}
	defer out.Close()
	if err := out.Truncate(ImageSize); err != nil {
		return err
	}
	buf := make([]byte, 1<<20)
	fd := int(src.Fd())
	for off := int64(0); off < ImageSize; {
		data, err := unix.Seek(fd, off, unix.SEEK_DATA)
		if err == unix.ENXIO {
			return nil
		} else if err != nil {
			return err
		}
		hole, err := unix.Seek(fd, data, unix.SEEK_HOLE)
		if err != nil {
			return err
		}
		for off = data; off < hole; {
			n, err := src.ReadAt(buf[:min(int64(len(buf)), hole-off)], off)
			if err != nil {
				return err
			}
			if _, err := out.WriteAt(buf[:n], off); err != nil {
				return err
			}
			off += int64(n)
		}
	}
	return nil
}

// Mounted attaches dir's image and mounts it; undone at t's end.
func Mounted(t *testing.T, dir string) string {
	t.Helper()
	loop, err := loopback.Attach(filepath.Join(dir, "image"), loopback.Options{})
	must(t, err)
	mnt := filepath.Join(dir, "mnt")
	must(t, os.Mkdir(mnt, 0o755))
	t.Cleanup(func() {
		if err := unix.Unmount(mnt, 0); err != nil {
			t.Errorf("unmount replayed image: %v", err)
		}
		if err := loop.Detach(); err != nil {
			t.Errorf("detach %s: %v", loop.Path, err)
		}
		_ = os.Remove(filepath.Join(dir, "image"))
	})
	if err := unix.Mount(loop.Path, mnt, "ext4", 0, ""); err != nil {
		t.Fatalf("mount the replayed image: %v", err)
	}
	return mnt
}
