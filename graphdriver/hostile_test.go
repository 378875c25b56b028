package graphdriver_test

import (
	"bufio"
	"crypto/sha256"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"

	"github.com/thinlayer/thinlayer/deviceset"
	gd "github.com/thinlayer/thinlayer/graphdriver"
	"github.com/thinlayer/thinlayer/graphdriver/internal/gdtest"
)

// Hostile and broken input: each gets a clear error naming what is wrong;
// nothing outside the home is touched, nothing is lost. The tallies are
// printed for docs/reliability.md.

// outside is a directory beside the home, with a file, that no input may
// change.
type outside struct {
	dir    string
	digest map[string][32]byte
}

func newOutside(t *testing.T) *outside {
	o := &outside{dir: t.TempDir()}
	must(t, os.WriteFile(filepath.Join(o.dir, "sentinel"), []byte("untouched"), 0o644))
	must(t, os.Mkdir(filepath.Join(o.dir, "x"), 0o755))
	o.digest = digestTree(t, o.dir)
	return o
}

func (o *outside) check(t *testing.T) {
	t.Helper()
	if got := digestTree(t, o.dir); !reflect.DeepEqual(got, o.digest) {
		t.Errorf("something outside the home changed: %v -> %v", o.digest, got)
	}
	for _, p := range []string{"/pwned-thinlayer", "/etc/pwned-thinlayer"} {
		if _, err := os.Lstat(p); err == nil {
			t.Errorf("%s was written", p)
		}
	}
}

func digestTree(t *testing.T, dir string) map[string][32]byte {
	out := map[string][32]byte{}
	must(t, filepath.WalkDir(dir, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		b, _ := os.ReadFile(p)
		out[p] = sha256.Sum256(append(b, fmt.Sprint(fi.Mode(), fi.Size(), fi.ModTime().UnixNano())...))
		return nil
	}))
	return out
}

func TestHostileIDs(t *testing.T) {
	home := t.TempDir()
	o := newOutside(t)
	d := newDriver(t, home, walkOptions())
	mustCreate(t, d, "keep", "")
	writeFile(t, get(t, d, "keep")+"/data", "precious", 0o644, 0, 0)
	put(t, d, "keep")
	tooLongForDM := strings.Repeat("d", 120) // a file name, but no device-mapper name
	cases := []struct {
		id, parent string
		want       error
	}{
		{"", "", gd.ErrInvalidID}, {".", "", gd.ErrInvalidID}, {"..", "", gd.ErrInvalidID},
		{"a/b", "", gd.ErrInvalidID}, {"../escape", "", gd.ErrInvalidID}, {"/abs", "", gd.ErrInvalidID},
		{"a\x00b", "", gd.ErrInvalidID}, {strings.Repeat("x", 256), "", gd.ErrInvalidID},
		{tooLongForDM, "", gd.ErrInvalidID}, {"base", "", gd.ErrInvalidID}, {".hidden", "", gd.ErrInvalidID},
		{"x.migrated", "", gd.ErrInvalidID}, {"transaction-metadata", "", gd.ErrInvalidID},
		{"deviceset-metadata", "", gd.ErrInvalidID},
		{"child", "nosuchparent", deviceset.ErrNotFound}, {"child", "../../etc", gd.ErrInvalidID},
		{"child", "a\x00", gd.ErrInvalidID}, {"self", "self", gd.ErrInvalidID}, {"keep", "", deviceset.ErrExists},
		// The snapshotter's namespace: it deletes such layers it has no
		// record of, and its layers keep their files at the root, where a
		// container may have planted rootfs.
		{"ctrd-0123abcd", "", gd.ErrInvalidID}, {"child", "ctrd-0123abcd", gd.ErrInvalidID},
	}
	for _, c := range cases {
		err := d.Create(c.id, c.parent, nil)
		if !errors.Is(err, c.want) {
			t.Errorf("Create(%q, %q): %v, want %v", c.id, c.parent, err, c.want)
		}
		if err != nil && !strings.Contains(err.Error(), fmt.Sprintf("%q", c.id)) &&
			!strings.Contains(err.Error(), fmt.Sprintf("%q", c.parent)) && c.id != "" && len(c.id) < 256 {
			t.Errorf("Create(%q, %q): error does not name the id: %v", c.id, c.parent, err)
		}
		if errors.Is(c.want, gd.ErrInvalidID) && c.parent == "" && c.id != tooLongForDM {
			checkOtherCallsRefuse(t, d, c.id)
		}
	}
	if b, err := os.ReadFile(get(t, d, "keep") + "/data"); err != nil || string(b) != "precious" {
		t.Fatalf("keep after hostile ids: %q %v", b, err)
	}
	put(t, d, "keep")
	if ours, pool := gdtest.DevInfoIDs(t, home), gdtest.PoolThinIDs(t, d); !reflect.DeepEqual(ours, pool) || len(ours) != 2 {
		t.Fatalf("pool %v, DevInfos %v: a refused create left something", pool, ours)
	}
	o.check(t)
	t.Logf("hostile ids: %d tried, each refused with its sentinel", len(cases))
}

func checkOtherCallsRefuse(t *testing.T, d gd.Driver, id string) {
	t.Helper()
	if _, err := d.Get(id, ""); !errors.Is(err, gd.ErrInvalidID) {
		t.Errorf("Get(%q): %v", id, err)
	}
	if err := d.Put(id); !errors.Is(err, gd.ErrInvalidID) {
		t.Errorf("Put(%q): %v", id, err)
	}
	if err := d.Remove(id); !errors.Is(err, gd.ErrInvalidID) {
		t.Errorf("Remove(%q): %v", id, err)
	}
	if _, err := d.GetMetadata(id); !errors.Is(err, gd.ErrInvalidID) {
		t.Errorf("GetMetadata(%q): %v", id, err)
	}
	if d.Exists(id) {
		t.Errorf("Exists(%q)", id)
	}
}

// Bad options: Init names the option, and touches nothing — the home is
// not even created.
func TestHostileOptions(t *testing.T) {
	parent := t.TempDir()
	cases := []struct {
		opts []string
		name string // the option the error must name
	}{
		{[]string{"dm.nosuch=1"}, "dm.nosuch"}, {[]string{"noequals"}, "noequals"},
		{[]string{"dm.basesize=lots"}, "dm.basesize"}, {[]string{"dm.basesize=-1"}, "dm.basesize"},
		{[]string{"dm.basesize=10E"}, "dm.basesize"}, {[]string{"dm.basesize=99999999999999999999999"}, "dm.basesize"},
		{[]string{"dm.basesize=1"}, "dm.basesize"}, {[]string{"dm.basesize=5000p"}, "dm.basesize"}, {[]string{"dm.loopdatasize=0"}, "dm.loopdatasize"},
		{[]string{"dm.blocksize=1000"}, "dm.blocksize"}, {[]string{"dm.min_free_space=-5%"}, "dm.min_free_space"},
		{[]string{"dm.min_free_space=150%"}, "dm.min_free_space"}, {[]string{"dm.min_free_space=abc%"}, "dm.min_free_space"},
		{[]string{"dm.min_free_space=10"}, "dm.min_free_space"}, {[]string{"dm.thinp_percent=1000"}, "dm.thinp_percent"},
		{[]string{"dm.fs=ntfs"}, "dm.fs"}, {[]string{"dm.xfs_nospace_max_retries=-1"}, "dm.xfs_nospace_max_retries"},
		{[]string{"dm.blkdiscard=maybe"}, "dm.blkdiscard"},
		{[]string{"dm.thinpooldev=pool", "dm.datadev=/dev/a", "dm.metadatadev=/dev/b"}, "dm.thinpooldev"},
		{[]string{"dm.datadev=/dev/loop7", "dm.metadatadev=/dev/loop7"}, "dm.metadatadev"},
		{[]string{"dm.datadev=relative", "dm.metadatadev=/dev/b"}, "dm.datadev"},
		{[]string{"dm.directlvm_device=/dev/x", "dm.thinpooldev=pool"}, "dm.thinpooldev"},
		{[]string{"dm.thinpooldev=/dev/mapper/a/b"}, "dm.thinpooldev"},
		{[]string{"dm.use_deferred_deletion=true", "dm.use_deferred_removal=false"}, "dm.use_deferred_removal"},
	}
	for i, c := range cases {
		home := filepath.Join(parent, fmt.Sprint("home", i))
		_, err := gd.Init(home, c.opts, gd.IdentityMapping{})
		if err == nil || !strings.Contains(err.Error(), c.name) {
			t.Errorf("Init with %v: %v, want an error naming %s", c.opts, err, c.name)
		}
		if _, err := os.Lstat(home); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("Init with %v created the home", c.opts)
		}
	}
	t.Logf("hostile options: %d sets tried, each refused naming the option", len(cases))
}

// Two names of one block device for data and metadata: refused at pool
// creation, whatever the paths say.
func TestDataAndMetadataSameDevice(t *testing.T) {
	dev := attachSparse(t, 256<<20)
	link := filepath.Join(t.TempDir(), "alias")
	must(t, os.Symlink(dev, link))
	_, err := gd.Init(t.TempDir(), walkOptions("dm.datadev="+dev, "dm.metadatadev="+link), gd.IdentityMapping{})
	if err == nil || !strings.Contains(err.Error(), "same block device") {
		t.Fatalf("Init with one device under data and metadata: %v", err)
	}
}

// Two processes on one home: the second gets ErrHomeLocked, never a second
// writer — either way round, and the lock goes with a killed holder.
func TestHomeLockAcrossProcesses(t *testing.T) {
	home := t.TempDir()
	d := newDriver(t, home, walkOptions())
	mustCreate(t, d, "a", "")
	if code := lockProbe(t, home); code != lockedExit {
		t.Fatalf("a second process opening a home in use: exit %d, want %d (ErrHomeLocked)", code, lockedExit)
	}
	must(t, d.Cleanup())

	exe, err := os.Executable()
	must(t, err)
	holder := exec.Command(exe)
	holder.Env = append(os.Environ(), envCrashHome+"="+home, envCrashOp+"=lock-hold")
	out, err := holder.StdoutPipe()
	must(t, err)
	must(t, holder.Start())
	defer func() { _ = holder.Process.Kill(); _ = holder.Wait() }()
	if line, _ := bufio.NewReader(out).ReadString('\n'); strings.TrimSpace(line) != "held" {
		t.Fatalf("holder: %q", line)
	}
	if _, err := gd.Init(home, walkOptions(), gd.IdentityMapping{}); !errors.Is(err, deviceset.ErrHomeLocked) {
		t.Fatalf("Init while another process holds the home: %v", err)
	}
	must(t, holder.Process.Signal(syscall.SIGKILL))
	_ = holder.Wait()
	d = newDriver(t, home, walkOptions())
	if !d.Exists("a") {
		t.Fatal("layer lost")
	}
}

const lockedExit = 10

// lockChild is the child side of the lock tests (see crashChild).
func lockChild(home, op string) bool {
	switch op {
	case "lock-probe":
		_, err := gd.Init(home, walkOptions(), gd.IdentityMapping{})
		if errors.Is(err, deviceset.ErrHomeLocked) {
			os.Exit(lockedExit)
		}
		fmt.Fprintf(os.Stderr, "lock probe: %v\n", err)
		os.Exit(11)
	case "lock-hold":
		if _, err := gd.Init(home, walkOptions(), gd.IdentityMapping{}); err != nil {
			fmt.Fprintf(os.Stderr, "lock hold: %v\n", err)
			os.Exit(12)
		}
		fmt.Println("held")
		select {}
	}
	return false
}

func lockProbe(t *testing.T, home string) int {
	exe, err := os.Executable()
	must(t, err)
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), envCrashHome+"="+home, envCrashOp+"=lock-probe")
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		t.Fatalf("lock probe: %v\n%s", err, out)
	}
	return ee.ExitCode()
}
