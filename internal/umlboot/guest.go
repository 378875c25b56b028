package umlboot

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// The guest side of the harness: this binary as PID 1 of the UML kernel.

// guestModules are loaded in dependency order (UML has no modprobe index we
// can count on); optional ones may be missing from a kernel build.
var guestModules = []struct {
	path     string
	optional bool
}{
	{"drivers/md/dm-mod", false},
	{"drivers/md/dm-bufio", false},
	{"drivers/md/persistent-data/dm-persistent-data", false},
	{"drivers/md/dm-bio-prison", false},
	{"drivers/md/dm-thin-pool", false},
	{"drivers/block/loop", false},
	{"drivers/md/dm-flakey", true},
	{"drivers/md/dm-log-writes", true},
}

// GuestTmpDir is the tmpfs that holds scratch files inside the guest:
// hostfs is slow and loop devices over it misbehave.
const GuestTmpDir = "/run/thinlayer/tmp"

// InitIfGuest turns this process into the guest's init when it was booted
// as one (PID 1 with the job on the kernel command line), and never returns
// then. Call it before anything else in main or TestMain.
func InitIfGuest() {
	if os.Getpid() == 1 && os.Getenv(envJob) != "" {
		guestInit(os.Getenv(envJob))
	}
}

func guestInit(jobDir string) {
	rc := 125
	defer func() {
		_ = os.WriteFile(filepath.Join(jobDir, "rc"), []byte(fmt.Sprintln(rc)), 0o644)
		unix.Sync()
		_ = unix.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF)
		os.Exit(rc) // a panic of PID 1, if reboot failed: the host sees no rc file change
	}()
	out := guestOutput()
	if err := guestSetup(); err != nil {
		fmt.Fprintf(out, "uml: UML guest setup: %v\n", err)
		return
	}
	rc = guestRun(jobDir, out)
}

// guestOutput is the second console, which the host reads from a pipe.
func guestOutput() *os.File {
	_ = os.MkdirAll("/dev", 0o755)
	_ = unix.Mount("devtmpfs", "/dev", "devtmpfs", 0, "")
	f, err := os.OpenFile("/dev/tty1", os.O_WRONLY|unix.O_NOCTTY, 0)
	if err != nil {
		return os.Stderr
	}
	if t, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS); err == nil {
		t.Oflag &^= unix.OPOST
		_ = unix.IoctlSetTermios(int(f.Fd()), unix.TCSETS, t)
	}
	return f
}

func guestSetup() error {
	mounts := []struct{ src, dst, fs, data string }{
		{"proc", "/proc", "proc", ""},
		{"sysfs", "/sys", "sysfs", ""},
		// /run is the host's through hostfs; what a guest leaves there
		// (udev's control socket) would mislead the host and later guests.
		{"tmpfs", "/run", "tmpfs", "size=75%"},
	}
	for _, m := range mounts {
		if err := unix.Mount(m.src, m.dst, m.fs, 0, m.data); err != nil && !errors.Is(err, unix.EBUSY) {
			return fmt.Errorf("mount %s on %s: %w", m.fs, m.dst, err)
		}
	}
	if err := os.MkdirAll(GuestTmpDir, 0o1777); err != nil {
		return err
	}
	// The kernel would spawn /sbin/hotplug for every uevent (it doesn't
	// exist: each try costs a fork in UML, ~10 ms a device). Hosts run
	// udev instead and leave this empty; so do we.
	if err := os.WriteFile("/proc/sys/kernel/hotplug", []byte("\n"), 0); err != nil {
		return fmt.Errorf("disable uevent helper: %w", err)
	}
	return loadModules()
}

func loadModules() error {
	var uts unix.Utsname
	if err := unix.Uname(&uts); err != nil {
		return err
	}
	base := filepath.Join(modulesDir, unix.ByteSliceToString(uts.Release[:]), "kernel")
	for _, m := range guestModules {
		err := insmod(filepath.Join(base, m.path+".ko"))
		if err != nil && !(m.optional && errors.Is(err, os.ErrNotExist)) {
			return err
		}
	}
	return nil
}

func insmod(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("insmod: %w", err)
	}
	defer f.Close()
	if err := unix.FinitModule(int(f.Fd()), "", 0); err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("insmod %s: %w", path, err)
	}
	return nil
}

func guestRun(jobDir string, out *os.File) int {
	var j job
	b, err := os.ReadFile(filepath.Join(jobDir, "job.json"))
	if err == nil {
		err = json.Unmarshal(b, &j)
	}
	if err != nil {
		fmt.Fprintf(out, "uml: read job: %v\n", err)
		return 125
	}
	cmd := exec.Command(j.Exe, j.Args...)
	cmd.Env = append(j.Env, "TMPDIR="+GuestTmpDir, "HOME=/root")
	if !hasEnv(j.Env, "PATH") {
		cmd.Env = append(cmd.Env, "PATH=/usr/local/go/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
	}
	cmd.Dir = j.Dir
	cmd.Stdout, cmd.Stderr = out, out
	err = cmd.Run()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if ee.ExitCode() < 0 {
			fmt.Fprintf(out, "uml: tests died: %v\n", err)
			return 126
		}
		return ee.ExitCode()
	}
	if err != nil {
		fmt.Fprintf(out, "uml: run tests: %v\n", err)
		return 125
	}
	return 0
}

func hasEnv(env []string, key string) bool {
	for _, kv := range env {
		if strings.HasPrefix(kv, key+"=") {
			return true
		}
	}
	return false
}
