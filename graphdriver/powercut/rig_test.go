package powercut

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"

	dm "github.com/thinlayer/thinlayer/devmapper"
	"github.com/thinlayer/thinlayer/graphdriver/internal/gdtest"
	"github.com/thinlayer/thinlayer/loopback"
	"github.com/thinlayer/thinlayer/testutil/logwrites"
)

// Sizes of the recording: the filesystem the home lives on, and the log
// (sparse files in the guest's tmpfs; the log holds every byte written).
const (
	homeFSSize = 256 << 20
	logSize    = 1 << 30
)

// rig is the recording stack: a loop device for the home's filesystem and
// one for the log, a log-writes device over both, ext4 on it, mounted.
type rig struct {
	dir       string
	ctl       *dm.Control
	dev, log  *loopback.Device
	lwName    string
	mnt       string
	recording bool
}

func newRig(t *testing.T) *rig {
	t.Helper()
	dir := t.TempDir()
	ctl, err := dm.Open()
	gdtest.Must(t, err)
	r := &rig{dir: dir, ctl: ctl, lwName: fmt.Sprintf("tlpc-%d-lw", os.Getpid()), mnt: filepath.Join(dir, "mnt")}
	t.Cleanup(func() { r.stop(t); ctl.Close() })
	r.dev = attach(t, filepath.Join(dir, "dev"), homeFSSize)
	r.log = attach(t, filepath.Join(dir, "log"), logSize)
	line := dm.TableLine{Length: dm.BytesToSectors(homeFSSize), Type: "log-writes", Params: r.dev.Path + " " + r.log.Path}
	info, err := ctl.CreateAndLoad(r.lwName, "", []dm.TableLine{line}, 0)
	if err != nil {
		t.Fatalf("create log-writes device: %v", err)
	}
	r.recording = true
	run(t, "mkfs.ext4", "-q", "-F", "-E", "nodiscard,lazy_itable_init=1,lazy_journal_init=1", info.KernelPath())
	gdtest.Must(t, os.Mkdir(r.mnt, 0o755))
	gdtest.Must(t, unix.Mount(info.KernelPath(), r.mnt, "ext4", 0, ""))
	return r
}

func attach(t *testing.T, file string, size int64) *loopback.Device {
	t.Helper()
	gdtest.Must(t, loopback.CreateSparse(file, size))
	d, err := loopback.Attach(file, loopback.Options{})
	gdtest.Must(t, err)
	return d
}

func run(t *testing.T, name string, args ...string) {
	t.Helper()
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s %v: %v\n%s", name, args, err, out)
	}
}

// mark puts a mark into the log.
func (r *rig) mark(t *testing.T, name string) {
	t.Helper()
	if _, err := r.ctl.Message(r.lwName, 0, "mark "+name); err != nil {
		t.Fatalf("mark %s: %v", name, err)
	}
}

// stop unmounts the home's filesystem and takes the log-writes device
// down (its last entries and the super block's count reach the log then).
func (r *rig) stop(t *testing.T) {
	if !r.recording {
		return
	}
	r.recording = false
	if err := unix.Unmount(r.mnt, 0); err != nil && err != unix.EINVAL {
		t.Errorf("unmount %s: %v", r.mnt, err)
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

// parse reads the log once recording has stopped.
func (r *rig) parse(t *testing.T) *logwrites.Log {
	t.Helper()
	f, err := os.Open(r.log.BackingFile)
	gdtest.Must(t, err)
	t.Cleanup(func() { f.Close() })
	l, err := logwrites.Parse(f, logSize)
	gdtest.Must(t, err)
	return l
}

// replayer rebuilds the home's filesystem entry by entry in an image
// file, and hands out copies of it as it stood at a point.
type replayer struct {
	log     *logwrites.Log
	imgDir  string
	img     *os.File
	applied int
}

func newReplayer(t *testing.T, l *logwrites.Log) *replayer {
	t.Helper()
	dir := t.TempDir()
	f, err := os.Create(filepath.Join(dir, "image"))
	gdtest.Must(t, err)
	gdtest.Must(t, f.Truncate(homeFSSize))
	t.Cleanup(func() { f.Close() })
	return &replayer{log: l, imgDir: dir, img: f}
}

// at returns a directory holding "image": the device after entry i.
func (p *replayer) at(t *testing.T, i int) string {
	t.Helper()
	if i+1 < p.applied {
		t.Fatalf("replay points out of order: %d after %d", i, p.applied-1)
	}
	gdtest.Must(t, p.log.Replay(logwrites.File{File: p.img}, p.applied, i+1))
	p.applied = i + 1
	dst := t.TempDir()
	gdtest.Must(t, gdtest.CopyTree(p.imgDir, dst))
	return dst
}

// mounted attaches an image and mounts it; undone at t's end.
func mounted(t *testing.T, dir string) string {
	t.Helper()
	loop, err := loopback.Attach(filepath.Join(dir, "image"), loopback.Options{})
	gdtest.Must(t, err)
	mnt := filepath.Join(dir, "mnt")
	gdtest.Must(t, os.Mkdir(mnt, 0o755))
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
