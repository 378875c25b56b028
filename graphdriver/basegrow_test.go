package graphdriver_test

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	gd "github.com/thinlayer/thinlayer/graphdriver"
	"github.com/thinlayer/thinlayer/internal/faults"
	"github.com/thinlayer/thinlayer/testutil"
)

// A larger dm.basesize whose grow fails: Init says so, and the home is
// left at one consistent size — the base's DevInfo, its device and its
// filesystem agree — and opens again, with the old dm.basesize when the
// filesystem had not grown yet, with the new one when it had. Before the
// grow was made atomic, a failed resize left the DevInfo at the new size:
// Init with the old dm.basesize then refused the home ("it can only grow").
func TestBaseGrowFailureLeavesHomeOpenable(t *testing.T) {
	testutil.RequireFaults(t)
	cases := []struct {
		point    string // where the grow fails
		fsGrown  bool   // the filesystem had grown by then
		openWith string // the dm.basesize the home opens with after
	}{
		{"grow.fs", false, "128MB"},  // before the resize: undone
		{"grow.done", true, "256MB"}, // after it: kept, and finished at the next Init
		{"basesize.grow", false, "128MB"},
	}
	for _, c := range cases {
		t.Run(c.point, func(t *testing.T) {
			home := t.TempDir()
			opts := func(size string) []string { return walkOptions("dm.basesize=" + size) }
			d := newDriver(t, home, opts("128MB"))
			mustCreate(t, d, "old", "")
			writeFile(t, get(t, d, "old")+"/f", "from before", 0o644, 0, 0)
			put(t, d, "old")
			must(t, d.Cleanup())

			faults.Arm(c.point, 1, false)
			_, err := gd.Init(home, opts("256MB"), gd.IdentityMapping{})
			faults.SetHook(nil)
			if !errors.Is(err, faults.ErrInjected) {
				t.Fatalf("Init growing the base with %s failing: %v", c.point, err)
			}
			want := uint64(128 << 20)
			if c.fsGrown {
				want = 256 << 20
			}
			if got := baseDevInfoSize(t, home); got != want {
				t.Errorf("base DevInfo after the failed grow: %d bytes, want %d", got, want)
			}

			d = newDriver(t, home, opts(c.openWith))
			checkBaseSize(t, d, want)
			if got := readFileString(t, get(t, d, "old")+"/f"); got != "from before" {
				t.Errorf("old: %q", got)
			}
			put(t, d, "old")
			must(t, d.Cleanup())
			if _, err := os.Lstat(filepath.Join(home, "metadata", ".grow-base")); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("grow record left after the reopen: %v", err)
			}
			// The grow can be asked for again, and is done.
			d = newDriver(t, home, opts("256MB"))
			checkBaseSize(t, d, 256<<20)
		})
	}
}

// baseDevInfoSize reads the size the base's DevInfo records.
func baseDevInfoSize(t *testing.T, home string) uint64 {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(home, "metadata", "base"))
	must(t, err)
	var info struct {
		Size uint64 `json:"size"`
	}
	must(t, json.Unmarshal(b, &info))
	return info.Size
}

// checkBaseSize: the base's DevInfo and a new layer's filesystem show
// size bytes.
func checkBaseSize(t *testing.T, d gd.Driver, size uint64) {
	t.Helper()
	mustCreate(t, d, "probe", "")
	got := testutil.FSSize(t, get(t, d, "probe"))
	put(t, d, "probe")
	must(t, d.Remove("probe"))
	if got > size || got < size*8/10 {
		t.Errorf("a new layer's filesystem is %d bytes, want about %d", got, size)
	}
	if row := statusRow(d, "Base Device Size"); !strings.HasPrefix(row, map[uint64]string{128 << 20: "134.2", 256 << 20: "268.4"}[size]) {
		t.Errorf("Base Device Size %s, want %d bytes", row, size)
	}
}

// A base grow a crash interrupted, as a kill inside the resize leaves the
// home: the intent record (128 MB to 256 MB), the base's DevInfo already
// at 256 MB, the grow mark, the filesystem still at 128 MB. Init with the
// old dm.basesize undoes it; with the new one, finishes it.
func TestBaseGrowInterrupted(t *testing.T) {
	for _, c := range []struct {
		openWith string
		want     uint64
	}{{"128MB", 128 << 20}, {"256MB", 256 << 20}} {
		t.Run(c.openWith, func(t *testing.T) {
			home := t.TempDir()
			opts := func(size string) []string { return walkOptions("dm.basesize=" + size) }
			d := newDriver(t, home, opts("128MB"))
			must(t, d.Cleanup())
			rec := `{"from":134217728,"to":268435456}`
			must(t, os.WriteFile(filepath.Join(home, "metadata", ".grow-base"), []byte(rec), 0o600))
			setBaseDevInfoSize(t, home, 256<<20)
			must(t, os.MkdirAll(filepath.Join(home, "mnt", ".grow-base"), 0o700))

			d = newDriver(t, home, opts(c.openWith))
			checkBaseSize(t, d, c.want)
			must(t, d.Cleanup())
			if got := baseDevInfoSize(t, home); got != c.want {
				t.Errorf("base DevInfo: %d bytes, want %d", got, c.want)
			}
			for _, left := range []string{"metadata/.grow-base", "mnt/.grow-base"} {
				if _, err := os.Lstat(filepath.Join(home, left)); !errors.Is(err, os.ErrNotExist) {
					t.Errorf("%s left: %v", left, err)
				}
			}
		})
	}
}

func setBaseDevInfoSize(t *testing.T, home string, size uint64) {
	t.Helper()
	p := filepath.Join(home, "metadata", "base")
	b, err := os.ReadFile(p)
	must(t, err)
	var m map[string]any
	must(t, json.Unmarshal(b, &m))
	m["size"] = size
	b, err = json.Marshal(m)
	must(t, err)
	must(t, os.WriteFile(p, b, 0o600))
}
