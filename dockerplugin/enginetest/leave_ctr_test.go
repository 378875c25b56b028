package enginetest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/thinlayer/thinlayer/dockerstore"
)

// checkOCILoad: Docker 20.10 loads thinlayer's OCI layout by its
// manifest.json. leave/b:1's own layer is removed first, so the load
// reads it from blobs/sha256/.
func (e *engine) checkOCILoad(t *testing.T, archive string) {
	t.Helper()
	want := e.mustDocker(t, "image", "inspect", "-f", "{{.Id}} {{.RootFS.Layers}}", "leave/b:1")
	e.mustDocker(t, "rmi", "leave/b:1")
	e.mustDockerWithin(t, slow, "load", "-i", archive)
	if got := e.mustDocker(t, "image", "inspect", "-f", "{{.Id}} {{.RootFS.Layers}}", "leave/b:1"); got != want {
		t.Fatalf("leave/b:1 loaded from the OCI layout: %s, want %s", got, want)
	}
	if got := e.mustDocker(t, "run", "--rm", "--network", "none", "leave/b:1", "cat", "/etc/b", "/etc/base"); got != "image b\nbase v1\n" {
		t.Fatalf("on vfs, leave/b:1 from the OCI layout: %q", got)
	}
}

// checkCtrImport: `ctr images import` takes the archive into namespace ns,
// unpacking it on the native snapshotter (which checks each layer's
// digest against the config's diff ids); each image in refs then has the
// original id as its config digest and the original layer digests, as
// want lists them (docker image inspect -f '{{.Id}} {{.RootFS.Layers}}').
func (e *engine) checkCtrImport(t *testing.T, ns, archive string, refs []string, want string) {
	t.Helper()
	e.mustCtr(t, ns, "images", "import", "--snapshotter", "native", archive)
	targets := map[string]string{}
	for _, line := range strings.Split(e.mustCtr(t, ns, "images", "ls"), "\n")[1:] {
		if f := strings.Fields(line); len(f) > 2 {
			targets[f[0]] = f[2]
		}
	}
	var got strings.Builder
	for _, ref := range refs {
		target, ok := targets[dockerstore.FullName(ref)]
		if !ok {
			t.Fatalf("containerd (%s) has no %s after importing %s: %v", ns, dockerstore.FullName(ref), filepath.Base(archive), targets)
		}
		var m struct {
			Config struct{ Digest string }
			Layers []struct{ Digest string }
		}
		if err := json.Unmarshal([]byte(e.mustCtr(t, ns, "content", "get", target)), &m); err != nil {
			t.Fatalf("manifest %s of %s: %v", target, ref, err)
		}
		var layers []string
		for _, l := range m.Layers {
			layers = append(layers, l.Digest)
		}
		fmt.Fprintf(&got, "%s [%s]\n", m.Config.Digest, strings.Join(layers, " "))
	}
	if got.String() != want {
		t.Fatalf("containerd (%s, from %s): image ids and layers:\n%s\nwant (devicemapper):\n%s", ns, filepath.Base(archive), got.String(), want)
	}
}

// mustCtr runs ctr on the engine's containerd in namespace ns.
func (e *engine) mustCtr(t *testing.T, ns string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), slow)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ctr", append([]string{"--address", filepath.Join(e.dir, "containerd", "c.sock"), "--namespace", ns}, args...)...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("ctr %s: %v\n%s%s\n%s", strings.Join(args, " "), err, out.String(), errb.String(), e.containerd.tail())
	}
	return out.String()
}

// checkCorruptConfig: an image config whose bytes no longer have its id
// stops a save naming the image, and leaves no archive.
func (e *engine) checkCorruptConfig(t *testing.T, s *dockerstore.Store, refs []dockerstore.Ref) {
	t.Helper()
	id, _, err := dockerstore.Resolve("leave/b:1", refs, nil)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(e.dir, "data/image/devicemapper/imagedb/content/sha256", id.Hex())
	raw, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, bytes.Replace(raw, []byte(`"amd64"`), []byte(`"arm64"`), 1), 0o600); err != nil {
		t.Fatal(err)
	}
	bad := filepath.Join(e.dir, "corrupt.tar")
	out := thinlayer(t, 1, append([]string{"save", "leave/b:1", "-o", bad}, e.homeArgs()...)...)
	if !strings.Contains(out, string(id)) || !strings.Contains(out, "has digest") {
		t.Fatalf("save of an image whose config changed: %s", out)
	}
	if _, err := os.Stat(bad); err == nil {
		t.Fatal("a failed save left its archive")
	}
}
