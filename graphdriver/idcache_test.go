package graphdriver_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"golang.org/x/sys/unix"
)

// TestCleanInitKeepsIDIndex: a clean Cleanup keeps the thin id index
// beside the metadata, and an Init and Cleanup that change nothing write
// nothing under metadata/, so the next Init's first create can take it
// instead of reading every DevInfo (deviceset/idcache.go).
func TestCleanInitKeepsIDIndex(t *testing.T) {
	home := t.TempDir()
	d := newDriver(t, home, testOptions("ext4"))
	mustCreate(t, d, "a", "")
	meta, err := d.GetMetadata("a")
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Cleanup(); err != nil {
		t.Fatal(err)
	}
	var kept struct {
		Layers map[string]struct{ ID int }
	}
	b, err := os.ReadFile(filepath.Join(home, ".thinlayer-ids"))
	if err != nil {
		t.Fatalf("no index kept: %v", err)
	}
	if err := json.Unmarshal(b, &kept); err != nil {
		t.Fatal(err)
	}
	if id, _ := strconv.Atoi(meta["DeviceId"]); kept.Layers["a"].ID != id {
		t.Errorf("kept index names %d for a, want %d: %s", kept.Layers["a"].ID, id, b)
	}
	before := stamp(t, filepath.Join(home, "metadata"))
	d = newDriver(t, home, testOptions("ext4"))
	if err := d.Cleanup(); err != nil {
		t.Fatal(err)
	}
	if after := stamp(t, filepath.Join(home, "metadata")); after != before {
		t.Errorf("an Init and Cleanup that changed nothing wrote under metadata/: %v, then %v", before, after)
	}
}

func stamp(t *testing.T, dir string) [2]int64 {
	var st unix.Stat_t
	if err := unix.Stat(dir, &st); err != nil {
		t.Fatal(err)
	}
	return [2]int64{st.Mtim.Nano(), st.Ctim.Nano()}
}
