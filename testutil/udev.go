package testutil

import (
	"os"
	"os/exec"
	"testing"
	"time"

	dm "github.com/thinlayer/thinlayer/devmapper"
)

// Udevd is where Debian's udev package puts the daemon.
const Udevd = "/lib/systemd/systemd-udevd"

// StartUdevd runs systemd-udevd for the rest of the test, so that the
// udev-sync path is taken. Only inside the harness's own kernel: on a real
// host udev is the system's business, and a test there uses it if it runs.
func StartUdevd(t testing.TB) {
	t.Helper()
	if !InUML() {
		if !dm.UdevRunning() {
			t.Skip("udevd not running on this host; the UML harness tests the udev path")
		}
		return
	}
	if _, err := os.Stat(Udevd); err != nil {
		SkipOrFail(t, "udev not installed (apt-get install udev): "+err.Error())
	}
	if err := os.MkdirAll("/run/udev", 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(Udevd)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		_ = os.RemoveAll("/run/udev")
	})
	// The control socket appears before udevd listens for kernel events;
	// an event sent in between is lost. A ping answered means the event
	// loop runs.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if dm.UdevRunning() && exec.Command("udevadm", "control", "--ping", "-t", "5").Run() == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("udevd did not come up")
		}
	}
}
