package enginetest

import (
	"archive/tar"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/thinlayer/thinlayer/cli"
)

const image = "thinlayer/test:1"

// ctrScript is what the container runs: it writes, reads every layer's
// files, and checks layer 3's deletion.
const ctrScript = `echo written > /w; cat /etc/base /etc/l2; test ! -e /etc/gone && echo gone-ok; sha256sum /usr/share/big`

// TestDockerOnPlugin drives Docker Engine 20.10 on the thinlayer plugin as a
// user would: load, images, history, inspect, create/start, diff, cp,
// commit, export, save, tag, rmi, prune, system df; then a restart of both
// daemons; then everything removed, leaving a consistent, empty home.
func TestDockerOnPlugin(t *testing.T) {
	docker, busybox := requireEngine(t)
	e := newEngine(t, docker)
	layers := imageLayers(busybox)
	archive := filepath.Join(e.dir, "image.tar")
	diffIDs := writeImage(t, archive, image, layers)
	bigSum := sha256.Sum256([]byte(layers[1][4].body))
	wantRun := fmt.Sprintf("base v3\nlayer two\ngone-ok\n%s  /usr/share/big\n", hex.EncodeToString(bigSum[:]))

	if out := e.mustDocker(t, "load", "-i", archive); !strings.Contains(out, "Loaded image: "+image) {
		t.Fatalf("docker load: %q", out)
	}
	if out := e.mustDocker(t, "images", "--format", "{{.Repository}}:{{.Tag}}"); !strings.Contains(out, image) {
		t.Fatalf("docker images lacks %s: %q", image, out)
	}
	if out := e.mustDocker(t, "history", "--format", "{{.CreatedBy}}", image); out != "layer 3\nlayer 2\nlayer 1\n" {
		t.Fatalf("docker history: %q", out)
	}
	e.checkInspect(t, image, diffIDs)

	e.mustDocker(t, "create", "--network", "none", "--name", "c1", image, "sh", "-c", ctrScript)
	if out := e.mustDocker(t, "start", "-a", "c1"); out != wantRun {
		t.Fatalf("container output %q, want %q", out, wantRun)
	}
	if code := e.mustDocker(t, "inspect", "-f", "{{.State.ExitCode}}", "c1"); code != "0\n" {
		t.Fatalf("exit code %q", code)
	}
	if out := e.mustDocker(t, "diff", "c1"); !strings.Contains(out, "A /w\n") {
		t.Fatalf("docker diff lacks A /w: %q", out)
	}
	e.checkCp(t)
	e.mustDocker(t, "commit", "c1", "thinlayer/test:2")
	if out := e.mustDocker(t, "run", "--rm", "--network", "none", "thinlayer/test:2", "cat", "/w", "/etc/copied-in"); out != "written\ncopied in\n" {
		t.Fatalf("the committed image shows %q", out)
	}
	e.checkSave(t, image, diffIDs)
	e.mustDocker(t, "tag", image, "thinlayer/test:tagged")
	e.mustDocker(t, "rmi", "thinlayer/test:tagged")
	if out := e.mustDocker(t, "system", "df", "--format", "{{.Type}} {{.TotalCount}}"); !strings.Contains(out, "Images 2\n") || !strings.Contains(out, "Containers 1\n") {
		t.Fatalf("docker system df: %q", out)
	}

	e.restart(t)
	if out := e.mustDocker(t, "images", "--format", "{{.Repository}}:{{.Tag}}"); !strings.Contains(out, image) || !strings.Contains(out, "thinlayer/test:2") {
		t.Fatalf("after restart, docker images: %q", out)
	}
	if out := e.mustDocker(t, "ps", "-a", "--format", "{{.Names}}"); out != "c1\n" {
		t.Fatalf("after restart, docker ps -a: %q", out)
	}
	if out := e.mustDocker(t, "start", "-a", "c1"); out != wantRun {
		t.Fatalf("after restart, container output %q", out)
	}

	e.mustDocker(t, "rm", "c1")
	e.mustDocker(t, "rmi", "thinlayer/test:2", image)
	e.mustDocker(t, "image", "prune", "-a", "-f")
	e.dockerd.stop(t)
	e.plugin.stop(t)
	e.checkHomeEmpty(t)
}

// checkInspect: the image is on the plugin's driver, its layers are the
// loaded ones, and GetMetadata's device data came through.
func (e *engine) checkInspect(t testing.TB, ref string, diffIDs []string) {
	t.Helper()
	var img []struct {
		GraphDriver struct {
			Name string
			Data map[string]string
		}
		RootFS struct{ Layers []string }
	}
	if err := json.Unmarshal([]byte(e.mustDocker(t, "inspect", ref)), &img); err != nil || len(img) != 1 {
		t.Fatalf("docker inspect: %v", err)
	}
	g := img[0].GraphDriver
	if g.Name != pluginName || g.Data["DeviceName"] == "" || g.Data["DeviceId"] == "" {
		t.Fatalf("GraphDriver %+v, want %s with device data", g, pluginName)
	}
	if !slices.Equal(img[0].RootFS.Layers, diffIDs) {
		t.Fatalf("RootFS layers %v, want %v", img[0].RootFS.Layers, diffIDs)
	}
}

// checkCp copies a file out of and into the stopped container, and reads
// the one copied in back through docker export.
func (e *engine) checkCp(t testing.TB) {
	t.Helper()
	out := filepath.Join(e.dir, "w.out")
	e.mustDocker(t, "cp", "c1:/w", out)
	if b, err := os.ReadFile(out); err != nil || string(b) != "written\n" {
		t.Fatalf("docker cp out: %q %v", b, err)
	}
	in := filepath.Join(e.dir, "in")
	os.WriteFile(in, []byte("copied in\n"), 0o644)
	e.mustDocker(t, "cp", in, "c1:/etc/copied-in")
	exp := filepath.Join(e.dir, "export.tar")
	e.mustDocker(t, "export", "-o", exp, "c1")
	files := tarFiles(t, exp)
	if files["etc/copied-in"] != "copied in\n" || files["w"] != "written\n" || files["etc/base"] != "base v3\n" {
		t.Fatalf("docker export: copied-in %q, w %q, base %q", files["etc/copied-in"], files["w"], files["etc/base"])
	}
	if _, ok := files["etc/gone"]; ok {
		t.Fatal("docker export has the file layer 3 deleted")
	}
}

// checkSave: docker save gives back each layer byte for byte (Docker
// rebuilds the tars from the driver's files and its tar-split records).
func (e *engine) checkSave(t testing.TB, ref string, diffIDs []string) {
	t.Helper()
	saved := filepath.Join(e.dir, "save.tar")
	e.mustDocker(t, "save", "-o", saved, ref)
	files := tarFiles(t, saved)
	var manifest []struct{ Layers []string }
	if err := json.Unmarshal([]byte(files["manifest.json"]), &manifest); err != nil || len(manifest) != 1 {
		t.Fatalf("saved manifest: %v", err)
	}
	var got []string
	for _, l := range manifest[0].Layers {
		got = append(got, digest([]byte(files[l])))
	}
	if !slices.Equal(got, diffIDs) {
		t.Fatalf("saved layers %v, want the loaded %v", got, diffIDs)
	}
}

// checkHomeEmpty: once every image and container is gone, the home holds
// no layer and thinlayer check finds it consistent.
func (e *engine) checkHomeEmpty(t testing.TB) {
	t.Helper()
	h := cli.Home{Dir: e.home, StorageOpts: pluginOpts}
	rep, err := h.Check()
	if err != nil || !rep.OK() {
		t.Fatalf("thinlayer check: %v %+v", err, rep)
	}
	ls, err := h.List()
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range ls.Layers {
		if !l.Base {
			t.Errorf("layer %s left in the home after every image and container was removed", l.ID)
		}
	}
}

func tarFiles(t testing.TB, file string) map[string]string {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	m := map[string]string{}
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return m
		}
		if err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		b, _ := io.ReadAll(tr)
		m[strings.TrimPrefix(h.Name, "./")] = string(b)
	}
}
