package enginetest

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/thinlayer/thinlayer/testutil"
)

// pluginName is the --storage-driver; not "thinlayer", so a test on a
// host with dm-thin (no UML) cannot meet a real plugin's socket.
const pluginName = "thinlayertest"

// pluginOpts keep the loop-backed pool small for the test kernel's tmpfs.
var pluginOpts = []string{"dm.loopdatasize=3G", "dm.loopmetadatasize=128M", "dm.basesize=512M", "dm.fs=ext4"}

// engine is dockerd on the plugin, with a containerd of its own.
type engine struct {
	dir, home, sock string
	docker          string // the docker CLI
	env             []string
	containerd      *proc
	plugin, dockerd *proc
	pluginTap       *lineTap // sees every plugin process's log
}

// requireEngine finds Debian's docker.io and the static busybox the image
// is made of. Missing ones skip the test — or fail it under
// THINLAYER_REQUIRE_KERNEL=1, as CI runs (make deps installs them).
func requireEngine(t testing.TB) (docker string, busybox []byte) {
	t.Helper()
	testutil.RequireKernel(t)
	var missing []string
	for _, b := range []string{"dockerd", "containerd", "containerd-shim-runc-v2", "runc"} {
		if _, err := exec.LookPath(b); err != nil {
			missing = append(missing, b)
		}
	}
	docker = "/usr/bin/docker" // docker.io's CLI, whatever else PATH has
	if _, err := os.Stat(docker); err != nil {
		missing = append(missing, docker)
	}
	bb, err := os.ReadFile("/bin/busybox")
	if err != nil || isDynamic(bb) {
		missing = append(missing, "/bin/busybox (busybox-static)")
	}
	if len(missing) > 0 {
		reason := fmt.Sprintf("the engine test needs %s (Debian packages docker.io, busybox-static; make deps installs them)", strings.Join(missing, ", "))
		testutil.SkipOrFail(t, reason)
	}
	return docker, bb
}

// isDynamic: an ELF with a PT_INTERP names a dynamic loader.
func isDynamic(elf []byte) bool {
	return bytes.Contains(elf[:min(len(elf), 4096)], []byte("/lib64/ld-linux"))
}

func newEngine(t testing.TB, docker string) *engine {
	e := newBareEngine(t, docker)
	e.startPlugin(t)
	e.startDockerd(t)
	return e
}

// newBareEngine has containerd running, and neither plugin nor dockerd.
func newBareEngine(t testing.TB, docker string) *engine {
	dir := t.TempDir()
	e := &engine{dir: dir, home: filepath.Join(dir, "home"), sock: filepath.Join(dir, "docker.sock"), docker: docker,
		env: []string{"DOCKER_HOST=unix://" + filepath.Join(dir, "docker.sock"), "DOCKER_CONFIG=" + filepath.Join(dir, "cli")}}
	e.pluginTap = &lineTap{}
	mountCgroup2(t)
	e.startContainerd(t)
	return e
}

// mountCgroup2 gives runc the unified hierarchy (the guest boots without).
func mountCgroup2(t testing.TB) {
	if _, err := os.Stat("/sys/fs/cgroup/cgroup.controllers"); err == nil {
		return
	}
	if err := unix.Mount("none", "/sys/fs/cgroup", "cgroup2", 0, ""); err != nil {
		t.Fatalf("mount cgroup2: %v", err)
	}
}

func (e *engine) startContainerd(t testing.TB) {
	d := filepath.Join(e.dir, "containerd")
	os.MkdirAll(d, 0o700)
	cfg := fmt.Sprintf("version = 2\nroot = %q\nstate = %q\ndisabled_plugins = [\"io.containerd.grpc.v1.cri\", \"io.containerd.snapshotter.v1.devmapper\", \"io.containerd.snapshotter.v1.btrfs\", \"io.containerd.snapshotter.v1.zfs\", \"io.containerd.snapshotter.v1.aufs\"]\n[grpc]\n  address = %q\n[ttrpc]\n  address = %q\n[plugins.\"io.containerd.internal.v1.opt\"]\n  path = %q\n",
		filepath.Join(d, "root"), filepath.Join(d, "state"), filepath.Join(d, "c.sock"), filepath.Join(d, "c.sock.ttrpc"), filepath.Join(d, "opt"))
	if err := os.WriteFile(filepath.Join(d, "config.toml"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	e.containerd = start(t, "containerd", filepath.Join(d, "log"), nil, "containerd", "--config", filepath.Join(d, "config.toml"))
	e.containerd.waitSocket(t, filepath.Join(d, "c.sock"))
}

// startPlugin runs the plugin command (this binary, see TestMain).
func (e *engine) startPlugin(t testing.TB) {
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	args := []string{"--name", pluginName, "--home", e.home, "--log-level", "debug"}
	for _, o := range pluginOpts {
		args = append(args, "--storage-opt", o)
	}
	e.plugin = startTee(t, "plugin", filepath.Join(e.dir, "plugin.log"), []string{envAsPlugin + "=1"}, e.pluginTap, self, args...)
	e.plugin.waitSocket(t, filepath.Join("/run/docker/plugins", pluginName+".sock"))
}

func (e *engine) startDockerd(t testing.TB) { e.startDockerdOn(t, pluginName) }

// startDockerdOn starts dockerd on a storage driver: the plugin's name, or
// "devicemapper" and its options (Docker's own driver).
func (e *engine) startDockerdOn(t testing.TB, driver string, storageOpts ...string) {
	args := []string{"--experimental", "--storage-driver", driver}
	for _, o := range storageOpts {
		args = append(args, "--storage-opt", o)
	}
	e.dockerd = start(t, "dockerd", filepath.Join(e.dir, "dockerd.log"), nil, "dockerd", append(args,
		"--data-root", filepath.Join(e.dir, "data"), "--exec-root", filepath.Join(e.dir, "exec"),
		"-H", "unix://"+e.sock, "--pidfile", filepath.Join(e.dir, "dockerd.pid"),
		"--containerd", filepath.Join(e.dir, "containerd", "c.sock"),
		"--iptables=false", "--ip-masq=false", "--bridge=none", "--userland-proxy=false")...)
	e.dockerd.waitSocket(t, e.sock)
	e.mustDocker(t, "version") // the API answers, not only the socket
}

// dockerCmd runs the docker CLI; stdin may be nil.
func (e *engine) dockerCmd(stdin []byte, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	cmd := exec.CommandContext(ctx, e.docker, args...)
	cmd.Env = append(os.Environ(), e.env...)
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if err != nil {
		return out.String(), fmt.Errorf("docker %s: %w\nstderr: %s", strings.Join(args, " "), err, errb.String())
	}
	return out.String(), nil
}

func (e *engine) mustDocker(t testing.TB, args ...string) string {
	t.Helper()
	out, err := e.dockerCmd(nil, args...)
	if err != nil {
		t.Fatalf("%v\n%s\n%s", err, e.dockerd.tail(), e.plugin.tail())
	}
	return out
}

// restart stops dockerd (its Cleanup releases the driver) and the plugin
// with SIGTERM, and starts both again on the same home.
func (e *engine) restart(t testing.TB) {
	e.dockerd.stop(t)
	e.plugin.stop(t)
	if _, err := os.Stat(filepath.Join("/run/docker/plugins", pluginName+".sock")); !os.IsNotExist(err) {
		t.Errorf("the plugin left its socket at SIGTERM: %v", err)
	}
	e.startPlugin(t)
	e.startDockerd(t)
}
