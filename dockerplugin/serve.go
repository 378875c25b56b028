package dockerplugin

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"syscall"
)

// DefaultSocketDir is where dockerd looks for legacy plugins' sockets.
const DefaultSocketDir = "/run/docker/plugins"

// ErrSocketInUse: another process answers on the plugin's socket.
var ErrSocketInUse = errors.New("dockerplugin: socket in use")

// Listen makes the plugin's unix socket, replacing a stale one a killed
// plugin left, but never one a live process still answers on.
func Listen(path string) (net.Listener, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("dockerplugin: socket directory: %w", err)
	}
	if c, err := net.Dial("unix", path); err == nil {
		c.Close()
		return nil, fmt.Errorf("%w: %s", ErrSocketInUse, path)
	} else if errors.Is(err, syscall.ECONNREFUSED) {
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("dockerplugin: stale socket: %w", err)
		}
	}
	l, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("dockerplugin: listen: %w", err)
	}
	if err := os.Chmod(path, 0o660); err != nil {
		l.Close()
		return nil, fmt.Errorf("dockerplugin: socket mode: %w", err)
	}
	return l, nil
}

// Serve answers Docker on l until ctx ends, then stops taking calls, waits
// for those in flight, releases the driver as Docker's Cleanup does and
// removes the socket.
func Serve(ctx context.Context, l net.Listener, h *Handler) error {
	srv := &http.Server{Handler: h}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(l) }()
	select {
	case err := <-done:
		return errors.Join(err, h.Cleanup())
	case <-ctx.Done():
	}
	// Calls in flight (an ApplyDiff of a large layer) are let finish: a
	// half-applied layer is one Docker would have to throw away.
	err := srv.Shutdown(context.Background())
	return errors.Join(err, h.Cleanup())
}
