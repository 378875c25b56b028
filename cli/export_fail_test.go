package cli

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
)

// TestExportFailureRemovesOutput: an export -o that fails leaves no file
// (the deferred removal used to see the open's shadowed err, always nil).
func TestExportFailureRemovesOutput(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "layer.tar")
	c := &call{
		home:  Home{Dir: filepath.Join(dir, "no-such-home")},
		flags: &cmdFlags{output: out},
		args:  []string{"layer"},
		env:   Env{Stdout: io.Discard, Stderr: io.Discard},
	}
	if err := runExport(c); err == nil {
		t.Fatal("export from a home that does not exist succeeded")
	}
	if _, err := os.Stat(out); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the failed export left %s: %v", out, err)
	}
}
