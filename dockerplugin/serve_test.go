package dockerplugin

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/thinlayer/thinlayer/graphdriver"
)

func TestListenReplacesStaleSocketOnly(t *testing.T) {
	path := filepath.Join(t.TempDir(), "plugins", "thinlayer.sock")
	os.MkdirAll(filepath.Dir(path), 0o755)
	// A killed plugin leaves its socket file with nobody listening.
	fd, err := syscall.Socket(syscall.AF_UNIX, syscall.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Bind(fd, &syscall.SockaddrUnix{Name: path}); err != nil {
		t.Fatal(err)
	}
	syscall.Close(fd)

	l, err := Listen(path)
	if err != nil {
		t.Fatalf("stale socket not replaced: %v", err)
	}
	defer l.Close()
	if _, err := Listen(path); !errors.Is(err, ErrSocketInUse) {
		t.Fatalf("second Listen on a live socket: %v, want ErrSocketInUse", err)
	}
}

func TestServeStopsCleansAndRemovesSocket(t *testing.T) {
	path := filepath.Join(t.TempDir(), "p.sock")
	l, err := Listen(path)
	if err != nil {
		t.Fatal(err)
	}
	fd := &fakeDriver{}
	h := NewHandler(Config{Init: func(string, []string, graphdriver.IdentityMapping) (graphdriver.Driver, error) { return fd, nil }})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- Serve(ctx, l, h) }()

	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	c.Write([]byte("POST /GraphDriver.Init HTTP/1.1\r\nHost: x\r\nContent-Length: 13\r\nConnection: close\r\n\r\n{\"Home\":\"/h\"}"))
	buf := make([]byte, 512)
	n, _ := c.Read(buf)
	c.Close()
	if string(buf[:12]) != "HTTP/1.1 200" {
		t.Fatalf("Init over the socket: %q", buf[:n])
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Serve: %v", err)
	}
	if fd.cleaned != 1 {
		t.Fatalf("driver cleaned %d times at shutdown, want 1", fd.cleaned)
	}
	if _, err := os.Lstat(path); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("socket left behind: %v", err)
	}
}
