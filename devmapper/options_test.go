package devmapper

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"
)

// TestOpenWithControlPath: the control node is an option, not a global a
// test (or an importer) would have to overwrite.
func TestOpenWithControlPath(t *testing.T) {
	path := filepath.Join(t.TempDir(), "control")
	_, err := OpenWith(Options{ControlPath: path})
	if !errors.Is(err, ErrNotSupported) || !strings.Contains(err.Error(), path) {
		t.Fatalf("OpenWith a missing control node: %v, want ErrNotSupported naming %s", err, path)
	}
}
