package adapter_test

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/thinlayer/thinlayer/cli"
	"github.com/thinlayer/thinlayer/deviceset"
	"github.com/thinlayer/thinlayer/testutil"
)

// TestDaemonRootfsLinks is issue 17's sequence through the real daemon:
// containers (snapshots made with ctr through the proxy plugin) whose "/"
// got `ln -s <target> /rootfs`, stopped, daemons down; then `thinlayer
// mount` (read-only and --rw), `export --parent <image>` and `umount`
// show and carry the container's own files — the link as a link — and
// nothing of the host's, and umount takes the layer's device down.
func TestDaemonRootfsLinks(t *testing.T) {
	testutil.RequireKernel(t)
	bin, ctr := requireBinaries(t)
	dir := t.TempDir()
	hostDir := t.TempDir()
	secret := "host-only secret 5be1\n"
	if err := os.WriteFile(filepath.Join(hostDir, "hostfile"), []byte(secret), 0o600); err != nil {
		t.Fatal(err)
	}
	targets := []string{hostDir, "/etc", "/"}
	var img string
	layers := map[string]string{}
	t.Run("containerd", func(t *testing.T) { // its cleanups stop both daemons
		s, sock := serveSnapshotter(t, dir)
		d := startContainerd(t, bin, ctr, dir, sock)
		prefix, err := deviceset.DevicePrefix(s.DeviceSet().Home())
		if err != nil {
			t.Fatal(err)
		}
		d.snap(t, "prepare", "img-x")
		img = writeSnapshot(t, d, dir, "img-x", prefix, func(root string) error {
			return os.WriteFile(filepath.Join(root, "image-file"), []byte("from the image\n"), 0o644)
		})
		d.snap(t, "commit", "img", "img-x")
		for i, target := range targets {
			key := fmt.Sprintf("ctr%d", i)
			d.snap(t, "prepare", key, "img")
			layers[target] = writeSnapshot(t, d, dir, key, prefix, func(root string) error {
				if err := os.WriteFile(filepath.Join(root, "container-file"), []byte("the container's own\n"), 0o644); err != nil {
					return err
				}
				return os.Symlink(target, filepath.Join(root, "rootfs"))
			})
		}
	})
	if t.Failed() {
		return
	}
	home := filepath.Join(dir, "home")
	secrets := []string{secret}
	if b, err := os.ReadFile("/etc/shadow"); err == nil && len(b) > 16 {
		secrets = append(secrets, string(b))
	}
	for _, target := range targets {
		id := layers[target]
		for _, rw := range []bool{false, true} {
			mnt := t.TempDir()
			t.Cleanup(func() { _ = unix.Unmount(mnt, unix.MNT_DETACH) }) // should the test fail mounted
			args := []string{"mount", id, mnt}
			if rw {
				args = append(args, "--rw")
			}
			thinlayerCLI(t, home, nil, args...)
			if link, err := os.Readlink(filepath.Join(mnt, "rootfs")); err != nil || link != target {
				t.Errorf("%v: rootfs %q, %v: want the container's link to %s", args, link, err, target)
			}
			if rw {
				if err := os.WriteFile(filepath.Join(mnt, "written"), []byte("x"), 0o644); err != nil {
					t.Errorf("%v: write: %v", args, err)
				}
			}
			thinlayerCLI(t, home, nil, "umount", mnt)
			if active := layerActive(t, home, id); active {
				t.Errorf("%v then umount: the layer's device is still active", args)
			}
		}
		var tarBuf bytes.Buffer
		thinlayerCLI(t, home, &tarBuf, "export", id, "--parent", img)
		names := map[string]*tar.Header{}
		tr := tar.NewReader(bytes.NewReader(tarBuf.Bytes()))
		for {
			h, err := tr.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			names[h.Name] = h
		}
		if h := names["rootfs"]; len(names) != 3 || h == nil || h.Typeflag != tar.TypeSymlink || h.Linkname != target ||
			names["container-file"] == nil || names["written"] == nil {
			t.Errorf("export of the container with rootfs -> %s: %v", target, names)
		}
		for _, s := range secrets {
			if strings.Contains(tarBuf.String(), s) {
				t.Errorf("export of the container with rootfs -> %s carries host file content", target)
			}
		}
	}
	if entries, _ := os.ReadDir(hostDir); len(entries) != 1 {
		t.Errorf("the host directory now holds %v", entries)
	}
}

// writeSnapshot mounts active snapshot key as ctr prints it, runs write on
// it, unmounts, and returns the snapshot's layer id.
func writeSnapshot(t testing.TB, d *daemon, dir, key, prefix string, write func(root string) error) string {
	t.Helper()
	m := parseMount(t, d.snap(t, "mounts", filepath.Join(dir, "mnt-"+key), key))
	m.mount(t)
	if err := write(m.Target); err != nil {
		t.Fatal(err)
	}
	m.unmount(t)
	real, err := filepath.EvalSymlinks(m.Source)
	if err != nil {
		t.Fatal(err)
	}
	name, err := os.ReadFile("/sys/block/" + filepath.Base(real) + "/dm/name")
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimPrefix(strings.TrimSpace(string(name)), prefix+"-")
}

// thinlayerCLI runs the thinlayer command line on home with the home's
// options, failing the test unless it succeeds.
func thinlayerCLI(t testing.TB, home string, stdout io.Writer, args ...string) {
	t.Helper()
	args = append(args, "--home", home)
	for _, o := range homeOptions {
		args = append(args, "--storage-opt", o)
	}
	if stdout == nil {
		stdout = io.Discard
	}
	var errb strings.Builder
	if rc := cli.Main(args, cli.Env{Stdin: strings.NewReader(""), Stdout: stdout, Stderr: &errb}); rc != 0 {
		t.Fatalf("thinlayer %v: exit %d: %s", args, rc, errb.String())
	}
}

// layerActive reports whether the layer's device is active.
func layerActive(t testing.TB, home, id string) bool {
	t.Helper()
	prefix, err := deviceset.DevicePrefix(home)
	if err != nil {
		t.Fatal(err)
	}
	entries, _ := os.ReadDir("/sys/block")
	for _, e := range entries {
		if b, err := os.ReadFile("/sys/block/" + e.Name() + "/dm/name"); err == nil && strings.TrimSpace(string(b)) == prefix+"-"+id {
			return true
		}
	}
	return false
}
