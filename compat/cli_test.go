//go:build linux && cgo

package compat_test

import (
	"archive/tar"
	"bytes"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/thinlayer/thinlayer/cli"
	"github.com/thinlayer/thinlayer/compat/mobyhome"
	dm "github.com/thinlayer/thinlayer/devmapper"
	"github.com/thinlayer/thinlayer/testutil"
)

// TestCLIOnMobyHome: Moby's own driver writes a home, as Docker 24 leaves
// one behind. The thinlayer command lists its layers with Moby's thin ids,
// mounts them and shows Moby's files, exports tars that hold them, and
// finds the home consistent; after a thin device no layer names is put in
// the pool, check fails and gc removes it; then Moby opens the home again
// and reads every layer as it wrote it.
func TestCLIOnMobyHome(t *testing.T) {
	testutil.RequireKernel(t)
	want, err := mobyhome.Expected(chain)
	if err != nil {
		t.Fatal(err)
	}
	home := filepath.Join(t.TempDir(), "devicemapper")
	moby := openMoby(t, home, nil, false)
	if err := mobyhome.WriteLayers(moby, chain); err != nil {
		t.Fatalf("Moby writes layers: %v", err)
	}
	mobyIDs := map[string]int{}
	for _, l := range chain {
		m, err := moby.GetMetadata(l.ID)
		if err != nil {
			t.Fatal(err)
		}
		mobyIDs[l.ID], _ = strconv.Atoi(m["DeviceId"])
	}
	moby.close(t)

	h := cli.Home{Dir: home, StorageOpts: mobyhome.Options()}
	cliLists(t, h, mobyIDs)
	cliMounts(t, h, want)
	cliExports(t, h, want)
	if r, err := h.Check(); err != nil || !r.OK() {
		t.Fatalf("check of Moby's home: %+v, %v", r, err)
	}
	cliCollectsOrphan(t, h, home)

	moby = openMoby(t, home, nil, false)
	checkLayers(t, moby, want)
	moby.close(t)
}

func cliLists(t *testing.T, h cli.Home, mobyIDs map[string]int) {
	t.Helper()
	l, err := h.List()
	if err != nil || l.Warning != "" {
		t.Fatalf("ls: %v %s", err, l.Warning)
	}
	got := map[string]int{}
	for _, x := range l.Layers {
		if x.Missing || x.Error != "" || x.Mapped == nil || x.Active {
			t.Errorf("ls: layer %s: %+v", x.ID, x)
		}
		if !x.Base {
			got[x.ID] = int(x.DeviceID) // Moby reports it as a decimal string
		}
	}
	if !maps.Equal(got, mobyIDs) {
		t.Fatalf("ls: thin ids %v, Moby's %v", got, mobyIDs)
	}
}

// cliMounts mounts every layer read-only at once, reads it, and unmounts;
// the last umount takes down the pool the read-only mounts brought up.
func cliMounts(t *testing.T, h cli.Home, want map[string]map[string]string) {
	t.Helper()
	dirs := map[string]string{}
	for _, l := range chain {
		dir := t.TempDir()
		t.Cleanup(func() { _ = unix.Unmount(dir, unix.MNT_DETACH) })
		if _, err := h.Mount(l.ID, dir, false); err != nil {
			t.Fatalf("mount %s: %v", l.ID, err)
		}
		dirs[l.ID] = dir
	}
	for id, dir := range dirs {
		if got := dirFiles(t, dir); !maps.Equal(got, want[id]) {
			t.Errorf("mounted %s:\n got %s\nwant %s", id, short(got), short(want[id]))
		}
	}
	var last *cli.UnmountResult
	for _, l := range chain {
		r, err := h.Unmount(dirs[l.ID])
		if err != nil || !r.Deactivated {
			t.Fatalf("umount %s: %+v %v", l.ID, r, err)
		}
		last = r
	}
	if last.PoolRemoved == "" {
		t.Fatalf("the last umount left the read-only pool: %+v", last)
	}
	checkNoLeftovers(t, h.Dir)
}

// cliExports exports every layer whole and checks its files, and the
// delete layer as a diff: whiteouts for what it deleted.
func cliExports(t *testing.T, h cli.Home, want map[string]map[string]string) {
	t.Helper()
	for _, l := range chain {
		var buf bytes.Buffer
		if _, err := h.Export(l.ID, "", &buf); err != nil {
			t.Fatalf("export %s: %v", l.ID, err)
		}
		if got, _ := tarFiles(t, &buf); !maps.Equal(got, want[l.ID]) {
			t.Errorf("export %s:\n got %s\nwant %s", l.ID, short(got), short(want[l.ID]))
		}
	}
	var buf bytes.Buffer
	if _, err := h.Export("img-delete", "img-modify", &buf); err != nil {
		t.Fatalf("export img-delete --parent img-modify: %v", err)
	}
	files, whiteouts := tarFiles(t, &buf)
	if len(files) != 0 || !slices.Equal(whiteouts, []string{"etc/.wh.os-release", "var/lib/.wh.gone"}) {
		t.Fatalf("diff of img-delete: files %v, whiteouts %v", files, whiteouts)
	}
}

// cliCollectsOrphan puts a thin device no layer names in the pool (with
// Moby's driver holding the pool), then check fails and gc removes it.
func cliCollectsOrphan(t *testing.T, h cli.Home, home string) {
	t.Helper()
	moby := openMoby(t, home, nil, false)
	pool, err := mobyhome.PoolName(home)
	if err != nil {
		t.Fatal(err)
	}
	ctl, err := dm.Open()
	if err != nil {
		t.Fatal(err)
	}
	defer ctl.Close()
	const orphan = 1000
	if err := ctl.CreateThin(pool, orphan); err != nil {
		t.Fatalf("inject orphan thin device: %v", err)
	}
	moby.close(t)

	r, err := h.Check()
	if err != nil || r.OK() || !strings.Contains(r.Problems[0].What, "thin device 1000 is in the pool") {
		t.Fatalf("check with an orphan: %+v, %v", r, err)
	}
	g, err := h.GC(false)
	if err != nil || g.Err() != nil || len(g.Orphans) != 1 || g.Orphans[0].ID != orphan {
		t.Fatalf("gc: %+v, %v", g, err)
	}
	if r, err := h.Check(); err != nil || !r.OK() {
		t.Fatalf("check after gc: %+v, %v", r, err)
	}
	checkNoLeftovers(t, home)
}

// dirFiles is every regular file under root, as mobyhome.ReadFiles gives.
func dirFiles(t *testing.T, root string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.Walk(root, func(p string, fi os.FileInfo, err error) error {
		if err != nil || !fi.Mode().IsRegular() {
			return err
		}
		b, err := os.ReadFile(p)
		rel, _ := filepath.Rel(root, p)
		out[filepath.ToSlash(rel)] = string(b)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// tarFiles reads a tar: regular files (path -> content), and whiteouts.
func tarFiles(t *testing.T, r io.Reader) (map[string]string, []string) {
	t.Helper()
	files := map[string]string{}
	var whiteouts []string
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			slices.Sort(whiteouts)
			return files, whiteouts
		}
		if err != nil {
			t.Fatal(err)
		}
		if strings.HasPrefix(filepath.Base(h.Name), ".wh.") {
			whiteouts = append(whiteouts, h.Name)
			continue
		}
		if h.Typeflag == tar.TypeReg {
			b, err := io.ReadAll(tr)
			if err != nil {
				t.Fatal(err)
			}
			files[strings.TrimPrefix(h.Name, "./")] = string(b)
		}
	}
}
