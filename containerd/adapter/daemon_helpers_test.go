package adapter_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	snapshotsapi "github.com/containerd/containerd/api/services/snapshots/v1"
	"github.com/containerd/containerd/contrib/snapshotservice"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc"

	"github.com/thinlayer/thinlayer/containerd/adapter"
	dm "github.com/thinlayer/thinlayer/devmapper"
	"github.com/thinlayer/thinlayer/snapshotter"
	"github.com/thinlayer/thinlayer/testutil"
	"github.com/thinlayer/thinlayer/thinmeta"
)

// daemonWait bounds every wait on containerd: its start (process starts
// are slow in UML) and its garbage collection of removed snapshots.
const daemonWait = 90 * time.Second

// requireBinaries finds containerd and ctr. Missing ones skip the test —
// or fail it under THINLAYER_REQUIRE_KERNEL=1, as CI runs (make deps
// installs Debian's containerd package).
func requireBinaries(t testing.TB) (containerd, ctr string) {
	t.Helper()
	var missing []string
	find := func(name string) string {
		p, err := exec.LookPath(name)
		if err != nil {
			missing = append(missing, name)
		}
		return p
	}
	containerd, ctr = find("containerd"), find("ctr")
	if len(missing) > 0 {
		reason := fmt.Sprintf("the daemon test needs %s in PATH (Debian package containerd; make deps installs it)", strings.Join(missing, " and "))
		testutil.SkipOrFail(t, reason)
	}
	return containerd, ctr
}

// serveSnapshotter opens a thinlayer snapshotter on a loop-backed home in
// dir and serves it on a unix socket from this process, as the
// thinlayer-snapshotter command does; both stop at test end.
func serveSnapshotter(t testing.TB, dir string) (*snapshotter.Snapshotter, string) {
	t.Helper()
	return serveSnapshotterWith(t, dir, homeOptions)
}

// serveSnapshotterWith is serveSnapshotter with the home's dm.* options.
func serveSnapshotterWith(t testing.TB, dir string, opts []string) (*snapshotter.Snapshotter, string) {
	t.Helper()
	s, err := snapshotter.OpenHome(filepath.Join(dir, "home"), opts)
	if err != nil {
		t.Fatalf("OpenHome: %v", err)
	}
	sock := filepath.Join(dir, "thinlayer.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		_ = s.Close()
		t.Fatalf("listen %s: %v", sock, err)
	}
	srv := grpc.NewServer()
	snapshotsapi.RegisterSnapshotsServer(srv, snapshotservice.FromSnapshotter(adapter.Snapshotter{S: s}))
	served := make(chan error, 1)
	go func() { served <- srv.Serve(l) }()
	t.Cleanup(func() {
		srv.Stop()
		if err := <-served; err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			t.Errorf("serve: %v", err)
		}
		if err := s.Close(); err != nil {
			t.Errorf("close snapshotter: %v", err)
		}
	})
	return s, sock
}

// containerdConfig keeps everything of containerd's under dir (through
// hostfs the guest's /var/lib and /opt are the host's), loads the proxy
// plugin, and leaves out the plugins that want a real host: CRI, and the
// built-in snapshotters that need their own filesystems or pools.
func containerdConfig(dir, proxySock string) string {
	return baseConfig(dir, "io.containerd.snapshotter.v1.devmapper") + fmt.Sprintf(`
[proxy_plugins.thinlayer]
  type = "snapshot"
  address = %q
`, proxySock)
}

// baseConfig is containerd's configuration with everything under dir and
// CRI, the btrfs, zfs and aufs snapshotters and disabled left out.
func baseConfig(dir string, disabled ...string) string {
	var extra strings.Builder
	for _, p := range disabled {
		fmt.Fprintf(&extra, "  %q,\n", p)
	}
	return fmt.Sprintf(`version = 2
root = %[1]q
state = %[2]q
disabled_plugins = [
  "io.containerd.grpc.v1.cri",
  "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.zfs",
  "io.containerd.snapshotter.v1.aufs",
%[6]s]

[grpc]
  address = %[3]q

[ttrpc]
  address = %[4]q

[plugins."io.containerd.internal.v1.opt"]
  path = %[5]q
`, filepath.Join(dir, "root"), filepath.Join(dir, "state"), filepath.Join(dir, "containerd.sock"),
		filepath.Join(dir, "containerd.sock.ttrpc"), filepath.Join(dir, "opt"), extra.String())
}

// daemon is a running containerd.
type daemon struct {
	sock, log string
	ctr       string
}

// startContainerd starts containerd in the background with the config
// above, waits until its socket answers, and stops it with SIGTERM (and
// a wait) at test end.
func startContainerd(t testing.TB, bin, ctr, dir, proxySock string) *daemon {
	t.Helper()
	return startContainerdWith(t, bin, ctr, dir, containerdConfig(dir, proxySock))
}

// startContainerdWith starts containerd with config, which must put its
// socket at <dir>/containerd.sock. The sbin directories join its PATH:
// runc, mkfs and dmsetup live there.
func startContainerdWith(t testing.TB, bin, ctr, dir, config string) *daemon {
	t.Helper()
	d := &daemon{sock: filepath.Join(dir, "containerd.sock"), log: filepath.Join(dir, "containerd.log"), ctr: ctr}
	cfg := filepath.Join(dir, "config.toml")
	if err := os.WriteFile(cfg, []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	logf, err := os.Create(d.log)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	cmd := exec.Command(bin, "--config", cfg)
	cmd.Env = append(os.Environ(), "PATH="+os.Getenv("PATH")+":/usr/local/sbin:/usr/sbin:/sbin")
	if _, err := os.Stat("/run/udev/control"); err != nil {
		// No udevd: without this, the dmsetup that containerd's devmapper
		// snapshotter runs leaves /dev/mapper nodes to udev ("trust_udev").
		cmd.Env = append(cmd.Env, "DM_DISABLE_UDEV=1")
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatalf("start containerd: %v", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() { d.stop(t, cmd, exited) })
	if err := waitSocket(d.sock, exited); err != nil {
		t.Fatalf("containerd: %v\n%s", err, d.logTail())
	}
	return d
}

// waitSocket waits, bounded, until sock accepts a connection or the
// daemon exits.
func waitSocket(sock string, exited <-chan error) error {
	deadline := time.Now().Add(daemonWait)
	for time.Now().Before(deadline) {
		if c, err := net.Dial("unix", sock); err == nil {
			return c.Close()
		}
		select {
		case err := <-exited:
			return fmt.Errorf("exited before serving %s: %v", sock, err)
		case <-time.After(50 * time.Millisecond):
		}
	}
	return fmt.Errorf("%s not serving after %v", sock, daemonWait)
}

func (d *daemon) stop(t testing.TB, cmd *exec.Cmd, exited <-chan error) {
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		t.Errorf("SIGTERM containerd: %v", err)
	}
	select {
	case err := <-exited:
		var ee *exec.ExitError
		if err != nil && !(errors.As(err, &ee) && ee.Sys().(syscall.WaitStatus).Signal() == syscall.SIGTERM) {
			t.Errorf("containerd exited: %v\n%s", err, d.logTail())
		}
	case <-time.After(daemonWait):
		_ = cmd.Process.Kill()
		<-exited
		t.Errorf("containerd did not stop within %v of SIGTERM\n%s", daemonWait, d.logTail())
	}
}

func (d *daemon) logTail() string {
	b, _ := os.ReadFile(d.log)
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return "containerd log (tail):\n" + string(b)
}

// run runs ctr against the daemon; args follow "ctr --address <sock>".
func (d *daemon) run(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), daemonWait)
	defer cancel()
	out, err := exec.CommandContext(ctx, d.ctr, append([]string{"--address", d.sock}, args...)...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("ctr %s: %w: %s", strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

// snap runs "ctr snapshots --snapshotter thinlayer <args>" and fails the
// test if it fails.
func (d *daemon) snap(t testing.TB, args ...string) string {
	t.Helper()
	out, err := d.run(append([]string{"snapshots", "--snapshotter", "thinlayer"}, args...)...)
	if err != nil {
		t.Fatalf("%v\n%s", err, d.logTail())
	}
	return out
}

// printedMount is one "mount -t <type> <source> <target> -o <options>"
// line of ctr snapshots mounts.
type printedMount struct {
	Type, Source, Target string
	Options              []string
}

func parseMount(t testing.TB, out string) printedMount {
	t.Helper()
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 1 {
		t.Fatalf("want one mount command, got %q", out)
	}
	f := strings.Fields(lines[0])
	if len(f) < 5 || f[0] != "mount" || f[1] != "-t" || (len(f) > 5 && (len(f) != 7 || f[5] != "-o")) {
		t.Fatalf("not a mount command: %q", lines[0])
	}
	t.Logf("ctr printed: %s", lines[0])
	m := printedMount{Type: f[2], Source: f[3], Target: f[4]}
	if len(f) == 7 {
		m.Options = slices.DeleteFunc(strings.Split(f[6], ","), func(o string) bool { return o == "" })
	}
	return m
}

// mount does what the printed command says: ro as a flag, the rest as data.
func (m printedMount) mount(t testing.TB) {
	t.Helper()
	var flags uintptr
	var data []string
	for _, o := range m.Options {
		if o == "ro" {
			flags |= unix.MS_RDONLY
		} else {
			data = append(data, o)
		}
	}
	if err := os.MkdirAll(m.Target, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount(m.Source, m.Target, m.Type, flags, strings.Join(data, ",")); err != nil {
		t.Fatalf("%+v: mount: %v", m, err)
	}
	t.Cleanup(func() { _ = unix.Unmount(m.Target, unix.MNT_DETACH) })
}

func (m printedMount) unmount(t testing.TB) {
	t.Helper()
	if err := unix.Unmount(m.Target, 0); err != nil {
		t.Fatalf("unmount %s: %v", m.Target, err)
	}
}

// poolThinIDs are the thin ids in the pool's own metadata, read live.
func poolThinIDs(t testing.TB, s *snapshotter.Snapshotter) []dm.ThinID {
	t.Helper()
	st, err := s.DeviceSet().Status()
	if err != nil {
		t.Fatal(err)
	}
	c, err := dm.Open()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	m, release, err := thinmeta.OpenLive(c, st.PoolName, "")
	if err != nil {
		t.Fatalf("open pool metadata: %v", err)
	}
	defer func() {
		if err := release(); err != nil {
			t.Errorf("release metadata snapshot: %v", err)
		}
	}()
	defer m.Close()
	devs, err := m.Devices()
	if err != nil {
		t.Fatal(err)
	}
	var ids []dm.ThinID
	for _, d := range devs {
		ids = append(ids, d.ID)
	}
	slices.Sort(ids)
	return ids
}

// ourLayers are the snapshotter's DeviceSet layers.
func ourLayers(t testing.TB, s *snapshotter.Snapshotter) []string {
	t.Helper()
	all, err := s.DeviceSet().List()
	if err != nil {
		t.Fatal(err)
	}
	return slices.DeleteFunc(all, func(h string) bool { return !snapshotter.IsSnapshotLayer(h) })
}
