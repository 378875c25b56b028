package cli

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/thinlayer/thinlayer/graphdriver"
)

// demoOptions keep the demo's home small: sparse files in a temp dir.
var demoOptions = []string{"dm.loopdatasize=1GB", "dm.loopmetadatasize=64MB", "dm.basesize=256MB", "dm.fs=ext4"}

// Layer ids of the demo.
const (
	demoImage     = "demo-image"
	demoContainer = "demo-container"
)

// demo is one run: a throwaway home and what the steps pass on.
type demo struct {
	w       io.Writer
	home    Home
	dir     string // temp dir holding the home and the files
	mnt     string // where the snapshot is mounted
	rootfs  []byte
	entries int
}

type demoStep struct {
	title string
	run   func(d *demo) ([]string, error) // what it did, line by line
}

var demoSteps = []demoStep{
	{"make a loop-backed home (graphdriver.Init: pool, base device, mkfs)", (*demo).makeHome},
	{"generate a small root filesystem tar", (*demo).generate},
	{"thinlayer import " + demoImage + " -i rootfs.tar.gz", (*demo).importImage},
	{"snapshot it: graphdriver CreateReadWrite " + demoContainer, (*demo).snapshot},
	{"thinlayer mount --rw " + demoContainer + " DIR", (*demo).mount},
	{"change files in the snapshot, as a container would", (*demo).change},
	{"thinlayer ls", (*demo).ls},
	{"thinlayer status", (*demo).status},
	{"thinlayer umount DIR", (*demo).umount},
	{"the changes and the diff size (graphdriver Changes, DiffSize)", (*demo).changes},
	{"thinlayer export " + demoContainer + " --parent " + demoImage + " -o diff.tar", (*demo).export},
	{"remove everything (graphdriver Remove)", (*demo).removeAll},
	{"thinlayer check", (*demo).check},
}

func runDemo(c *call) error { return Demo(c.env.Stdout) }

// Demo walks through the commands in a throwaway loop-backed home, saying
// what each step did and how long it took. It needs a kernel with dm-thin
// (the thinlayer command boots User-Mode Linux for it where there is none).
func Demo(w io.Writer) (err error) {
	if err := KernelUsable(); err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "thinlayer-demo-")
	if err != nil {
		return err
	}
	d := &demo{w: w, dir: dir, home: Home{Dir: filepath.Join(dir, "home"), StorageOpts: demoOptions}}
	defer func() { err = errors.Join(err, d.teardown(err != nil)) }()
	fmt.Fprintf(w, "thinlayer demo: a throwaway home in %s\n\n", d.home.Dir)
	start := time.Now()
	for i, s := range demoSteps {
		t := time.Now()
		lines, err := s.run(d)
		fmt.Fprintf(w, "[%2d/%d] %s  (%s)\n", i+1, len(demoSteps), s.title, time.Since(t).Round(time.Millisecond))
		for _, l := range lines {
			fmt.Fprintf(w, "        %s\n", l)
		}
		if err != nil {
			return fmt.Errorf("demo step %d (%s): %w", i+1, s.title, err)
		}
	}
	fmt.Fprintf(w, "\ndemo done in %s: the home was consistent at the end.\n", time.Since(start).Round(time.Millisecond))
	return nil
}

// teardown removes what a demo leaves; after a failure that includes a
// mount and the pool.
func (d *demo) teardown(failed bool) error {
	var errs []error
	if failed && d.mnt != "" {
		_, err := d.home.Unmount(d.mnt)
		errs = append(errs, err)
	}
	if failed {
		if drv, err := graphdriver.Init(d.home.Dir, d.home.StorageOpts, graphdriver.IdentityMapping{}); err == nil {
			errs = append(errs, drv.Cleanup())
		}
	}
	errs = append(errs, os.RemoveAll(d.dir))
	return errors.Join(errs...)
}

// withDriver runs f on the library's driver, opened on the demo's home.
func (d *demo) withDriver(f func(drv graphdriver.Driver) error) (err error) {
	drv, err := graphdriver.Init(d.home.Dir, d.home.StorageOpts, graphdriver.IdentityMapping{})
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, drv.Cleanup()) }()
	return f(drv)
}

func (d *demo) makeHome() ([]string, error) {
	var lines []string
	err := d.withDriver(func(drv graphdriver.Driver) error {
		for _, r := range drv.Status() {
			switch r[0] {
			case "Pool Name", "Base Device Size", "Backing Filesystem", "Data loop file", "Data Space Total":
				lines = append(lines, fmt.Sprintf("%s: %s", r[0], r[1]))
			}
		}
		return nil
	})
	return lines, err
}

func (d *demo) generate() ([]string, error) {
	var err error
	d.rootfs, d.entries, err = demoRootfs()
	if err == nil {
		err = os.WriteFile(filepath.Join(d.dir, "rootfs.tar.gz"), d.rootfs, 0o600)
	}
	return []string{fmt.Sprintf("%d entries, %s gzipped", d.entries, human(uint64(len(d.rootfs))))}, err
}

func (d *demo) importImage() ([]string, error) {
	n, err := d.home.Import(demoImage, "", bytes.NewReader(d.rootfs), int64(len(d.rootfs)))
	return []string{fmt.Sprintf("layer %s on the base device: %s of file content written", demoImage, human(uint64(n)))}, err
}

func (d *demo) snapshot() ([]string, error) {
	var lines []string
	err := d.withDriver(func(drv graphdriver.Driver) error {
		if err := drv.CreateReadWrite(demoContainer, demoImage, nil); err != nil {
			return err
		}
		for _, id := range []string{demoImage, demoContainer} {
			m, err := drv.GetMetadata(id)
			if err != nil {
				return err
			}
			lines = append(lines, fmt.Sprintf("%s: thin id %s, %s", id, m["DeviceId"], m["DeviceName"]))
		}
		lines = append(lines, "a snapshot shares every block with its origin until one of them writes")
		return nil
	})
	return lines, err
}

func (d *demo) mount() ([]string, error) {
	d.mnt = filepath.Join(d.dir, "mnt")
	if err := os.Mkdir(d.mnt, 0o755); err != nil {
		return nil, err
	}
	r, err := d.home.Mount(demoContainer, d.mnt, true)
	if err != nil {
		d.mnt = ""
		return nil, err
	}
	return []string{fmt.Sprintf("%s (its rootfs/) on %s, read-write; the command exits, the mount stays", r.Device, r.Dir)}, nil
}

func (d *demo) change() ([]string, error) { return demoChanges(d.mnt) }

func (d *demo) ls() ([]string, error) {
	l, err := d.home.List()
	if err != nil {
		return nil, err
	}
	var b strings.Builder
	err = l.Print(&b, &b)
	return strings.Split(strings.TrimRight(b.String(), "\n"), "\n"), err
}

func (d *demo) status() ([]string, error) {
	r, err := d.home.Status()
	if err != nil {
		return nil, err
	}
	p := r.Pool
	return []string{
		fmt.Sprintf("pool %s: mode %s, transaction %d", p.Name, p.Mode, p.TransactionID),
		fmt.Sprintf("data     %s of %s (%.1f%%)", human(p.DataUsed), human(p.DataTotal), p.DataPercent),
		fmt.Sprintf("metadata %s of %s (%.1f%%)", human(p.MetadataUsed), human(p.MetadataTotal), p.MetadataPercent),
	}, nil
}

func (d *demo) umount() ([]string, error) {
	r, err := d.home.Unmount(d.mnt)
	if err != nil {
		return nil, err
	}
	d.mnt = ""
	lines := []string{fmt.Sprintf("unmounted %s; device %s deactivated: %v", r.Dir, r.Device, r.Deactivated)}
	if r.Note != "" {
		lines = append(lines, r.Note)
	}
	return lines, nil
}

func (d *demo) changes() ([]string, error) {
	var lines []string
	err := d.withDriver(func(drv graphdriver.Driver) error {
		changes, err := drv.Changes(demoContainer, demoImage)
		if err != nil {
			return err
		}
		for _, c := range changes {
			lines = append(lines, c.String())
		}
		size, err := drv.DiffSize(demoContainer, demoImage)
		lines = append(lines, fmt.Sprintf("diff size: %s in files added or changed", human(uint64(size))))
		return err
	})
	return lines, err
}

func (d *demo) export() ([]string, error) {
	path := filepath.Join(d.dir, "diff.tar")
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	n, err := d.home.Export(demoContainer, demoImage, f)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, err
	}
	f, err = os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	names, err := tarNames(f)
	return []string{fmt.Sprintf("%s, %s: %s", path, human(uint64(n)), strings.Join(names, " "))}, err
}

func (d *demo) removeAll() ([]string, error) {
	err := d.withDriver(func(drv graphdriver.Driver) error {
		return errors.Join(drv.Remove(demoContainer), drv.Remove(demoImage))
	})
	return []string{"removed " + demoContainer + " and " + demoImage + "; the pool took their blocks back"}, err
}

func (d *demo) check() ([]string, error) {
	r, err := d.home.Check()
	if err != nil {
		return nil, err
	}
	var b strings.Builder
	_ = r.Print(&b)
	lines := strings.Split(strings.TrimRight(b.String(), "\n"), "\n")
	if !r.OK() {
		return lines, fmt.Errorf("%w: %s", ErrProblems, plural(len(r.Problems), "problem"))
	}
	return lines, nil
}
