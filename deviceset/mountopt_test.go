package deviceset

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/thinlayer/thinlayer/fsutil"
)

// dm.mountopt is checked where it comes in (ParseOptions) and again at
// Open, for a Config made by hand: quotes, empty items and options that
// change what a mount is never reach mount(2).
func TestHostileMountOptions(t *testing.T) {
	for _, v := range []string{`discard,"`, `context="a:b:c:s0:c1,c2"`, "rw", "remount", "bind", "rprivate",
		",discard", "discard,,noatime", strings.Repeat("discard,", 511) + `discard,"`} {
		_, err := ParseOptions([]string{"dm.mountopt=" + v})
		if !errors.Is(err, fsutil.ErrMountOption) || !strings.Contains(err.Error(), "dm.mountopt") {
			t.Errorf("ParseOptions(dm.mountopt=%.40q): %v, want ErrMountOption naming dm.mountopt", v, err)
		}
		home := filepath.Join(t.TempDir(), "home")
		cfg := DefaultConfig()
		cfg.MountOptions = v
		if _, err := Open(home, cfg, OpenOptions{ReadOnly: true}); !errors.Is(err, fsutil.ErrMountOption) {
			t.Errorf("Open with MountOptions %.40q: %v, want ErrMountOption", v, err)
		}
		if _, err := os.Stat(home); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("Open with MountOptions %.40q touched the home: %v", v, err)
		}
	}
	// Two valid halves whose join is refused too.
	if _, err := ParseOptions([]string{"dm.mountopt=discard", "dm.mountopt=rw"}); !errors.Is(err, fsutil.ErrMountOption) {
		t.Errorf("dm.mountopt=rw after another: %v", err)
	}
	cfg, err := ParseOptions([]string{"dm.mountopt=discard", "dm.mountopt=noatime,nouuid"})
	if err != nil || cfg.MountOptions != "discard,noatime,nouuid" {
		t.Errorf("valid dm.mountopt: %q %v", cfg.MountOptions, err)
	}
}
