package powercut

import (
	"archive/tar"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/thinlayer/thinlayer/internal/recordfile"
	"github.com/thinlayer/thinlayer/testutil"
)

// Driver is a graph driver as the walk drives it: thinlayer's and Moby's
// (whose method signatures differ in their option types) adapt to it.
type Driver interface {
	Create(id, parent string) error
	CreateReadWrite(id, parent string) error
	ApplyDiff(id, parent string, diff io.Reader) error
	Get(id string) (string, error)
	Put(id string) error
	Remove(id string) error
	Exists(id string) bool
	// PoolName is the home's thin pool's device-mapper name.
	PoolName() string
	Cleanup() error
}

// Opener opens (Init) a driver on home with options.
type Opener func(home string, opts []string) (Driver, error)

// Live is the recording run's driver on its home.
type Live struct {
	Home string
	Opts []string
	Open Opener
	D    Driver
}

// DriverOp is one graph-driver operation of a walk.
type DriverOp struct {
	Name string
	Init bool     // the operation is Init: the driver is shut down first
	Opts []string // the options from this operation on (nil: unchanged)
	// BaseSize: the base's filesystem size the op's Init asks for.
	BaseSize uint64
	Pre      func(t *testing.T, l *Live) // before the start mark
	Run      func(l *Live) error
	Post     func(t *testing.T, l *Live) // after the end mark
}

// LayerIDs are the layers DriverOps make; each point checks all of them.
var LayerIDs = []string{"keep", "victim"}

// LayerTar is the diff ApplyDiff applies.
var LayerTar = func() []byte {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	_ = tw.WriteHeader(&tar.Header{Name: "etc/", Typeflag: tar.TypeDir, Mode: 0o755})
	body := bytes.Repeat([]byte("layer data "), 4096)
	for i := 0; i < 6; i++ {
		_ = tw.WriteHeader(&tar.Header{Name: fmt.Sprintf("etc/f%d", i), Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(body))})
		_, _ = tw.Write(body)
	}
	_ = tw.WriteHeader(&tar.Header{Name: "link", Typeflag: tar.TypeSymlink, Linkname: "etc/f0"})
	_ = tw.Close()
	return buf.Bytes()
}()

// DriverOps are the operations every graph driver's walk runs, in order:
// Init of an empty home, Create, ApplyDiff, CreateReadWrite on a mounted
// parent, Put (of a layer written and fsync'd while mounted), Remove, and
// Init growing the base to grownBase (options grownOpts).
func DriverOps(opts, grownOpts []string, grownBase uint64) []DriverOp {
	return []DriverOp{
		{Name: "init", Init: true, Opts: opts, Run: InitDriver},
		{Name: "create", Run: func(l *Live) error { return l.D.Create("keep", "") }},
		{Name: "applydiff", Run: func(l *Live) error { return l.D.ApplyDiff("keep", "", bytes.NewReader(LayerTar)) }},
		{Name: "createrw-on-mounted", Pre: GetLayer("keep"), Post: PutLayer("keep"),
			Run: func(l *Live) error { return l.D.CreateReadWrite("victim", "keep") }},
		{Name: "put", Pre: writeVictim, Run: func(l *Live) error { return l.D.Put("victim") }},
		{Name: "remove", Run: func(l *Live) error { return l.D.Remove("victim") }},
		{Name: "init-basesize", Init: true, Opts: grownOpts, BaseSize: grownBase, Run: InitDriver},
	}
}

// InitDriver opens the live driver.
func InitDriver(l *Live) (err error) {
	l.D, err = l.Open(l.Home, l.Opts)
	return err
}

// GetLayer mounts id.
func GetLayer(id string) func(*testing.T, *Live) {
	return func(t *testing.T, l *Live) {
		_, err := l.D.Get(id)
		must(t, err)
	}
}

// PutLayer unmounts id.
func PutLayer(id string) func(*testing.T, *Live) {
	return func(t *testing.T, l *Live) { must(t, l.D.Put(id)) }
}

// writeVictim mounts victim and writes a file into it, fsync'd: a
// container's write, durable before the Put that follows.
func writeVictim(t *testing.T, l *Live) {
	root, err := l.D.Get("victim")
	must(t, err)
	f, err := os.OpenFile(filepath.Join(root, "rw-data"), os.O_CREATE|os.O_WRONLY|os.O_EXCL, 0o644)
	must(t, err)
	_, err = f.WriteString("written by the container")
	must(t, err)
	must(t, f.Sync())
	must(t, f.Close())
	must(t, recordfile.SyncDir(root))
}

// RecordDriverOps runs ops on home (on the rig), each between marks, and
// returns their records, judged at replay by CheckDriverHome.
func RecordDriverOps(t *testing.T, r *Rig, open Opener, home string, ops []DriverOp) []Record {
	t.Helper()
	l := &Live{Home: home, Open: open}
	var recs []Record
	prev := State{}
	for _, op := range ops {
		if op.Opts != nil {
			l.Opts = op.Opts
		}
		if op.Init && l.D != nil {
			must(t, l.D.Cleanup())
			l.D = nil
		}
		if op.Pre != nil {
			op.Pre(t, l)
		}
		before := prev
		if l.D != nil {
			before = ReadLayers(t, l.D)
		}
		r.Mark(t, op.Name+"-start")
		err := op.Run(l)
		r.Mark(t, op.Name+"-end")
		if err != nil {
			t.Fatalf("%s: %v", op.Name, err)
		}
		if op.Post != nil {
			op.Post(t, l)
		}
		prev = ReadLayers(t, l.D)
		recs = append(recs, Record{Name: op.Name, Before: before, After: prev,
			Check: driverCheck(open, home, l.Opts, op)})
	}
	must(t, l.D.Cleanup())
	return recs
}

// ReadLayers reads every layer of LayerIDs through d.
func ReadLayers(t *testing.T, d Driver) State {
	t.Helper()
	out := State{}
	for _, id := range LayerIDs {
		out[id] = ReadLayer(t, d, id)
	}
	return out
}

// ErrGone, wrapped by a Driver's Get, says the layer is marked deleted:
// it reads as absent.
var ErrGone = errors.New("layer marked deleted")

// ReadLayer reads one layer: absent, unopenable, or its tree.
func ReadLayer(t *testing.T, d Driver, id string) Layer {
	if !d.Exists(id) {
		return Layer{}
	}
	root, err := d.Get(id)
	if errors.Is(err, ErrGone) || (err != nil && !d.Exists(id)) {
		// Marked deleted, or deleted since Exists by a deletion worker
		// Init started for a layer marked so before the cut.
		return Layer{}
	}
	if err != nil {
		return Layer{Present: true, Err: err.Error()}
	}
	defer func() {
		if err := d.Put(id); err != nil {
			t.Errorf("Put %s: %v", id, err)
		}
	}()
	return Layer{Present: true, Tree: testutil.TreeOf(t, root)}
}

// driverCheck judges a replayed point of op: Init on the home, every
// layer (Judge), for an Init a layer made and removed on the base (of
// BaseSize), then Cleanup leaves nothing active or mounted and the pool's
// metadata is sound and names the DevInfos' thin ids (CheckPool).
func driverCheck(open Opener, home string, opts []string, op DriverOp) func(*testing.T, string, Record, bool) ([]string, []string) {
	rel := home
	return func(t *testing.T, mnt string, rec Record, returned bool) ([]string, []string) {
		home := filepath.Join(mnt, filepath.Base(rel))
		d, err := open(home, opts)
		if err != nil {
			return nil, []string{fmt.Sprintf("Init: %v", err)}
		}
		var v Verdict
		prefix := d.PoolName()
		for _, id := range LayerIDs {
			v.Judge(id, ReadLayer(t, d, id), rec, returned)
		}
		if op.Init {
			v.Bad = append(v.Bad, probe(t, d, op.BaseSize)...)
		}
		if err := d.Cleanup(); err != nil {
			v.Bad = append(v.Bad, fmt.Sprintf("Cleanup: %v", err))
		}
		v.Bad = append(v.Bad, Leftovers(t, home, prefix)...)
		v.Bad = append(v.Bad, CheckPool(t, home)...)
		return v.Lost, v.Bad
	}
}

// probe makes a layer on the base and removes it: Init left a home that
// works, with a base of baseSize bytes (if set) finished growing.
func probe(t *testing.T, d Driver, baseSize uint64) []string {
	if err := d.Create("probe", ""); err != nil {
		return []string{fmt.Sprintf("Create after Init: %v", err)}
	}
	var bad []string
	if baseSize > 0 {
		root, err := d.Get("probe")
		if err != nil {
			return []string{fmt.Sprintf("Get after Init: %v", err)}
		}
		if size := testutil.FSSize(t, root); size < baseSize*9/10 {
			bad = append(bad, fmt.Sprintf("a new layer's filesystem is %d bytes, the base should be %d", size, baseSize))
		}
		must(t, d.Put("probe"))
	}
	if err := d.Remove("probe"); err != nil {
		bad = append(bad, fmt.Sprintf("Remove after Init: %v", err))
	}
	return bad
}
