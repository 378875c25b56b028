package enginetest

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"
)

// wait bounds every wait on a daemon: starts are slow in UML (dockerd and
// containerd exec a lot) and slower still on a loaded CI machine.
const wait = 3 * time.Minute

// proc is a daemon the test started, its output in log.
type proc struct {
	name, log string
	cmd       *exec.Cmd
	exited    chan error
}

func start(t *testing.T, name, log string, env []string, bin string, args ...string) *proc {
	t.Helper()
	f, err := os.OpenFile(log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.Env = append(os.Environ(), env...)
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	p := &proc{name: name, log: log, cmd: cmd, exited: make(chan error, 1)}
	go func() { p.exited <- cmd.Wait() }()
	t.Cleanup(func() { p.kill() })
	return p
}

// waitSocket waits until sock accepts a connection or the process exits.
func (p *proc) waitSocket(t *testing.T, sock string) {
	t.Helper()
	deadline := time.Now().Add(wait)
	for time.Now().Before(deadline) {
		if c, err := net.Dial("unix", sock); err == nil {
			c.Close()
			return
		}
		select {
		case err := <-p.exited:
			p.exited <- err
			t.Fatalf("%s exited before serving %s: %v\n%s", p.name, sock, err, p.tail())
		case <-time.After(100 * time.Millisecond):
		}
	}
	t.Fatalf("%s not serving %s after %v\n%s", p.name, sock, wait, p.tail())
}

// stop sends SIGTERM and waits for the exit; a non-zero exit fails the test.
func (p *proc) stop(t *testing.T) {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		t.Errorf("SIGTERM %s: %v", p.name, err)
	}
	select {
	case err := <-p.exited:
		p.exited <- err
		if err != nil {
			t.Errorf("%s exited: %v\n%s", p.name, err, p.tail())
		}
	case <-time.After(wait):
		p.kill()
		t.Fatalf("%s did not stop within %v of SIGTERM\n%s", p.name, wait, p.tail())
	}
}

func (p *proc) kill() {
	_ = p.cmd.Process.Kill() // ErrProcessDone once it has exited
	err := <-p.exited
	p.exited <- err
}

func (p *proc) tail() string {
	b, _ := os.ReadFile(p.log)
	if len(b) > 6000 {
		b = b[len(b)-6000:]
	}
	return fmt.Sprintf("--- %s log (tail) ---\n%s", p.name, b)
}
