package cli_test

import (
	"archive/tar"
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/thinlayer/thinlayer/cli"
	"github.com/thinlayer/thinlayer/deviceset"
	"github.com/thinlayer/thinlayer/snapshotter"
)

// A snapshotter layer is the container's "/": a container may make
// `rootfs` there whatever it likes. These are the layers containerd and
// ctr leave after containers ran `ln -s <target> /rootfs` and stopped: an
// image snapshot, and per target a container snapshot on it (active,
// unmounted, daemon down). It returns the image's layer id and the
// container layers' ids by target.
func snapshotLayersWithRootfsLinks(t *testing.T, h cli.Home, targets []string) (string, map[string]string) {
	t.Helper()
	ctx := context.Background()
	s, err := snapshotter.OpenHome(h.Dir, h.StorageOpts)
	must(t, err)
	defer func() { must(t, s.Close()) }()
	prefix, err := deviceset.DevicePrefix(h.Dir)
	must(t, err)
	// The layer id: the device's name (the mount names /dev/dm-N) less the
	// home's prefix.
	layerOf := func(ms []snapshotter.Mount) string {
		real, err := filepath.EvalSymlinks(ms[0].Source)
		must(t, err)
		name, err := os.ReadFile("/sys/block/" + filepath.Base(real) + "/dm/name")
		must(t, err)
		return strings.TrimPrefix(strings.TrimSpace(string(name)), prefix+"-")
	}
	ms, err := s.Prepare(ctx, "img-extract", "")
	must(t, err)
	img := layerOf(ms)
	withMounted(t, ms, func(root string) {
		must(t, os.WriteFile(filepath.Join(root, "image-file"), []byte("from the image\n"), 0o644))
	})
	must(t, s.Commit(ctx, "img", "img-extract"))
	ctrs := map[string]string{}
	for i, target := range targets {
		ms, err := s.Prepare(ctx, "ctr"+string(rune('0'+i)), "img")
		must(t, err)
		ctrs[target] = layerOf(ms)
		withMounted(t, ms, func(root string) {
			must(t, os.WriteFile(filepath.Join(root, "container-file"), []byte("the container's own\n"), 0o644))
			must(t, os.Symlink(target, filepath.Join(root, "rootfs")))
		})
	}
	return img, ctrs
}

// withMounted mounts a snapshot's mount spec as a container runtime does,
// runs f on it and unmounts.
func withMounted(t *testing.T, ms []snapshotter.Mount, f func(root string)) {
	t.Helper()
	dir := t.TempDir()
	var flags uintptr
	if slices.Contains(ms[0].Options, "ro") {
		flags = unix.MS_RDONLY
	}
	must(t, unix.Mount(ms[0].Source, dir, ms[0].Type, flags, ""))
	defer func() { must(t, unix.Unmount(dir, 0)) }()
	f(dir)
}

// hostSecrets is what must never appear in an export: the content of the
// host's /etc/shadow (or /etc/passwd when it has none) and of a file in a
// host directory.
type hostSecrets struct {
	dir     string
	content [][]byte
}

func newHostSecrets(t *testing.T) hostSecrets {
	dir := t.TempDir()
	secret := []byte("host-only secret 7f3a9c\n")
	must(t, os.WriteFile(filepath.Join(dir, "hostfile"), secret, 0o600))
	hs := hostSecrets{dir: dir, content: [][]byte{secret}}
	for _, f := range []string{"/etc/shadow", "/etc/passwd"} {
		if b, err := os.ReadFile(f); err == nil && len(b) > 16 {
			hs.content = append(hs.content, b)
			break
		}
	}
	return hs
}

// check fails t if the host directory changed or tar holds a secret.
func (hs hostSecrets) check(t *testing.T, what string, tarBytes []byte) {
	t.Helper()
	names, err := os.ReadDir(hs.dir)
	must(t, err)
	if len(names) != 1 || names[0].Name() != "hostfile" {
		t.Errorf("%s: the host directory now holds %v", what, names)
	}
	for _, c := range hs.content {
		if len(tarBytes) > 0 && bytes.Contains(tarBytes, c) {
			t.Errorf("%s: the tar carries host file content %.20q...", what, c)
		}
	}
}

// tarHeaders reads a tar's headers by name.
func tarHeaders(t *testing.T, b []byte) map[string]*tar.Header {
	t.Helper()
	out := map[string]*tar.Header{}
	tr := tar.NewReader(bytes.NewReader(b))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return out
		}
		must(t, err)
		out[strings.TrimSuffix(h.Name, "/")] = h
	}
}

// layerDevicesActive names the home's active devices other than the pool.
func layerDevicesActive(t *testing.T, home string) []string {
	var out []string
	for _, d := range activeDevices(t, home) {
		if !strings.HasSuffix(d, "-pool") {
			out = append(out, d)
		}
	}
	return out
}

// mount, export and umount of a snapshotter layer whose root holds a
// `rootfs` symlink show and carry the container's files — the link as a
// link — and never what it points at on the host; umount takes the
// layer's device down again.
func TestSnapshotLayerRootfsLinkIsNotFollowed(t *testing.T) {
	h := newHome(t)
	hs := newHostSecrets(t)
	targets := []string{hs.dir, "/etc", "/"}
	img, ctrs := snapshotLayersWithRootfsLinks(t, h, targets)
	for i, target := range targets {
		t.Run([]string{"hostdir", "etc", "root"}[i], func(t *testing.T) {
			id := ctrs[target]
			for _, rw := range []bool{false, true} {
				checkMountShowsContainer(t, h, hs, id, target, rw)
			}
			checkExportCarriesLink(t, h, hs, id, img, target, "")
			// Again while the layer is mounted: export reads it there.
			dir := mountDir(t)
			if rc, _, errOut := run(t, nil, "mount", id, dir, "--home", h.Dir); rc != 0 {
				t.Fatalf("mount: rc %d: %s", rc, errOut)
			}
			checkExportCarriesLink(t, h, hs, id, img, target, " (layer mounted)")
			if rc, _, errOut := run(t, nil, "umount", dir, "--home", h.Dir); rc != 0 {
				t.Fatalf("umount: rc %d: %s", rc, errOut)
			}
		})
	}
	checkImportRefusesSnapshotLayers(t, h, hs, ctrs[hs.dir])
	// The pool stays: mount --rw brought it up read-write, as an engine
	// does, and umount leaves such a pool alone.
	if left := layerDevicesActive(t, h.Dir); len(left) > 0 {
		t.Errorf("left active: %v", left)
	}
}

func checkMountShowsContainer(t *testing.T, h cli.Home, hs hostSecrets, id, target string, rw bool) {
	t.Helper()
	dir := mountDir(t)
	args := []string{"mount", id, dir, "--home", h.Dir, "--json"}
	if rw {
		args = append(args, "--rw")
	}
	rc, out, errOut := run(t, nil, args...)
	if rc != 0 {
		t.Fatalf("%v: rc %d: %s", args, rc, errOut)
	}
	var mr cli.MountResult
	decode(t, out, &mr)
	if mr.Subdir != "" {
		t.Errorf("mount of a snapshotter layer shows %q, want its whole filesystem", mr.Subdir)
	}
	if link, err := os.Readlink(filepath.Join(dir, "rootfs")); err != nil || link != target {
		t.Errorf("rw=%v: rootfs on the mount: %q, %v; want the container's link to %s", rw, link, err, target)
	}
	for name, want := range map[string]string{"container-file": "the container's own\n", "image-file": "from the image\n"} {
		if b, err := os.ReadFile(filepath.Join(dir, name)); err != nil || string(b) != want {
			t.Errorf("rw=%v: %s on the mount: %q, %v", rw, name, b, err)
		}
	}
	if rw {
		if err := os.WriteFile(filepath.Join(dir, "written"), []byte("by hand\n"), 0o644); err != nil {
			t.Errorf("write to a read-write mount: %v", err)
		}
		for _, host := range []string{hs.dir, "/"} {
			if _, err := os.Lstat(filepath.Join(host, "written")); err == nil {
				os.Remove(filepath.Join(host, "written"))
				t.Errorf("mount --rw wrote into the host's %s", host)
			}
		}
	}
	hs.check(t, "mount", nil)
	rc, out, errOut = run(t, nil, "umount", dir, "--home", h.Dir, "--json")
	if rc != 0 {
		t.Fatalf("umount after mount rw=%v: rc %d: %s", rw, rc, errOut)
	}
	var ur cli.UnmountResult
	decode(t, out, &ur)
	if m, _ := isMounted(dir); m || !ur.Deactivated {
		t.Errorf("umount: still mounted %v, %+v", m, ur)
	}
	if left := layerDevicesActive(t, h.Dir); len(left) > 0 {
		t.Errorf("umount left layer devices active: %v", left)
	}
}

func checkExportCarriesLink(t *testing.T, h cli.Home, hs hostSecrets, id, img, target, when string) {
	t.Helper()
	for _, parent := range []string{img, ""} {
		args := []string{"export", id, "--home", h.Dir}
		if parent != "" {
			args = append(args, "--parent", parent)
		}
		var out bytes.Buffer
		var errb strings.Builder
		rc := cli.Main(args, cli.Env{Stdin: strings.NewReader(""), Stdout: &out, Stderr: &errb})
		if rc != 0 {
			t.Errorf("%v%s: rc %d: %s", args, when, rc, errb.String())
			continue
		}
		hdrs := tarHeaders(t, out.Bytes())
		if l := hdrs["rootfs"]; l == nil || l.Typeflag != tar.TypeSymlink || l.Linkname != target {
			t.Errorf("%v%s: rootfs entry %+v, want the symlink to %s", args, when, l, target)
		}
		want := []string{"container-file", "rootfs", "written"}
		if parent == "" {
			want = append(want, "image-file", "lost+found")
		}
		var got []string
		for name := range hdrs {
			got = append(got, name)
		}
		if !equalSet(got, want...) {
			t.Errorf("%v%s: entries %v, want %v", args, when, got, want)
		}
		hs.check(t, strings.Join(args[:2], " ")+when, out.Bytes())
	}
}

// A graphdriver layer keeps its files in rootfs/ beside the id file; one
// whose rootfs/ was replaced by a symlink is refused by mount and export,
// which neither follow it nor leave the device active.
func TestGraphLayerPlantedRootfsLinkIsRefused(t *testing.T) {
	h := newHome(t)
	hs := newHostSecrets(t)
	d := openDriver(t, h)
	root, err := d.Get("mod", "")
	must(t, err)
	must(t, os.RemoveAll(root))
	must(t, os.Symlink(hs.dir, root))
	must(t, d.Put("mod"))
	closeDriver(t, d)

	dir := mountDir(t)
	for _, args := range [][]string{
		{"mount", "mod", dir},
		{"mount", "mod", dir, "--rw"},
		{"export", "mod"},
		{"export", "mod", "--parent", "img"},
		{"export", "ctr", "--parent", "mod"},
	} {
		args = append(args, "--home", h.Dir)
		var out bytes.Buffer
		var errb strings.Builder
		rc := cli.Main(args, cli.Env{Stdin: strings.NewReader(""), Stdout: &out, Stderr: &errb})
		if rc != cli.ExitProblems || !strings.Contains(errb.String(), "rootfs") || !strings.Contains(errb.String(), "symlink") {
			t.Errorf("%v: rc %d, %q: want refused, saying rootfs is a symlink", args, rc, errb.String())
		}
		if m, _ := isMounted(dir); m {
			t.Errorf("%v: left %s mounted", args, dir)
			_ = unix.Unmount(dir, unix.MNT_DETACH)
		}
		hs.check(t, args[0], out.Bytes())
		if left := layerDevicesActive(t, h.Dir); len(left) > 0 {
			t.Errorf("%v: left layer devices active: %v", args, left)
		}
	}
}

// import makes graph driver layers, files under rootfs/: not on a
// snapshotter layer (whose root is a container's "/", its `rootfs` maybe
// a link to the host), nor with an id of the snapshotter's, whose
// reconcile would delete it as its own leftover.
func checkImportRefusesSnapshotLayers(t *testing.T, h cli.Home, hs hostSecrets, snapLayer string) {
	t.Helper()
	var tarBuf bytes.Buffer
	tw := tar.NewWriter(&tarBuf)
	must(t, tw.WriteHeader(&tar.Header{Name: "planted", Mode: 0o644, Size: 3, Typeflag: tar.TypeReg}))
	_, err := tw.Write([]byte("xyz"))
	must(t, err)
	must(t, tw.Close())
	for _, args := range [][]string{
		{"import", "onsnap", "--parent", snapLayer},
		{"import", snapshotter.IDPrefix + "0123456789abcdef01234567"},
	} {
		args = append(args, "--home", h.Dir)
		rc, _, errOut := run(t, bytes.NewReader(tarBuf.Bytes()), args...)
		if rc != cli.ExitUsage || !strings.Contains(errOut, "snapshot") {
			t.Errorf("%v: rc %d, %q: want refused", args, rc, errOut)
		}
		hs.check(t, args[0], nil)
	}
	l, err := h.List()
	must(t, err)
	for _, x := range l.Layers {
		if x.ID == "onsnap" || strings.HasPrefix(x.ID, snapshotter.IDPrefix+"0123") {
			t.Errorf("a refused import left layer %s", x.ID)
		}
	}
}
