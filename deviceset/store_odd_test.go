package deviceset

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Odd files in metadata/: a FIFO, a symlink (to a good DevInfo), a
// directory, a socket. Every reader refuses each with ErrCorruptMetadata
// at once (a FIFO opened blocking would hang it), and listDevices lists
// each DevInfo-looking one, so that no caller takes the id it might hold
// for free.
func TestStoreOddFiles(t *testing.T) {
	good := `{"device_id":5,"size":1048576,"transaction_id":1}`
	odd := map[string]func(t *testing.T, p string){
		"fifo": func(t *testing.T, p string) { must(t, unix.Mkfifo(p, 0o600)) },
		"symlink": func(t *testing.T, p string) {
			real := filepath.Join(filepath.Dir(filepath.Dir(p)), "real")
			must(t, os.WriteFile(real, []byte(good), 0o600))
			must(t, os.Symlink(real, p))
		},
		"dir": func(t *testing.T, p string) { must(t, os.Mkdir(p, 0o700)) },
		"socket": func(t *testing.T, p string) {
			l, err := net.Listen("unix", p)
			must(t, err)
			t.Cleanup(func() { l.Close() })
		},
	}
	for kind, make := range odd {
		t.Run(kind, func(t *testing.T) {
			s := store{dir: filepath.Join(t.TempDir(), "metadata")}
			must(t, os.Mkdir(s.dir, 0o700))
			must(t, os.WriteFile(s.path("fine"), []byte(good), 0o600))
			make(t, s.path("layer"))
			make(t, s.path(transactionFile))
			make(t, s.path(deviceSetFile))
			within(t, "loadDevice", func() error { _, err := s.loadDevice("layer"); return err })
			within(t, "loadTransaction", func() error { _, _, err := s.loadTransaction(); return err })
			within(t, "readJSON", func() error { var m setMetadata; _, err := s.readJSON(deviceSetFile, &m); return err })
			hashes, err := s.listDevices()
			if err != nil || !slices.Contains(hashes, "layer") || !slices.Contains(hashes, "fine") {
				t.Errorf("listDevices: %v %v, want layer (odd) and fine listed", hashes, err)
			}
			if _, err := s.loadDevice("fine"); err != nil {
				t.Errorf("the good DevInfo beside it: %v", err)
			}
		})
	}
}

// within runs read, which must fail with ErrCorruptMetadata saying the
// file is not a regular one, in a few seconds (a hang is the bug).
func within(t *testing.T, what string, read func() error) {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- read() }()
	select {
	case err := <-done:
		if !errors.Is(err, ErrCorruptMetadata) || !strings.Contains(err.Error(), "not a regular file") {
			t.Errorf("%s of an odd file: %v, want ErrCorruptMetadata (not a regular file)", what, err)
		}
	case <-time.After(5 * time.Second):
		t.Errorf("%s of an odd file hangs", what)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
