package cli_test

import (
	"encoding/json"
	"maps"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/thinlayer/thinlayer/cli"
	dm "github.com/thinlayer/thinlayer/devmapper"
)

// A layer's DevInfo replaced by a symlink (to a good copy of itself) or a
// FIFO still names the layer's thin id. Before the one rule for odd files,
// listDevices skipped both while the loaders followed the link, so gc took
// the live layer's thin id for an orphan and deleted its data. gc must not
// hang, must delete nothing and say what to fix; with the file put back
// the layer is whole.
func TestGCSparesOddDevInfo(t *testing.T) {
	for _, kind := range []string{"symlink", "fifo"} {
		t.Run(kind, func(t *testing.T) {
			h := newHome(t)
			want := layerFiles(t, h, "ctr")
			p := filepath.Join(h.Dir, "metadata", "ctr")
			b, err := os.ReadFile(p)
			must(t, err)
			var info struct {
				DeviceID dm.ThinID `json:"device_id"`
			}
			must(t, json.Unmarshal(b, &info))
			must(t, os.Remove(p))
			if kind == "symlink" {
				good := filepath.Join(h.Dir, "ctr.devinfo")
				must(t, os.WriteFile(good, b, 0o600))
				must(t, os.Symlink(good, p))
			} else {
				must(t, unix.Mkfifo(p, 0o600))
			}
			g := gcWithin(t, h, time.Minute)
			if len(g.Orphans) != 0 || g.Err() == nil {
				t.Errorf("gc with ctr's DevInfo a %s: %+v, want no orphan and a failure to fix", kind, g)
			}
			if thinIDFree(t, h, info.DeviceID) {
				t.Fatalf("gc deleted thin device %d, which ctr's DevInfo (a %s) names", info.DeviceID, kind)
			}
			must(t, os.Remove(p))
			must(t, os.WriteFile(p, b, 0o600))
			if got := layerFiles(t, h, "ctr"); !maps.Equal(got, want) {
				t.Fatalf("ctr after gc: %v, want %v", got, want)
			}
		})
	}
}

// gcWithin runs gc, failing the test if it does not return in time.
func gcWithin(t *testing.T, h cli.Home, limit time.Duration) *cli.GCReport {
	t.Helper()
	type result struct {
		r   *cli.GCReport
		err error
	}
	done := make(chan result, 1)
	go func() { r, err := h.GC(false); done <- result{r, err} }()
	select {
	case res := <-done:
		must(t, res.err)
		return res.r
	case <-time.After(limit):
		t.Fatal("gc hangs")
		return nil
	}
}
