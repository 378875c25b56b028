package graphdriver_test

import (
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"

	"github.com/thinlayer/thinlayer/deviceset"
	dm "github.com/thinlayer/thinlayer/devmapper"
	gd "github.com/thinlayer/thinlayer/graphdriver"
	"github.com/thinlayer/thinlayer/loopback"
)

// walk holds the template homes of the crash walk and its tallies.
type walk struct {
	dir       string
	templates map[string]string
	keepTree  map[string]map[string]string // by template

	steps, runs, kills, matched      int
	leaked, lost, staleMounts, grows int
	thinChecks                       int
}

func newWalk(t *testing.T) *walk {
	return &walk{dir: t.TempDir(), templates: map[string]string{}, keepTree: map[string]map[string]string{}}
}

// fresh returns a new home copied from template (made on first use): a
// copy is much cheaper than a new home with its mkfs.
func (w *walk) fresh(t *testing.T, template string) string {
	home := t.TempDir()
	if template == "empty" {
		return home
	}
	src, ok := w.templates[template]
	if !ok {
		src = w.makeTemplate(t, template)
		w.templates[template] = src
	}
	must(t, copyTree(src, home))
	return home
}

// prepare puts a home into its template's state: victim made afresh from
// keep (or gone), next_device_id stale for "stale".
func (w *walk) prepare(t *testing.T, home string, op crashOp, run int) {
	t.Helper()
	d, err := gd.Init(home, op.options(run), gd.IdentityMapping{})
	must(t, err)
	defer d.Cleanup()
	w.reset(t, d, op)
	must(t, d.Cleanup())
	if op.template == "stale" {
		staleNextID(t, home)
	}
}

func (w *walk) reset(t *testing.T, d gd.Driver, op crashOp) {
	t.Helper()
	if d.Exists("victim") {
		must(t, d.Remove("victim"))
	}
	if op.template == "victim" {
		mustCreate(t, d, "victim", "keep")
	}
}

func (w *walk) makeTemplate(t *testing.T, name string) string {
	home := filepath.Join(w.dir, name)
	must(t, os.Mkdir(home, 0o700))
	d, err := gd.Init(home, crashOptions(), gd.IdentityMapping{})
	must(t, err)
	defer d.Cleanup()
	mustCreate(t, d, "keep", "")
	root := get(t, d, "keep")
	writeFile(t, root+"/data", "precious", 0o644, 0, 0)
	writeFile(t, root+"/etc/config", "a=1\n", 0o600, 0, 0)
	must(t, os.Symlink("data", root+"/link"))
	w.keepTree[name] = treeOf(t, root)
	put(t, d, "keep")
	if name == "victim" {
		mustCreate(t, d, "victim", "keep")
	}
	must(t, d.Cleanup())
	if name == "stale" {
		staleNextID(t, home)
	}
	return home
}

// recoverAndCheck opens the home again after a killed or failed run and
// counts what the walk must never see. Then it puts the home back into
// the template's state for the next run, and checks the pool offline:
// thin_dump's thin ids against the DevInfos, and after a kill thin_check.
func (w *walk) recoverAndCheck(t *testing.T, home string, op crashOp, run int, kill bool) {
	t.Helper()
	w.runs++
	d, err := gd.Init(home, op.options(run), gd.IdentityMapping{})
	if err != nil {
		w.lost++
		t.Fatalf("Init after %s: %v", op.name, err)
	}
	defer d.Cleanup()
	if op.template != "empty" {
		w.checkLayers(t, d, op)
	}
	w.checkGrown(t, d, op, run)
	prefix := strings.TrimSuffix(statusRow(d, "Pool Name"), "-pool")
	if err := checkMountsUnder(home); err != nil {
		w.staleMounts++
		t.Error(err)
	}
	if op.template != "empty" {
		w.reset(t, d, op)
	}
	if err := d.Cleanup(); err != nil {
		t.Errorf("Cleanup after recovery: %v", err)
	}
	if op.template == "stale" {
		staleNextID(t, home)
	}
	w.checkOffline(t, home, prefix, kill)
}

func (w *walk) checkOffline(t *testing.T, home, prefix string, kill bool) {
	t.Helper()
	if n := activeDevices(t, prefix); n > 0 {
		w.leaked += n
		t.Errorf("%d devices of the home still active after Cleanup", n)
	}
	if m, _ := filepath.Glob(filepath.Join(home, "mnt", ".grow-*")); len(m) > 0 {
		w.grows += len(m)
		t.Errorf("unfinished grow left: %v", m)
	}
	pool, checked := poolOffline(t, filepath.Join(home, "devicemapper", "metadata"), kill)
	if kill {
		w.kills++
		if checked {
			w.thinChecks++
		}
	}
	if ours := devInfoIDs(t, home); !reflect.DeepEqual(ours, pool) {
		w.leaked += len(symmetricDiff(ours, pool))
		t.Errorf("pool holds thin ids %v, DevInfo files name %v", pool, ours)
	} else {
		w.matched++
	}
}

// checkLayers: keep is as it was; victim, if there, is whole (or marked
// deleted, for a remove), and is there unless the op may remove it.
func (w *walk) checkLayers(t *testing.T, d gd.Driver, op crashOp) {
	t.Helper()
	if diff := diffTrees(w.keepTree[op.template], treeOfLayer(t, d, "keep")); len(diff) > 0 {
		w.lost++
		t.Errorf("layer keep changed: %v", diff)
	}
	had := op.template == "victim"
	if !d.Exists("victim") {
		if had && !op.removes {
			w.lost++
			t.Error("victim lost")
		}
		return
	}
	root, err := d.Get("victim", "")
	// A remove's victim may be marked deleted, or already deleted by the
	// deferred-deletion worker the reopen resumed, between Exists and Get.
	if (errors.Is(err, deviceset.ErrDeleted) || errors.Is(err, deviceset.ErrNotFound)) && op.removes {
		return
	}
	if err != nil {
		w.lost++
		t.Errorf("victim exists but cannot be mounted: %v", err)
		return
	}
	if b, err := os.ReadFile(root + "/data"); err != nil || string(b) != "precious" {
		w.lost++
		t.Errorf("victim reads %q, %v", b, err)
	}
	put(t, d, "victim")
}

func treeOfLayer(t *testing.T, d gd.Driver, id string) map[string]string {
	root, err := d.Get(id, "")
	if err != nil {
		t.Errorf("Get %s: %v", id, err)
		return nil
	}
	defer put(t, d, id)
	return treeOf(t, root)
}

// checkGrown: a grow the op asked for is complete, however it stopped.
func (w *walk) checkGrown(t *testing.T, d gd.Driver, op crashOp, run int) {
	t.Helper()
	want := op.grownTo(run)
	if want == 0 {
		return
	}
	id := "victim"
	if op.initOp { // basesize: a new layer of the base shows the base's size
		id = "probe"
		mustCreate(t, d, id, "")
	} else if !d.Exists(id) {
		return
	}
	root := get(t, d, id)
	size := fsSize(t, root)
	put(t, d, id)
	if op.initOp {
		must(t, d.Remove(id))
	}
	if size < want*9/10 {
		w.grows++
		t.Errorf("%s's filesystem is %d bytes, want about %d: its grow was not finished", id, size, want)
	}
}

func checkMountsUnder(home string) error {
	mounts, err := mountinfo.GetMounts(mountinfo.PrefixFilter(home))
	if err == nil && len(mounts) != 0 {
		err = errors.New("mount left under the home: " + mounts[0].Mountpoint)
	}
	return err
}

func checkNoMountsUnder(t *testing.T, home string) {
	t.Helper()
	must(t, checkMountsUnder(home))
}

func activeDevices(t *testing.T, prefix string) int {
	c, err := dm.Open()
	must(t, err)
	defer c.Close()
	devs, err := c.List()
	must(t, err)
	n := 0
	for _, d := range devs {
		if strings.HasPrefix(d.Name, prefix+"-") {
			n++
		}
	}
	return n
}

// poolOffline returns the thin ids thin_dump finds in a pool's metadata
// file once the pool is down, and with check runs thin_check on it first.
// Both open with O_DIRECT, which tmpfs refuses: they go through a
// read-only loop device.
func poolOffline(t *testing.T, file string, check bool) ([]int, bool) {
	t.Helper()
	loop, err := loopback.Attach(file, loopback.Options{ReadOnly: true})
	must(t, err)
	defer loop.Detach()
	ok := true
	if check {
		if out, err := exec.Command("thin_check", loop.Path).CombinedOutput(); err != nil {
			ok = false
			t.Errorf("thin_check %s: %v\n%s", file, err, out)
		}
	}
	out, err := exec.Command("thin_dump", loop.Path).Output()
	if err != nil {
		t.Fatalf("thin_dump %s: %v", file, err)
	}
	return thinIDs(out), ok
}

// thinCheck runs thin_check on a pool's metadata file once the pool is down.
func thinCheck(t *testing.T, file string) {
	t.Helper()
	poolOffline(t, file, true)
}

var devIDRe = regexp.MustCompile(`<device dev_id="(\d+)"`)

func thinIDs(dump []byte) []int {
	var ids []int
	for _, m := range devIDRe.FindAllSubmatch(dump, -1) {
		id, _ := strconv.Atoi(string(m[1]))
		ids = append(ids, id)
	}
	sort.Ints(ids)
	return ids
}

func devInfoIDs(t *testing.T, home string) []int {
	entries, err := os.ReadDir(filepath.Join(home, "metadata"))
	must(t, err)
	var ids []int
	for _, e := range entries {
		n := e.Name()
		if strings.HasPrefix(n, ".") || n == "transaction-metadata" || n == "deviceset-metadata" {
			continue
		}
		var info struct {
			DeviceID int `json:"device_id"`
		}
		b, err := os.ReadFile(filepath.Join(home, "metadata", n))
		must(t, err)
		must(t, json.Unmarshal(b, &info))
		ids = append(ids, info.DeviceID)
	}
	sort.Ints(ids)
	return ids
}

func symmetricDiff(a, b []int) []int {
	count := map[int]int{}
	for _, x := range a {
		count[x]++
	}
	for _, x := range b {
		count[x]--
	}
	var d []int
	for x, n := range count {
		if n != 0 {
			d = append(d, x)
		}
	}
	return d
}

// staleNextID rewinds the home's next_device_id so the next id tried is
// the base device's.
func staleNextID(t *testing.T, home string) {
	p := filepath.Join(home, "metadata", "deviceset-metadata")
	b, err := os.ReadFile(p)
	must(t, err)
	var m map[string]any
	must(t, json.Unmarshal(b, &m))
	m["next_device_id"] = 0
	b, err = json.Marshal(m)
	must(t, err)
	must(t, os.WriteFile(p, b, 0o600))
}

// copyTree copies a home, keeping sparse files sparse.
func copyTree(src, dst string) error {
	return filepath.WalkDir(src, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		target := filepath.Join(dst, rel)
		fi, err := e.Info()
		if err != nil {
			return err
		}
		switch {
		case e.IsDir():
			return os.MkdirAll(target, fi.Mode().Perm())
		case fi.Mode().IsRegular():
			return copySparse(p, target, fi)
		}
		return nil
	})
}

func copySparse(src, dst string, fi fs.FileInfo) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, fi.Mode().Perm())
	if err != nil {
		return err
	}
	defer out.Close()
	if err := out.Truncate(fi.Size()); err != nil {
		return err
	}
	// Few, large syscalls: each one is costly under User-Mode Linux.
	buf := make([]byte, 4<<20)
	fd := int(in.Fd())
	for off := int64(0); off < fi.Size(); {
		start, err := unix.Seek(fd, off, unix.SEEK_DATA)
		if errors.Is(err, unix.ENXIO) {
			break // only a hole is left
		}
		if err != nil {
			return err
		}
		end, err := unix.Seek(fd, start, unix.SEEK_HOLE)
		if err != nil {
			return err
		}
		for off = start; off < end; {
			n, err := in.ReadAt(buf[:min(int64(len(buf)), end-off)], off)
			if n > 0 {
				if _, werr := out.WriteAt(buf[:n], off); werr != nil {
					return werr
				}
			}
			off += int64(n)
			if err != nil && !errors.Is(err, io.EOF) {
				return err
			}
			if n == 0 {
				break
			}
		}
		off = end
	}
	return nil
}
