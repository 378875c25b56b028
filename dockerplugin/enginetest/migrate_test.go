package enginetest

import (
	"bytes"
	"path/filepath"
	"strings"
	"testing"

	"github.com/thinlayer/thinlayer/cli"
)

// builtinOpts run Docker's own devicemapper driver on a pool like the
// plugin's (no udevd in the test kernel).
var builtinOpts = append([]string{"dm.override_udev_sync_check=true"}, pluginOpts...)

// TestMigrateFromBuiltinDevicemapper: Docker's own devicemapper driver
// writes a home (an image loaded, a container run, one committed, one
// never started); thinlayer docker-switch moves that Docker onto the
// plugin, where every image and container is there and the stopped
// container starts and sees its files; switched back, Docker's own driver
// has them all again.
func TestMigrateFromBuiltinDevicemapper(t *testing.T) {
	docker, busybox := requireEngine(t)
	e := newBareEngine(t, docker)
	data := filepath.Join(e.dir, "data")
	e.home = filepath.Join(data, "devicemapper") // where Docker's driver keeps it
	archive := filepath.Join(e.dir, "image.tar")
	writeImage(t, archive, image, imageLayers(busybox))

	e.startDockerdOn(t, "devicemapper", builtinOpts...)
	e.mustDocker(t, "load", "-i", archive)
	e.mustDocker(t, "create", "--network", "none", "--name", "c1", image, "sh", "-c", "echo written > /w; cat /etc/base")
	if out := e.mustDocker(t, "start", "-a", "c1"); out != "base v3\n" {
		t.Fatalf("on Docker's driver, c1 says %q", out)
	}
	e.mustDocker(t, "commit", "c1", "thinlayer/test:2")
	e.mustDocker(t, "create", "--network", "none", "--name", "c2", "thinlayer/test:2", "cat", "/w")
	devBefore := e.mustDocker(t, "inspect", "-f", "{{.GraphDriver.Data.DeviceId}} {{.GraphDriver.Data.DeviceName}}", "c1")
	e.dockerd.stop(t)

	e.dockerSwitch(t, "plugin")
	e.startPlugin(t)
	e.startDockerd(t)
	e.checkMigrated(t, pluginName)
	if dev := e.mustDocker(t, "inspect", "-f", "{{.GraphDriver.Data.DeviceId}} {{.GraphDriver.Data.DeviceName}}", "c1"); dev != devBefore {
		t.Fatalf("c1's device on the plugin is %q, was %q on Docker's driver: not the same layer", dev, devBefore)
	}
	e.dockerd.stop(t)
	e.plugin.stop(t)

	e.dockerSwitch(t, "builtin")
	e.startDockerdOn(t, "devicemapper", builtinOpts...)
	e.checkMigrated(t, "devicemapper")
	e.dockerd.stop(t)
}

// dockerSwitch runs `thinlayer docker-switch --to to` on the data root.
func (e *engine) dockerSwitch(t testing.TB, to string) {
	t.Helper()
	var out, errb bytes.Buffer
	args := []string{"docker-switch", "--to", to, "--data-root", filepath.Join(e.dir, "data"), "--name", pluginName}
	if code := cli.Main(args, cli.Env{Stdout: &out, Stderr: &errb}); code != 0 {
		t.Fatalf("thinlayer %s: exit %d\n%s%s", strings.Join(args, " "), code, out.String(), errb.String())
	}
	if !strings.Contains(out.String(), "2 container(s) rewritten") {
		t.Fatalf("docker-switch --to %s: %s", to, out.String())
	}
}

// checkMigrated: both images and both containers are on driver, c1's files
// are there, c1 starts again and c2 (made on the other driver) runs.
func (e *engine) checkMigrated(t testing.TB, driver string) {
	t.Helper()
	if out := e.mustDocker(t, "images", "--format", "{{.Repository}}:{{.Tag}}"); !strings.Contains(out, image) || !strings.Contains(out, "thinlayer/test:2") {
		t.Fatalf("on %s, docker images: %q", driver, out)
	}
	if out := e.mustDocker(t, "ps", "-a", "--format", "{{.Names}}"); out != "c2\nc1\n" {
		t.Fatalf("on %s, docker ps -a: %q", driver, out)
	}
	if out := e.mustDocker(t, "inspect", "-f", "{{.GraphDriver.Name}}", "c1", image); out != driver+"\n"+driver+"\n" {
		t.Fatalf("GraphDriver %q, want %s", out, driver)
	}
	if out := e.mustDocker(t, "cp", "c1:/w", "-"); !strings.Contains(out, "written\n") {
		t.Fatalf("on %s, c1's /w: %q", driver, out)
	}
	if out := e.mustDocker(t, "start", "-a", "c1"); out != "base v3\n" {
		t.Fatalf("on %s, c1 says %q", driver, out)
	}
	if out := e.mustDocker(t, "start", "-a", "c2"); out != "written\n" {
		t.Fatalf("on %s, c2 says %q", driver, out)
	}
}
