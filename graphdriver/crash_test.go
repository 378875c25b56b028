package graphdriver_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/moby/sys/mountinfo"

	"github.com/thinlayer/thinlayer/deviceset"
	dm "github.com/thinlayer/thinlayer/devmapper"
	gd "github.com/thinlayer/thinlayer/graphdriver"
	"github.com/thinlayer/thinlayer/loopback"
)

// The crash walk: a child process opens the home and runs one operation
// with a fault point armed to SIGKILL it mid-way; then Init on the same home
// must settle the open transaction so that the pool's thin devices (read
// from its own metadata with thin_dump) are exactly those the DevInfo files
// name, every layer from before is intact, and no mount is left behind.

const (
	envCrashHome = "THINLAYER_CRASH_HOME"
	envCrashOp   = "THINLAYER_CRASH_OP"
)

var crashOps = map[string][]string{
	"create": {"create.intent", "create.message", "tx.metadata", "tx.commit"},
	// The home's next_device_id is stale (as after a crash): the first id
	// tried belongs to another layer, and the create dies holding it.
	"create-stale-id": {"create.message"},
	"remove":          {"deactivate", "delete.intent", "delete.discard", "delete.message", "tx.metadata", "tx.commit"},
}

// crashChild is the child's side, run from TestMain instead of the tests:
// open the home and run the operation until the armed point kills us.
func crashChild(home string) {
	d, err := gd.Init(home, crashOptions(), gd.IdentityMapping{})
	if err == nil {
		switch os.Getenv(envCrashOp) {
		case "create", "create-stale-id":
			err = d.Create("victim", "keep", nil)
		case "remove":
			err = d.Remove("victim")
		}
	}
	fmt.Fprintf(os.Stderr, "crash child: fault point never reached (err: %v)\n", err)
	os.Exit(3)
}

func crashOptions() []string {
	return testOptions("ext4", "dm.use_deferred_removal=false", "dm.use_deferred_deletion=false")
}

func TestCrashDuringCreateAndRemove(t *testing.T) {
	walked := 0
	for _, op := range []string{"create", "create-stale-id", "remove"} {
		for _, point := range crashOps[op] {
			t.Run(op+"@"+point, func(t *testing.T) {
				crashAt(t, op, point)
				walked++
			})
		}
	}
	t.Logf("crash walk: %d operation x fault point combinations, each killed and recovered", walked)
}

func crashAt(t *testing.T, op, point string) {
	home := t.TempDir()
	d := newDriver(t, home, crashOptions())
	mustCreate(t, d, "keep", "")
	writeFile(t, get(t, d, "keep")+"/data", "precious", 0o644, 0, 0)
	put(t, d, "keep")
	if op == "remove" {
		mustCreate(t, d, "victim", "keep")
	}
	keepTree := treeOf(t, get(t, d, "keep"))
	put(t, d, "keep")
	must(t, d.Cleanup())
	if op == "create-stale-id" {
		staleNextID(t, home)
	}

	runChildUntilKilled(t, home, op, point)

	d2 := newDriver(t, home, crashOptions())
	checkPoolMatchesMetadata(t, d2, home)
	if diff := diffTrees(keepTree, treeOf(t, get(t, d2, "keep"))); len(diff) > 0 {
		t.Fatalf("layer keep changed by the crash: %v", diff)
	}
	put(t, d2, "keep")
	if d2.Exists("victim") { // whole, if there at all
		if b, err := os.ReadFile(get(t, d2, "victim") + "/data"); err != nil || string(b) != "precious" {
			t.Fatalf("victim survived the crash but reads %q, %v", b, err)
		}
		put(t, d2, "victim")
	}
	checkNoMountsUnder(t, home)
	must(t, d2.Cleanup())
	thinCheck(t, filepath.Join(home, "devicemapper", "metadata"))
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

func runChildUntilKilled(t *testing.T, home, op, point string) {
	exe, err := os.Executable()
	must(t, err)
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), envCrashHome+"="+home, envCrashOp+"="+op, deviceset.EnvFault+"="+point+"=kill")
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("child was not killed at %s (%v):\n%s", point, err, out)
	}
}

// checkPoolMatchesMetadata compares the thin ids in the pool's metadata
// (a metadata snapshot read by thin_dump) with those our DevInfos name.
func checkPoolMatchesMetadata(t *testing.T, d gd.Driver, home string) {
	t.Helper()
	ours := devInfoIDs(t, home)
	pool := poolThinIDs(t, d)
	if !reflect.DeepEqual(ours, pool) {
		t.Fatalf("pool holds thin ids %v, DevInfo files name %v", pool, ours)
	}
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

var devIDRe = regexp.MustCompile(`<device dev_id="(\d+)"`)

func poolThinIDs(t *testing.T, d gd.Driver) []int {
	pool, metaDev := statusRow(d, "Pool Name"), statusRow(d, "Metadata file")
	c, err := dm.Open()
	must(t, err)
	defer c.Close()
	must(t, c.ReserveMetadataSnap(pool))
	defer func() { must(t, c.ReleaseMetadataSnap(pool)) }()
	out, err := exec.Command("thin_dump", "-m", metaDev).Output()
	if err != nil {
		t.Fatalf("thin_dump -m %s: %v", metaDev, err)
	}
	var ids []int
	for _, m := range devIDRe.FindAllSubmatch(out, -1) {
		id, _ := strconv.Atoi(string(m[1]))
		ids = append(ids, id)
	}
	sort.Ints(ids)
	return ids
}

func checkNoMountsUnder(t *testing.T, home string) {
	mounts, err := mountinfo.GetMounts(mountinfo.PrefixFilter(home))
	must(t, err)
	if len(mounts) != 0 {
		t.Fatalf("mounts left under the home: %v", mounts[0].Mountpoint)
	}
}

// thinCheck runs thin_check on a pool's metadata file once the pool is
// down. thin_check opens with O_DIRECT, which tmpfs refuses: go through a
// read-only loop device.
func thinCheck(t *testing.T, file string) {
	t.Helper()
	loop, err := loopback.Attach(file, loopback.Options{ReadOnly: true})
	must(t, err)
	defer loop.Detach()
	if out, err := exec.Command("thin_check", loop.Path).CombinedOutput(); err != nil {
		t.Fatalf("thin_check %s: %v\n%s", file, err, out)
	}
}
