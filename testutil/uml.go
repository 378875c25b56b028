package testutil

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
	"testing"
	"time"
)

// The host side of the harness: boot UML with this binary as init.

// UML settings, overridable from the environment.
const (
	EnvUMLKernel = "THINLAYER_UML_KERNEL" // path of linux.uml
	EnvUMLMem    = "THINLAYER_UML_MEM"    // guest memory, e.g. "3G"
	envJob       = "THINLAYER_UML_JOB"    // set on the kernel command line for init
)

// umlModulesDir holds Debian's user-mode-linux modules, one dir per version.
var umlModulesDir = "/usr/lib/uml/modules"

// job is what the guest's init needs to re-run the test binary.
type job struct {
	Exe  string
	Args []string
	Env  []string
	Dir  string
}

// Main runs the tests in m where a kernel with dm-thin can be had, booting
// UML when the host's kernel can't, and exits with their status.
func Main(m *testing.M) {
	if os.Getpid() == 1 && os.Getenv(envJob) != "" {
		guestInit(os.Getenv(envJob)) // never returns
	}
	if InUML() || os.Getenv(EnvNoUML) == "1" || hostOnlyRun() || KernelUsable() == nil {
		os.Exit(m.Run())
	}
	kernel, err := umlKernel()
	if err == nil && raceEnabled {
		err = errors.New("a -race binary cannot run in UML (ThreadSanitizer needs a 47-bit address space): run kernel tests without -race")
	}
	if err != nil {
		umlUnavailable = err
		fmt.Fprintf(os.Stderr, "testutil: no dm-thin here (%v) and no UML (%v): kernel tests will skip\n", KernelUsable(), err)
		os.Exit(m.Run())
	}
	os.Exit(runInUML(kernel))
}

// umlUnavailable says why Main did not boot UML, for RequireKernel's message.
var umlUnavailable error

// hostOnlyRun is true for runs that need no kernel: listing tests, and the
// fuzzing engine with its workers.
func hostOnlyRun() bool {
	for _, a := range os.Args[1:] {
		if strings.HasPrefix(a, "-test.list") || strings.HasPrefix(a, "-test.fuzz") {
			return true
		}
	}
	return false
}

func umlKernel() (string, error) {
	if os.Geteuid() != 0 {
		return "", errors.New("not root")
	}
	if k := os.Getenv(EnvUMLKernel); k != "" {
		return k, nil
	}
	k, err := exec.LookPath("linux.uml")
	if err != nil {
		return "", fmt.Errorf("linux.uml not installed (Debian: apt-get install user-mode-linux)")
	}
	if _, err := os.Stat(umlModulesDir); err != nil {
		return "", fmt.Errorf("UML modules missing: %w", err)
	}
	return k, nil
}

// runInUML boots the kernel with this binary as init and returns the exit
// status the tests had inside. Output streams through a pipe on the guest's
// second console.
func runInUML(kernel string) int {
	dir, err := os.MkdirTemp("", "thinlayer-uml-")
	if err != nil {
		return fail("make job dir: %v", err)
	}
	defer os.RemoveAll(dir)
	exe, err := os.Executable()
	if err != nil {
		return fail("find test binary: %v", err)
	}
	cwd, _ := os.Getwd()
	j := job{Exe: exe, Args: os.Args[1:], Env: guestEnv(), Dir: cwd}
	if err := writeJSON(filepath.Join(dir, "job.json"), j); err != nil {
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
	cmd := umlCommand(kernel, exe, dir, console, pw)
	if err := cmd.Start(); err != nil {
		return fail("start %s: %v", kernel, err)
	}
	pw.Close()
	stop := killOnSignal(cmd)
	defer stop()
	copyDone := make(chan struct{})
	go func() { _, _ = io.Copy(stripCR{os.Stdout}, pr); close(copyDone) }()
	waitErr := waitWithTimeout(cmd, testTimeout()+2*time.Minute)
	<-copyDone
	return guestStatus(dir, waitErr)
}

func umlCommand(kernel, exe, dir string, console, out *os.File) *exec.Cmd {
	mem := os.Getenv(EnvUMLMem)
	if mem == "" {
		mem = "3G"
	}
	cmd := exec.Command(kernel,
		"mem="+mem, "root=/dev/root", "rootfstype=hostfs", "rootflags=/", "rw",
		"init="+exe, "uml_dir="+dir, "umid=tl", "con=null", "con0=null,fd:2", "con1=null,fd:3",
		envJob+"="+dir)
	cmd.Stdin = nil
	cmd.Stdout = console
	cmd.Stderr = console
	cmd.ExtraFiles = []*os.File{out}
	cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "TMPDIR=" + dir}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	return cmd
}

// guestEnv is the environment the tests get inside: ours, marked as in UML.
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

// testTimeout is -test.timeout from our arguments, or go test's default.
func testTimeout() time.Duration {
	for i, a := range os.Args {
		v, ok := strings.CutPrefix(a, "-test.timeout=")
		if !ok && a == "-test.timeout" && i+1 < len(os.Args) {
			v, ok = os.Args[i+1], true
		}
		if d, err := time.ParseDuration(v); ok && err == nil && d > 0 {
			return d
		}
	}
	return 10 * time.Minute
}

func writeJSON(path string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return os.WriteFile(path, b, 0o600)
}

func fail(format string, args ...any) int {
	fmt.Fprintf(os.Stderr, "testutil: "+format+"\n", args...)
	return 2
}

// stripCR undoes the tty's \n -> \r\n in case the guest could not set raw mode.
type stripCR struct{ w io.Writer }

func (s stripCR) Write(p []byte) (int, error) {
	if !strings.Contains(string(p), "\r\n") {
		return s.w.Write(p)
	}
	_, err := s.w.Write([]byte(strings.ReplaceAll(string(p), "\r\n", "\n")))
	return len(p), err
}
