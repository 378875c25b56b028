package cli

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/thinlayer/thinlayer/dockerstore"
)

// TestWriteArchiveRemovesFailed: a save or commit that fails leaves no
// archive behind (the kernel test saw one left, before the fix).
func TestWriteArchiveRemovesFailed(t *testing.T) {
	out := filepath.Join(t.TempDir(), "a.tar")
	c := &call{flags: &cmdFlags{output: out}, env: Env{Stdout: io.Discard, Stderr: io.Discard}}
	err := writeArchive(c, func(w io.Writer) (*dockerstore.SaveReport, error) {
		w.Write([]byte("half"))
		return nil, dockerstore.ErrLayerMismatch
	})
	if !errors.Is(err, dockerstore.ErrLayerMismatch) {
		t.Fatalf("err %v", err)
	}
	if _, err := os.Stat(out); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the failed archive is still there: %v", err)
	}
}
