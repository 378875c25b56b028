package enginetest

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"sync"
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

func start(t testing.TB, name, log string, env []string, bin string, args ...string) *proc {
	t.Helper()
	return startTee(t, name, log, env, nil, bin, args...)
}

// startTee is start with the output also written to tee, when not nil.
func startTee(t testing.TB, name, log string, env []string, tee io.Writer, bin string, args ...string) *proc {
	t.Helper()
	f, err := os.OpenFile(log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = f, f
	if tee != nil {
		w := io.MultiWriter(f, tee) // one writer: exec copies both streams through one pipe
		cmd.Stdout, cmd.Stderr = w, w
	}
	cmd.Env = append(os.Environ(), env...)
	if err := cmd.Start(); err != nil {
		f.Close()
		t.Fatalf("start %s: %v", name, err)
	}
	p := &proc{name: name, log: log, cmd: cmd, exited: make(chan error, 1)}
	go func() {
		err := cmd.Wait() // with a tee, the output is copied through f until the exit
		f.Close()
		p.exited <- err
	}()
	t.Cleanup(func() { p.kill() })
	return p
}

// waitSocket waits until sock accepts a connection or the process exits.
func (p *proc) waitSocket(t testing.TB, sock string) {
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
func (p *proc) stop(t testing.TB) {
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
	if p == nil {
		return "" // a daemon this test did not start (no plugin on Docker's own driver)
	}
	b, _ := os.ReadFile(p.log)
	if len(b) > 6000 {
		b = b[len(b)-6000:]
	}
	return fmt.Sprintf("--- %s log (tail) ---\n%s", p.name, b)
}

// lineTap watches a daemon's output. Armed, it calls then with the n-th
// line containing want, from the goroutine that copies the output, so the
// call comes while the daemon goes on past that line.
type lineTap struct {
	mu   sync.Mutex
	part []byte // an unfinished line
	want string
	n    int
	then func(line string)
}

func (l *lineTap) arm(want string, n int, then func(line string)) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.part, l.want, l.n, l.then = nil, want, n, then
}

func (l *lineTap) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.part = append(l.part, p...)
	for {
		i := bytes.IndexByte(l.part, '\n')
		if i < 0 {
			return len(p), nil
		}
		line := l.part[:i]
		l.part = l.part[i+1:]
		if l.then != nil && bytes.Contains(line, []byte(l.want)) {
			if l.n--; l.n == 0 {
				l.then(string(line))
				l.then = nil
			}
		}
	}
}
