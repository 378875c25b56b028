package testutil

import (
	"fmt"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"

	"github.com/thinlayer/thinlayer/devmapper"
	"github.com/thinlayer/thinlayer/loopback"
)

// PoolOptions size a loop-backed pool. Zero values take the defaults.
type PoolOptions struct {
	DataSize     int64              // sparse data file, default 2 GiB
	MetadataSize int64              // sparse metadata file, default 64 MiB
	BlockSize    devmapper.Sectors  // default 128 (64 KiB)
	Features     devmapper.ThinPool // feature flags (devices and block size are filled in)
	Dir          string             // where the files go, default t.TempDir()
}

// LoopPool is a thin pool over two loop devices, torn down at test end.
type LoopPool struct {
	Name         string             // device-mapper name of the pool
	Control      *devmapper.Control // open control node, closed at cleanup
	DataFile     string
	MetadataFile string
	Data         *loopback.Device
	Metadata     *loopback.Device
	Table        devmapper.ThinPool
}

var poolSeq atomic.Int64

// NewLoopPool makes a fresh thin pool for t. Everything it creates — thin
// devices activated on the pool, the pool, the loop devices, the files — is
// removed when t ends, also when it fails.
func NewLoopPool(t testing.TB, opts PoolOptions) *LoopPool {
	t.Helper()
	RequireKernel(t)
	opts = poolDefaults(t, opts)
	ctl, err := devmapper.Open()
	if err != nil {
		t.Fatalf("open device-mapper: %v", err)
	}
	p := &LoopPool{
		Name:         fmt.Sprintf("tltest-%d-%d-pool", os.Getpid(), poolSeq.Add(1)),
		Control:      ctl,
		DataFile:     filepath.Join(opts.Dir, "data"),
		MetadataFile: filepath.Join(opts.Dir, "metadata"),
	}
	t.Cleanup(func() { p.teardown(t) })
	p.Data = attachSparse(t, p.DataFile, opts.DataSize)
	p.Metadata = attachSparse(t, p.MetadataFile, opts.MetadataSize)
	p.Table = opts.Features
	p.Table.DataDev, p.Table.MetadataDev = p.Data.Path, p.Metadata.Path
	p.Table.DataBlockSize = opts.BlockSize
	size := devmapper.BytesToSectors(uint64(opts.DataSize))
	line := devmapper.Line(0, size, p.Table)
	if _, err := ctl.CreateAndLoad(p.Name, "", []devmapper.TableLine{line}, 0); err != nil {
		t.Fatalf("create pool %s: %v", p.Name, err)
	}
	return p
}

func poolDefaults(t testing.TB, o PoolOptions) PoolOptions {
	if o.DataSize == 0 {
		o.DataSize = 2 << 30
	}
	if o.MetadataSize == 0 {
		o.MetadataSize = 64 << 20
	}
	if o.BlockSize == 0 {
		o.BlockSize = 128
	}
	if o.Dir == "" {
		o.Dir = t.TempDir()
	}
	return o
}

func attachSparse(t testing.TB, path string, size int64) *loopback.Device {
	t.Helper()
	if err := loopback.CreateSparse(path, size); err != nil {
		t.Fatalf("create %s: %v", path, err)
	}
	d, err := loopback.Attach(path, loopback.Options{})
	if err != nil {
		t.Fatalf("attach %s: %v", path, err)
	}
	return d
}

// Path is the pool's device node.
func (p *LoopPool) Path() string { return devmapper.DevicePath(p.Name) }

// Activate makes a thin device of this pool active as name, sized size.
// It is removed at cleanup if the test leaves it.
func (p *LoopPool) Activate(t testing.TB, name string, id devmapper.ThinID, size devmapper.Sectors) devmapper.Info {
	t.Helper()
	thin := devmapper.Thin{PoolDev: p.Path(), DeviceID: id}
	info, err := p.Control.CreateAndLoad(name, "", []devmapper.TableLine{devmapper.Line(0, size, thin)}, 0)
	if err != nil {
		t.Fatalf("activate thin %d as %s: %v", id, name, err)
	}
	return info
}

// teardown removes every device stacked on the pool, then the pool and loops.
func (p *LoopPool) teardown(t testing.TB) {
	defer p.Control.Close()
	if info, err := p.Control.Info(p.Name); err == nil {
		p.removeUsers(t, info.Dev())
		if err := p.Control.Remove(p.Name, 0); err != nil {
			t.Errorf("cleanup: remove pool: %v", err)
		}
	}
	for _, d := range []*loopback.Device{p.Data, p.Metadata} {
		if d != nil {
			if err := d.Detach(); err != nil {
				t.Errorf("cleanup: detach %s: %v", d.Path, err)
			}
		}
	}
}

func (p *LoopPool) removeUsers(t testing.TB, poolDev uint64) {
	devs, err := p.Control.List()
	if err != nil {
		t.Errorf("cleanup: list devices: %v", err)
		return
	}
	for _, d := range devs {
		deps, err := p.Control.Deps(d.Name)
		if err != nil || len(deps) != 1 || deps[0] != poolDev {
			continue
		}
		if err := p.Control.Remove(d.Name, 0); err != nil {
			t.Errorf("cleanup: remove %s: %v", d.Name, err)
		}
	}
}
