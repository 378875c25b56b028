package cli_test

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moby/sys/mountinfo"

	"github.com/thinlayer/thinlayer/cli"
	"github.com/thinlayer/thinlayer/deviceset"
	dm "github.com/thinlayer/thinlayer/devmapper"
	gd "github.com/thinlayer/thinlayer/graphdriver"
	"github.com/thinlayer/thinlayer/testutil"
)

func TestMain(m *testing.M) {
	if os.Getenv(envChild) != "" {
		os.Exit(childMain(os.Getenv(envChild), os.Args[1:]))
	}
	testutil.Main(m)
}

// testOpts keep a home small: sparse files on the guest's tmpfs.
var testOpts = []string{"dm.loopdatasize=1GB", "dm.loopmetadatasize=16MB", "dm.basesize=256MB", "dm.fs=ext4"}

// The home every command test starts from: an image layer, a layer on it
// that changes, adds and deletes files, and a container layer on that.
var (
	imgFiles = map[string]string{"etc/hostname": "image\n", "etc/os-release": "ID=test\n", "usr/bin/tool": "tool v1\n", "doc/README": "read me\n"}
	modFiles = map[string]string{"usr/bin/tool": "tool v2\n", "etc/added": "added\n"}
	modGone  = "doc/README"
)

// newHome gives the test its own copy of a home with layers img, mod (on
// img) and ctr (on mod, holding 4 MiB of data of its own), closed. The
// home is made once and copied (sparse): a home's device names come from
// its directory, so a copy is a home of its own.
func newHome(t *testing.T) cli.Home {
	t.Helper()
	testutil.RequireKernel(t)
	templateOnce.Do(func() { templateHome, templateErr = makeTemplate() })
	must(t, templateErr)
	h := cli.Home{Dir: filepath.Join(t.TempDir(), "home"), StorageOpts: testOpts}
	if out, err := exec.Command("cp", "-a", "--sparse=always", templateHome, h.Dir).CombinedOutput(); err != nil {
		t.Fatalf("copy the template home: %v: %s", err, out)
	}
	return h
}

var (
	templateOnce sync.Once
	templateHome string
	templateErr  error
)

func makeTemplate() (string, error) {
	dir, err := os.MkdirTemp("", "cli-template-")
	if err != nil {
		return "", err
	}
	home := filepath.Join(dir, "home")
	d, err := gd.Init(home, testOpts, gd.IdentityMapping{})
	if err != nil {
		return "", err
	}
	err = errors.Join(
		fillLayer(d, "img", "", imgFiles, ""),
		fillLayer(d, "mod", "img", modFiles, modGone),
		fillLayer(d, "ctr", "mod", map[string]string{"data.bin": string(noise(4 << 20))}, ""))
	return home, errors.Join(err, d.Cleanup())
}

func openDriver(t *testing.T, h cli.Home) gd.Driver {
	t.Helper()
	d, err := gd.Init(h.Dir, h.StorageOpts, gd.IdentityMapping{})
	if err != nil {
		t.Fatalf("Init %s: %v", h.Dir, err)
	}
	t.Cleanup(func() { _ = d.Cleanup() })
	return d
}

func closeDriver(t *testing.T, d gd.Driver) {
	t.Helper()
	if err := d.Cleanup(); err != nil {
		t.Fatalf("Cleanup: %v", err)
	}
}

func fillLayer(d gd.Driver, id, parent string, files map[string]string, gone string) (err error) {
	if err := d.Create(id, parent, nil); err != nil {
		return err
	}
	root, err := d.Get(id, "")
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, d.Put(id)) }()
	for p, c := range files {
		if err := os.MkdirAll(filepath.Dir(filepath.Join(root, p)), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(root, p), []byte(c), 0o644); err != nil {
			return err
		}
		// A file rewritten at its parent's size within the same second
		// (small ext4 inodes keep whole seconds) would look unchanged to
		// any diff by metadata, Moby's too: give each layer its own
		// mtime, as unpacked image layers have.
		mtime := time.Unix(1700000000, 0).Add(time.Duration(len(parent)+1) * time.Hour)
		if err := os.Chtimes(filepath.Join(root, p), mtime, mtime); err != nil {
			return err
		}
	}
	if gone != "" {
		return os.Remove(filepath.Join(root, gone))
	}
	return nil
}

// readFiles is every regular file under root: path -> content.
func readFiles(t *testing.T, root string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(root, func(p string, e fs.DirEntry, err error) error {
		if err != nil || !e.Type().IsRegular() {
			return err
		}
		b, err := os.ReadFile(p)
		rel, _ := filepath.Rel(root, p)
		out[rel] = string(b)
		return err
	})
	must(t, err)
	delete(out, "lost+found")
	return out
}

// layerFiles reads a layer's files through the library's driver.
func layerFiles(t *testing.T, h cli.Home, id string) map[string]string {
	t.Helper()
	d := openDriver(t, h)
	defer closeDriver(t, d)
	root, err := d.Get(id, "")
	must(t, err)
	defer func() { must(t, d.Put(id)) }()
	return readFiles(t, root)
}

func expectedFiles(layers ...map[string]string) map[string]string {
	out := map[string]string{}
	for _, l := range layers {
		for p, c := range l {
			out[p] = c
		}
	}
	return out
}

// noise is incompressible data that no other layer has.
func noise(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7919 ^ i>>8*31 ^ i>>16*131)
	}
	return b
}

// homeDigest hashes every file under the home's metadata dir and the
// pool's metadata file: what a read-only command must leave as it found.
func homeDigest(t *testing.T, home string) map[string][32]byte {
	t.Helper()
	out := map[string][32]byte{}
	files, _ := filepath.Glob(filepath.Join(home, "metadata", "*"))
	files = append(files, filepath.Join(home, "devicemapper", "metadata"))
	for _, f := range files {
		b, err := os.ReadFile(f)
		must(t, err)
		out[f] = sha256.Sum256(b)
	}
	return out
}

// activeDevices names the device-mapper devices of home that are active.
func activeDevices(t *testing.T, home string) []string {
	t.Helper()
	prefix, err := deviceset.DevicePrefix(home)
	must(t, err)
	ctl, err := dm.Open()
	must(t, err)
	defer ctl.Close()
	devs, err := ctl.List()
	must(t, err)
	var names []string
	for _, d := range devs {
		if strings.HasPrefix(d.Name, prefix+"-") {
			names = append(names, d.Name)
		}
	}
	return names
}

// demoLeftovers names what a demo leaves: its layers' devices, and loop
// devices over its home's files (which go with the pool, autoclear; the
// kernel may take a moment).
func demoLeftovers(t *testing.T) []string {
	t.Helper()
	ctl, err := dm.Open()
	must(t, err)
	defer ctl.Close()
	devs, err := ctl.List()
	must(t, err)
	var left []string
	for _, d := range devs {
		if strings.HasSuffix(d.Name, "-demo-image") || strings.HasSuffix(d.Name, "-demo-container") {
			left = append(left, d.Name)
		}
	}
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		loops := loopsOver("/thinlayer-demo-")
		if len(loops) == 0 || time.Now().After(deadline) {
			return append(left, loops...)
		}
	}
}

// loopsOver lists loop devices whose backing file's path contains s.
func loopsOver(s string) []string {
	files, _ := filepath.Glob("/sys/block/loop*/loop/backing_file")
	var loops []string
	for _, f := range files {
		if b, err := os.ReadFile(f); err == nil && strings.Contains(string(b), s) {
			loops = append(loops, "loop over "+strings.TrimSpace(string(b)))
		}
	}
	return loops
}

// injectOrphan creates thin device id in the home's pool with no DevInfo
// naming it, as a crash between the pool message and the DevInfo write
// (with the intent lost) would leave, and writes to it so it maps blocks.
func injectOrphan(t *testing.T, h cli.Home, id dm.ThinID) {
	t.Helper()
	d := openDriver(t, h)
	prefix, err := deviceset.DevicePrefix(h.Dir)
	must(t, err)
	ctl, err := dm.Open()
	must(t, err)
	defer ctl.Close()
	pool := prefix + "-pool"
	must(t, ctl.CreateThin(pool, id))
	info, err := ctl.CreateAndLoad("tltest-orphan", "", []dm.TableLine{dm.Line(0, 2048, dm.Thin{PoolDev: dm.DevicePath(pool), DeviceID: id})}, 0)
	must(t, err)
	must(t, ctl.EnsureNode(info))
	must(t, os.WriteFile(dm.DevicePath("tltest-orphan"), noise(512<<10), 0))
	must(t, ctl.Remove("tltest-orphan", 0))
	closeDriver(t, d)
}

// run runs the command line in-process and returns status and output.
func run(t *testing.T, stdin io.Reader, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	if stdin == nil {
		stdin = strings.NewReader("")
	}
	rc := cli.Main(args, cli.Env{Stdin: stdin, Stdout: &out, Stderr: &errb})
	return rc, out.String(), errb.String()
}

func decode(t *testing.T, s string, v any) {
	t.Helper()
	if err := json.Unmarshal([]byte(s), v); err != nil {
		t.Fatalf("decode %q: %v", s, err)
	}
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func isMounted(dir string) (bool, error) { return mountinfo.Mounted(dir) }

// tarEntries lists a tar file's entries that are not directories.
func tarEntries(t *testing.T, path string) []string {
	t.Helper()
	f, err := os.Open(path)
	must(t, err)
	defer f.Close()
	var names []string
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return names
		}
		must(t, err)
		if h.Typeflag != tar.TypeDir {
			names = append(names, h.Name)
		}
	}
}

func equalSet(got []string, want ...string) bool {
	return slices.Equal(slices.Sorted(slices.Values(got)), slices.Sorted(slices.Values(want)))
}
