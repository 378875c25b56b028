package enginetest

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/thinlayer/thinlayer/cli"
	"github.com/thinlayer/thinlayer/dockerstore"
)

// leaveImages: "leave/a" (tags 1 and latest) of five layers — busybox; a
// hard link, a setuid file, an xattr, a symlink; a whiteout; an empty
// tar; the deleted file recreated — and "leave/b:1" on the same base.
func leaveImages(t *testing.T, busybox []byte) []loadImage {
	hdr := func(name string, typ byte, mode int64, body, link string) rawEntry {
		h := tar.Header{Name: name, Typeflag: typ, Mode: mode, Linkname: link, Size: int64(len(body)), ModTime: epoch, Format: tar.FormatPAX}
		return rawEntry{h, body}
	}
	xattr := hdr("etc/xattr", tar.TypeReg, 0o644, "has an xattr\n", "")
	xattr.h.PAXRecords = map[string]string{"SCHILY.xattr.user.thinlayer": "leave"}
	base := layerTar(t, imageLayers(busybox)[0])
	l2 := rawTar(t, []rawEntry{hdr("bin/", tar.TypeDir, 0o755, "", ""), hdr("bin/suid", tar.TypeReg, 0o4755, "suid\n", ""),
		hdr("etc/", tar.TypeDir, 0o755, "", ""), hdr("etc/l2", tar.TypeReg, 0o644, "layer two\n", ""),
		hdr("etc/l2-link", tar.TypeLink, 0o644, "", "etc/l2"), hdr("etc/link", tar.TypeSymlink, 0o777, "", "l2"), xattr,
		hdr("usr/", tar.TypeDir, 0o755, "", ""), hdr("usr/share/", tar.TypeDir, 0o755, "", ""),
		hdr("usr/share/big", tar.TypeReg, 0o644, strings.Repeat("leave devicemapper ", 1<<14), "")})
	l3 := rawTar(t, []rawEntry{hdr("etc/", tar.TypeDir, 0o755, "", ""), hdr("etc/.wh.gone", tar.TypeReg, 0, "", ""),
		hdr("etc/base", tar.TypeReg, 0o644, "base v3\n", "")})
	// Layer 5 in GNU form, which no plain tar of its files is written
	// in: without its tar-split record its digest must change.
	l5 := rawTar(t, []rawEntry{gnu(hdr("etc/", tar.TypeDir, 0o755, "", "")), gnu(hdr("etc/gone", tar.TypeReg, 0o600, "back\n", ""))})
	lb := rawTar(t, []rawEntry{hdr("etc/", tar.TypeDir, 0o755, "", ""), hdr("etc/b", tar.TypeReg, 0o644, "image b\n", "")})
	return []loadImage{
		{tags: []string{"leave/a:1", "leave/a:latest"}, layers: [][]byte{base, l2, l3, rawTar(t, nil), l5}},
		{tags: []string{"leave/b:1"}, layers: [][]byte{base, lb}},
	}
}

// TestLeaveDevicemapper: Docker's own devicemapper driver writes a home
// (two images sharing a base, a container that wrote and deleted and
// stopped, its commit, a container never started); with dockerd stopped,
// thinlayer images and containers list what docker did, and thinlayer
// save --all makes an archive a fresh dockerd on vfs loads with every
// image id and layer digest the original's and the files all there; so
// does its --oci layout. containerd imports the docker-save, OCI and
// commit archives (unpacking them) with the original config and layer
// digests. A lost tar-split record is then saved as a plain tar,
// reported with the new ids; a file changed on a layer's device stops a
// save naming the layer and file; a corrupt config stops one naming it.
func TestLeaveDevicemapper(t *testing.T) {
	docker, busybox := requireEngine(t)
	e := newBareEngine(t, docker)
	e.home = filepath.Join(e.dir, "data", "devicemapper")
	archive := filepath.Join(e.dir, "images.tar")
	writeLoadArchive(t, archive, leaveImages(t, busybox))

	start := time.Now()
	e.startDockerdOn(t, "devicemapper", builtinOpts...)
	e.mustDockerWithin(t, slow, "load", "-i", archive)
	e.mustDockerWithin(t, slow, "run", "--network", "none", "--name", "writer", "leave/a:1", "sh", "-c",
		"echo written > /etc/written && rm /etc/base && rm -r /usr/share")
	e.mustDockerWithin(t, slow, "commit", "writer", "leave/committed:1")
	e.mustDocker(t, "create", "--network", "none", "--name", "never", "leave/b:1", "true")
	wantImages := e.mustDocker(t, "images", "--no-trunc", "--format", "{{.Repository}}:{{.Tag}} {{.ID}}")
	wantPs := e.mustDocker(t, "ps", "-a", "--no-trunc", "--format", "{{.ID}} {{.Names}} {{.Image}}")
	wantInspect := e.mustDocker(t, "image", "inspect", "-f", "{{.Id}} {{.RootFS.Layers}}", "leave/a:1", "leave/b:1", "leave/committed:1")
	e.dockerd.stop(t)
	t.Logf("Docker's devicemapper driver: %v", time.Since(start))

	start = time.Now()
	var imgs cli.ImageList
	thinlayerJSON(t, &imgs, append([]string{"images"}, e.homeArgs()...)...)
	var got []string
	for _, r := range imgs.Images {
		got = append(got, r.Repo+":"+r.Tag+" "+string(r.ID))
	}
	sameLines(t, "thinlayer images", strings.Join(got, "\n"), wantImages)
	var ps cli.ContainerList
	thinlayerJSON(t, &ps, append([]string{"containers"}, e.homeArgs()...)...)
	got = nil
	for _, c := range ps.Containers {
		got = append(got, c.ID+" "+c.Name+" "+c.ImageName)
		if c.Name == "writer" && (c.State.Status() != "exited (0)" || c.Changed == nil || *c.Changed == 0) {
			t.Errorf("container writer: %s, wrote %v (warning %q)", c.State.Status(), c.Changed, ps.Warning)
		}
	}
	sameLines(t, "thinlayer containers", strings.Join(got, "\n"), wantPs)

	saved := filepath.Join(e.dir, "saved.tar")
	out := thinlayer(t, 0, append([]string{"save", "--all", "-o", saved}, e.homeArgs()...)...)
	committed := filepath.Join(e.dir, "commit.tar")
	out += thinlayer(t, 0, append([]string{"commit", "writer", "--tag", "leave/thinlayer-commit:1", "-o", committed}, e.homeArgs()...)...)
	savedOCI := filepath.Join(e.dir, "saved-oci.tar")
	out += thinlayer(t, 0, append([]string{"save", "--all", "--oci", "-o", savedOCI}, e.homeArgs()...)...)
	t.Logf("thinlayer images, containers, save --all, commit: %v; %s", time.Since(start), out)

	start = time.Now()
	v := e.sibling(t, "vfs")
	v.startDockerdOn(t, "vfs")
	t.Logf("vfs dockerd up: %v", time.Since(start))
	v.mustDockerWithin(t, slow, "load", "-i", saved)
	t.Logf("vfs dockerd load: %v", time.Since(start))
	sameLines(t, "docker images on vfs", v.mustDocker(t, "images", "--no-trunc", "--format", "{{.Repository}}:{{.Tag}} {{.ID}}"), wantImages)
	v.mustDockerWithin(t, slow, "load", "-i", committed)
	if got := v.mustDocker(t, "image", "inspect", "-f", "{{.Id}} {{.RootFS.Layers}}", "leave/a:1", "leave/b:1", "leave/committed:1"); got != wantInspect {
		t.Fatalf("on vfs, image ids and layers:\n%s\nwant (devicemapper):\n%s", got, wantInspect)
	}
	want := "written\nnobase\nnoshare\nback\nl2\n4755 1\n644 2\nhas an xattr\n"
	script := "cat /etc/written; test -e /etc/base || echo nobase; test -e /usr/share || echo noshare; cat /etc/gone; " +
		"busybox readlink /etc/link; busybox stat -c '%a %h' /bin/suid /etc/l2; cat /etc/xattr"
	for _, img := range []string{"leave/committed:1", "leave/thinlayer-commit:1"} {
		if got := v.mustDocker(t, "run", "--rm", "--network", "none", img, "sh", "-c", script); got != want {
			t.Fatalf("on vfs, %s (the container's commit):\n%s\nwant:\n%s", img, got, want)
		}
	}
	layersOf := func(img string) string { return v.mustDocker(t, "image", "inspect", "-f", "{{.RootFS.Layers}}", img) }
	if a, c := layersOf("leave/a:1"), layersOf("leave/thinlayer-commit:1"); !strings.HasPrefix(c, strings.TrimSuffix(a, "]\n")+" ") {
		t.Fatalf("thinlayer commit's layers %s do not start with the image's %s", c, a)
	}
	v.checkOCILoad(t, savedOCI)
	wantCommit := v.mustDocker(t, "image", "inspect", "-f", "{{.Id}} {{.RootFS.Layers}}", "leave/thinlayer-commit:1")
	v.dockerd.stop(t)
	t.Logf("vfs dockerd load and run: %v", time.Since(start))

	start = time.Now()
	want3 := []string{"leave/a:1", "leave/b:1", "leave/committed:1"}
	e.checkCtrImport(t, "dsave", saved, want3, wantInspect)
	e.checkCtrImport(t, "oci", savedOCI, want3, wantInspect)
	e.checkCtrImport(t, "commit", committed, []string{"leave/thinlayer-commit:1"}, wantCommit)
	t.Logf("containerd import of the three archives: %v", time.Since(start))

	e.checkDamagedSaves(t)
}

// checkDamagedSaves: layer 5's tar-split record gone (before the change
// below, which every image with layer 2 would meet first), then a file of
// layer 2 changed on its device.
func (e *engine) checkDamagedSaves(t *testing.T) {
	s, err := dockerstore.Open(filepath.Join(e.dir, "data"), "devicemapper")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	refs, _ := s.Refs()
	id, _, err := dockerstore.Resolve("leave/a:1", refs, nil)
	if err != nil {
		t.Fatal(err)
	}
	img, err := s.Image(id)
	if err != nil {
		t.Fatal(err)
	}
	layers, err := s.Layers(img)
	if err != nil {
		t.Fatal(err)
	}
	ts := filepath.Join(e.dir, "data/image/devicemapper/layerdb/sha256", layers[4].ChainID.Hex(), "tar-split.json.gz")
	if err := os.Remove(ts); err != nil {
		t.Fatal(err)
	}
	out := thinlayer(t, 0, append([]string{"save", "leave/b:1", "leave/committed:1", "-o", filepath.Join(e.dir, "plain.tar")}, e.homeArgs()...)...)
	committedID, _, err := dockerstore.Resolve("leave/committed:1", refs, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "layer "+layers[4].ChainID.Short()+" had no tar-split record") || !strings.Contains(out, "image "+committedID.Short()+" is now") {
		t.Fatalf("save without a tar-split record: %s", out)
	}
	mnt := t.TempDir()
	thinlayer(t, 0, append([]string{"mount", "--rw", layers[1].CacheID, mnt}, e.homeArgs()...)...)
	if err := os.WriteFile(filepath.Join(mnt, "etc/l2"), []byte("LAYER TWO\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	thinlayer(t, 0, append([]string{"umount", mnt}, e.homeArgs()...)...)
	bad := filepath.Join(e.dir, "bad.tar")
	out = thinlayer(t, 1, append([]string{"save", "leave/a:1", "-o", bad}, e.homeArgs()...)...)
	if !strings.Contains(out, `"etc/l2"`) || !strings.Contains(out, layers[1].ChainID.Short()) {
		t.Fatalf("save of a changed layer: %s", out)
	}
	if _, err := os.Stat(bad); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a failed save left its archive: %v", err)
	}
	e.checkCorruptConfig(t, s, refs)
}

// sibling is a second dockerd's engine in dir/name, on e's containerd.
func (e *engine) sibling(t *testing.T, name string) *engine {
	dir := filepath.Join(e.dir, name)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(e.dir, "containerd"), filepath.Join(dir, "containerd")); err != nil {
		t.Fatal(err)
	}
	return &engine{dir: dir, sock: filepath.Join(dir, "docker.sock"), docker: e.docker, containerd: e.containerd,
		env: []string{"DOCKER_HOST=unix://" + filepath.Join(dir, "docker.sock"), "DOCKER_CONFIG=" + filepath.Join(dir, "cli")}}
}

// slow bounds a docker command that writes layers: minutes in the test
// kernel on a machine other tests load.
const slow = 10 * time.Minute

// mustDockerWithin is mustDocker with its own time limit, for a load on a
// busy machine.
func (e *engine) mustDockerWithin(t testing.TB, limit time.Duration, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	cmd := exec.CommandContext(ctx, e.docker, args...)
	cmd.Env = append(os.Environ(), e.env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("docker %s: %v\n%s\n%s", strings.Join(args, " "), err, out, e.dockerd.tail())
	}
	return string(out)
}

// thinlayer runs the command in this process and wants exit status code;
// it returns stdout and stderr.
func thinlayer(t *testing.T, code int, args ...string) string {
	t.Helper()
	var out bytes.Buffer
	if got := cli.Main(args, cli.Env{Stdout: &out, Stderr: &out}); got != code {
		t.Fatalf("thinlayer %s: exit %d, want %d\n%s", strings.Join(args, " "), got, code, out.String())
	}
	return out.String()
}

func thinlayerJSON(t *testing.T, v any, args ...string) {
	t.Helper()
	var out, errb bytes.Buffer
	if code := cli.Main(append(args, "--json"), cli.Env{Stdout: &out, Stderr: &errb}); code != 0 {
		t.Fatalf("thinlayer %s: exit %d\n%s", strings.Join(args, " "), code, errb.String())
	}
	if err := json.Unmarshal(out.Bytes(), v); err != nil {
		t.Fatalf("thinlayer %s --json: %v\n%s", strings.Join(args, " "), err, out.String())
	}
}

// homeArgs are the flags that name Docker's devicemapper home to thinlayer.
func (e *engine) homeArgs() []string {
	args := []string{"--home", e.home}
	for _, o := range builtinOpts {
		args = append(args, "--storage-opt", o)
	}
	return args
}

// sameLines compares two listings as sets of lines.
func sameLines(t *testing.T, what, got, want string) {
	t.Helper()
	g, w := strings.Split(strings.TrimSpace(got), "\n"), strings.Split(strings.TrimSpace(want), "\n")
	slices.Sort(g)
	slices.Sort(w)
	if !slices.Equal(g, w) {
		t.Fatalf("%s:\n%s\nwant (docker on devicemapper):\n%s", what, got, want)
	}
}

// rawEntry is one tar member as written.
type rawEntry struct {
	h    tar.Header
	body string
}

func rawTar(t *testing.T, entries []rawEntry) []byte {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := e.h
		if err := tw.WriteHeader(&h); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(e.body)); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func gnu(e rawEntry) rawEntry {
	e.h.Format = tar.FormatGNU
	return e
}

// loadImage is an image of a `docker load` archive.
type loadImage struct {
	tags   []string
	layers [][]byte
}

// writeLoadArchive writes images as one `docker load` archive; each
// image's history has an empty-layer step first.
func writeLoadArchive(t *testing.T, file string, images []loadImage) {
	var members []entry
	var manifest []map[string]any
	seen := map[string]bool{}
	for _, img := range images {
		var diffIDs, paths []string
		hist := []map[string]any{{"created": epoch.Format(time.RFC3339), "created_by": "ENV leave=1", "empty_layer": true}}
		for i, l := range img.layers {
			d := digest(l)
			diffIDs, paths = append(diffIDs, d), append(paths, path.Join(d[7:], "layer.tar"))
			hist = append(hist, map[string]any{"created": epoch.Format(time.RFC3339), "created_by": "layer " + string(rune('1'+i))})
			if !seen[d] {
				seen[d] = true
				members = append(members, entry{name: d[7:] + "/"}, entry{name: path.Join(d[7:], "layer.tar"), body: string(l)})
			}
		}
		config, _ := json.Marshal(map[string]any{"architecture": "amd64", "os": "linux", "created": epoch.Format(time.RFC3339),
			"config": map[string]any{"Cmd": []string{"/bin/sh"}, "Env": []string{"PATH=/bin"}},
			"rootfs": map[string]any{"type": "layers", "diff_ids": diffIDs}, "history": hist})
		name := digest(config)[7:] + ".json"
		members = append(members, entry{name: name, body: string(config)})
		manifest = append(manifest, map[string]any{"Config": name, "RepoTags": img.tags, "Layers": paths})
	}
	m, _ := json.Marshal(manifest)
	members = append(members, entry{name: "manifest.json", body: string(m)})
	if err := os.WriteFile(file, layerTar(t, members), 0o644); err != nil {
		t.Fatal(err)
	}
}
