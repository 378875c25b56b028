// Package umlboot runs this very binary as root inside a User-Mode Linux
// kernel that has device-mapper thin provisioning, for hosts whose own
// kernel has none: Debian's user-mode-linux package ships a Linux 6.1 that
// runs as a process and carries the dm-thin modules.
//
// The binary boots as the guest's PID 1 (InitIfGuest, called first thing
// in main or TestMain), mounts /proc, /sys, devtmpfs and tmpfs on /run,
// loads the device-mapper and loop modules, and re-runs itself with the
// original arguments and environment. Its output streams back through the
// guest's second console; its exit status comes back in a file.
package umlboot

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// Environment variables.
const (
	EnvKernel   = "THINLAYER_UML_KERNEL" // path of linux.uml
	EnvMem      = "THINLAYER_UML_MEM"    // guest memory, e.g. "3G"
	EnvInKernel = "THINLAYER_IN_KERNEL"  // "uml" inside the guest
	envJob      = "THINLAYER_UML_JOB"    // on the kernel command line, for init
)

// modulesDir holds Debian's user-mode-linux modules, one dir per version.
var modulesDir = "/usr/lib/uml/modules"

// job is what the guest's init needs to re-run the binary.
type job struct {
	Exe  string
	Args []string
	Env  []string
	Dir  string
}

// InGuest reports whether this process runs inside the UML guest.
func InGuest() bool { return os.Getenv(EnvInKernel) == "uml" }

// Kernel finds the UML kernel, or says why there is none.
func Kernel() (string, error) {
	if os.Geteuid() != 0 {
		return "", errors.New("not root")
	}
	if k := os.Getenv(EnvKernel); k != "" {
		return k, nil
	}
	k, err := exec.LookPath("linux.uml")
	if err != nil {
		return "", fmt.Errorf("linux.uml not installed (Debian: apt-get install user-mode-linux)")
	}
	if _, err := os.Stat(modulesDir); err != nil {
		return "", fmt.Errorf("UML modules missing: %w", err)
	}
	return k, nil
}

// Run boots kernel with this binary as init, re-running it inside with
// args, and returns the exit status it had there. timeout bounds the boot.
func Run(kernel string, args []string, timeout time.Duration) int {
	dir, err := os.MkdirTemp("", "thinlayer-uml-")
	if err != nil {
		return fail("make job dir: %v", err)
	}
	defer os.RemoveAll(dir)
	exe, err := os.Executable()
	if err != nil {
		return fail("find own binary: %v", err)
	}
	cwd, _ := os.Getwd()
	if err := writeJSON(filepath.Join(dir, "job.json"), job{Exe: exe, Args: args, Env: guestEnv(), Dir: cwd}); err != nil {
		return fail("write job: %v", err)
	}
	console, err := os.Create(filepath.Join(dir, "console"))
	if err != nil {
		return fail("console log: %v", err)
	}
	defer console.Close()
	pr, pw, err := os.Pipe()
	if err != nil {
		return fail("pipe: %v", err)
	}
	cmd := command(kernel, exe, dir, console, pw)
	if err := cmd.Start(); err != nil {
		return fail("start %s: %v", kernel, err)
	}
	pw.Close()
	stop := killOnSignal(cmd)
	defer stop()
	copied := make(chan struct{})
	go func() { _, _ = io.Copy(os.Stdout, pr); close(copied) }()
	waitErr := waitWithTimeout(cmd, timeout)
	<-copied
	return guestStatus(dir, waitErr)
}

func command(kernel, exe, dir string, console, out *os.File) *exec.Cmd {
	mem := os.Getenv(EnvMem)
	if mem == "" {
		mem = "3G"
	}
	cmd := exec.Command(kernel,
		"mem="+mem, "root=/dev/root", "rootfstype=hostfs", "rootflags=/", "rw",
		"init="+exe, "uml_dir="+dir, "umid=tl", "con=null", "con0=null,fd:2", "con1=null,fd:3",
		envJob+"="+dir)
	cmd.Stdout = console
	cmd.Stderr = console
	cmd.ExtraFiles = []*os.File{out}
	cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "TMPDIR=" + dir}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	return cmd
}

// guestEnv is the environment the binary gets inside: ours, marked.
func guestEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "TMPDIR=") && !strings.HasPrefix(kv, EnvInKernel+"=") {
			env = append(env, kv)
		}
	}
	return append(env, EnvInKernel+"=uml")
}

// guestStatus reads the exit status the guest wrote, or explains why none.
func guestStatus(dir string, waitErr error) int {
	b, err := os.ReadFile(filepath.Join(dir, "rc"))
	if err == nil {
		var rc int
		if _, err := fmt.Sscan(string(b), &rc); err == nil {
			return rc
		}
	}
	tail, _ := os.ReadFile(filepath.Join(dir, "console"))
	if len(tail) > 4000 {
		tail = tail[len(tail)-4000:]
	}
	return fail("UML kernel gave no exit status (%v); console tail:\n%s", waitErr, tail)
}

func waitWithTimeout(cmd *exec.Cmd, d time.Duration) error {
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		return err
	case <-time.After(d):
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-done
		return fmt.Errorf("killed after %v", d)
	}
}

func killOnSignal(cmd *exec.Cmd) (stop func()) {
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, os.Interrupt, syscall.SIGTERM)
	go func() {
		if _, ok := <-ch; ok {
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		}
	}()
	return func() { signal.Stop(ch); close(ch) }
}

func writeJSON(path string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return os.WriteFile(path, b, 0o600)
}

func fail(format string, args ...any) int {
	fmt.Fprintf(os.Stderr, "uml: "+format+"\n", args...)
	return 2
}
