package powercut

import (
	"archive/tar"
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/thinlayer/thinlayer/deviceset"
	gd "github.com/thinlayer/thinlayer/graphdriver"
	"github.com/thinlayer/thinlayer/graphdriver/internal/gdtest"
	"github.com/thinlayer/thinlayer/testutil"
)

// The power-cut walk. The operations run once, in sequence, on one home
// whose filesystem is recorded by dm-log-writes, each between a start and
// an end mark. Then the filesystem is rebuilt at every flush or FUA entry
// between an operation's marks (and at its end mark: the moment it
// returned) and, at each such point, the home is opened and checked
// (check_test.go). THINLAYER_POWERCUT=full walks every point; otherwise
// each operation is cut at a bounded sample of its points (make test).

const envFull = "THINLAYER_POWERCUT"

// sampled bounds the points per operation outside a full walk.
const sampled = 5

// live is the recording run's driver.
type live struct {
	home string
	opts []string
	d    gd.Driver
}

// powerOp is one operation of the walk.
type powerOp struct {
	name string
	init bool // the operation is Init (the driver is new afterwards)
	opts []string
	// baseSize: the base's filesystem size the op's Init asks for.
	baseSize uint64
	pre      func(t *testing.T, l *live) // before the start mark, made durable
	run      func(l *live) error
	post     func(t *testing.T, l *live) // after the end mark
}

// layerIDs are the layers the walk makes; each point checks all of them.
var layerIDs = []string{"keep", "victim"}

var layerTar = func() []byte {
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

func onDriver(f func(d gd.Driver) error) func(*live) error {
	return func(l *live) error { return f(l.d) }
}

var powerOps = []powerOp{
	{name: "init", init: true, opts: gdtest.CrashOptions(), run: initDriver},
	{name: "create", run: onDriver(func(d gd.Driver) error { return d.Create("keep", "", nil) })},
	{name: "applydiff", run: onDriver(func(d gd.Driver) error {
		_, err := d.ApplyDiff("keep", "", bytes.NewReader(layerTar))
		return err
	})},
	{name: "createrw-on-mounted", pre: get("keep"), post: put("keep"),
		run: onDriver(func(d gd.Driver) error { return d.CreateReadWrite("victim", "keep", nil) })},
	{name: "put", pre: writeVictim,
		run: onDriver(func(d gd.Driver) error { return d.Put("victim") })},
	{name: "remove", run: onDriver(func(d gd.Driver) error { return d.Remove("victim") })},
	// Init again with a bigger base (and, from here on, deferred removal
	// and deletion, Moby's defaults).
	{name: "init-basesize", init: true, opts: gdtest.WalkOptions("dm.basesize=192MB"), baseSize: 192 << 20, run: initDriver},
	// victim open (mounted) when removed: marked deleted, and deleted by
	// the worker once Put closed it.
	{name: "remove-deferred", pre: createAndGet("victim", "keep"), run: removeDeferred},
	// A Create killed with its pool transaction open (before the start
	// mark), then Init settles it.
	{name: "init-settles", init: true, pre: killedCreate("victim", "keep", "create.message"), run: initDriver},
}

func initDriver(l *live) (err error) {
	l.d, err = gd.Init(l.home, l.opts, gd.IdentityMapping{})
	return err
}

func createAndGet(id, parent string) func(*testing.T, *live) {
	return func(t *testing.T, l *live) {
		gdtest.MustCreate(t, l.d, id, parent)
		gdtest.Get(t, l.d, id)
	}
}

// removeDeferred removes victim while it is mounted, puts it, and waits
// for the deletion worker to finish it.
func removeDeferred(l *live) error {
	if err := l.d.Remove("victim"); err != nil {
		return err
	}
	if !l.d.Exists("victim") {
		return fmt.Errorf("victim deleted at once: the walk wanted a deferred deletion")
	}
	if err := l.d.Put("victim"); err != nil && !errors.Is(err, deviceset.ErrDeleted) {
		return err
	}
	deadline := time.Now().Add(time.Minute)
	for l.d.Exists("victim") { // a test's wait for the worker's backoff
		if time.Now().After(deadline) {
			return fmt.Errorf("deferred deletion of victim not done after a minute")
		}
		time.Sleep(100 * time.Millisecond)
	}
	return nil
}

func get(id string) func(*testing.T, *live) {
	return func(t *testing.T, l *live) { gdtest.Get(t, l.d, id) }
}

func put(id string) func(*testing.T, *live) {
	return func(t *testing.T, l *live) { gdtest.Put(t, l.d, id) }
}

// writeVictim mounts victim and writes a file into it, fsync'd: a
// container's write, durable before the Put that follows.
func writeVictim(t *testing.T, l *live) {
	root := gdtest.Get(t, l.d, "victim")
	f, err := os.OpenFile(filepath.Join(root, "rw-data"), os.O_CREATE|os.O_WRONLY|os.O_EXCL, 0o644)
	gdtest.Must(t, err)
	_, err = f.WriteString("written by the container")
	gdtest.Must(t, err)
	gdtest.Must(t, f.Sync())
	gdtest.Must(t, f.Close())
	syncDir(t, root)
}

// record is what one operation did: the layers before and after it.
type record struct {
	op            powerOp
	opts          []string
	snap          bool // a snapshotter's operation (its home is snap)
	before, after layers
}

func TestPowerCutWalk(t *testing.T) {
	testutil.RequireKernel(t)
	r := newRig(t)
	recs := append(recordOps(t, r), recordSnapOps(t, r, filepath.Join(r.mnt, "snap"))...)
	r.stop(t)
	l := r.parse(t)
	p := newReplayer(t, l)
	w := &walk{}
	for _, rec := range recs {
		start, err := l.Mark(rec.op.name + "-start")
		gdtest.Must(t, err)
		end, err := l.Mark(rec.op.name + "-end")
		gdtest.Must(t, err)
		points := append(l.Flushes(start, end), end)
		w.flushes += len(points) - 1
		if os.Getenv(envFull) != "full" {
			points = sample(points, sampled)
		}
		for _, i := range points {
			t.Run(fmt.Sprintf("%s/entry%d", rec.op.name, i), func(t *testing.T) {
				w.check(t, p.at(t, i), rec, i == end)
			})
		}
	}
	t.Logf("log: %d entries", len(l.Entries))
	line := fmt.Sprintf("power-cut walk: %d operations, %d replay points: %d lost, %d inconsistent "+
		"(%d flush/FUA points inside the operations; thin_check clean %d/%d)",
		len(recs), w.points, w.lost, w.inconsistent, w.flushes, w.thinClean, w.points)
	fmt.Println(line)
	t.Log(line)
}

// recordOps runs the operations on a home on the rig, with marks.
func recordOps(t *testing.T, r *rig) []record {
	t.Helper()
	l := &live{home: filepath.Join(r.mnt, "home")}
	var recs []record
	var prev layers
	for _, op := range powerOps {
		if op.opts != nil {
			l.opts = op.opts
		}
		if op.init && l.d != nil {
			gdtest.Must(t, l.d.Cleanup())
			l.d = nil
		}
		if op.pre != nil {
			op.pre(t, l)
		}
		before := prev
		if l.d != nil {
			before = snapshot(t, l.d)
		}
		r.mark(t, op.name+"-start")
		err := op.run(l)
		r.mark(t, op.name+"-end")
		if err != nil {
			t.Fatalf("%s: %v", op.name, err)
		}
		if op.post != nil {
			op.post(t, l)
		}
		prev = snapshot(t, l.d)
		recs = append(recs, record{op: op, opts: l.opts, before: before, after: prev})
	}
	gdtest.Must(t, l.d.Cleanup())
	return recs
}

// sample keeps at most n of points, spread out, the last always.
func sample(points []int, n int) []int {
	if len(points) <= n {
		return points
	}
	out := make([]int, 0, n)
	for k := 0; k < n; k++ {
		out = append(out, points[k*(len(points)-1)/(n-1)])
	}
	return out
}
