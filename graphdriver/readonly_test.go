package graphdriver_test

import (
	"crypto/sha256"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/thinlayer/thinlayer/deviceset"
	dm "github.com/thinlayer/thinlayer/devmapper"
)

// homeDigest hashes every file under the home's metadata dir and the
// pool's metadata file: what a read-only open must leave as it found it.
func homeDigest(t *testing.T, home string) map[string][32]byte {
	out := map[string][32]byte{}
	files, _ := filepath.Glob(filepath.Join(home, "metadata", "*"))
	files = append(files, filepath.Join(home, "devicemapper", "metadata"))
	for _, f := range files {
		h := sha256.New()
		r, err := os.Open(f)
		must(t, err)
		_, err = io.Copy(h, r)
		r.Close()
		must(t, err)
		var sum [32]byte
		copy(sum[:], h.Sum(nil))
		out[f] = sum
	}
	return out
}

func TestReadOnlyOpen(t *testing.T) {
	home := t.TempDir()
	d := newDriver(t, home, testOptions("ext4"))
	mustCreate(t, d, "a", "")
	writeFile(t, get(t, d, "a")+"/f", "look, don't touch", 0o644, 0, 0)
	put(t, d, "a")
	must(t, d.Cleanup())
	before := homeDigest(t, home)

	cfg, err := deviceset.ParseOptions(testOptions("ext4"))
	must(t, err)
	ds, err := deviceset.Open(home, cfg, deviceset.OpenOptions{ReadOnly: true})
	must(t, err)
	if _, err := deviceset.New(home, cfg); !errors.Is(err, deviceset.ErrHomeLocked) {
		t.Fatalf("a writer got in while a reader held the home: %v", err)
	}
	hashes, err := ds.List()
	must(t, err)
	if len(hashes) != 2 {
		t.Fatalf("List: %q", hashes)
	}
	if err := ds.AddDevice("b", "a", nil); !errors.Is(err, deviceset.ErrReadOnly) {
		t.Fatalf("AddDevice on a read-only home: %v", err)
	}
	if err := ds.DeleteDevice("a", true); !errors.Is(err, deviceset.ErrReadOnly) {
		t.Fatalf("DeleteDevice on a read-only home: %v", err)
	}
	mnt := t.TempDir()
	must(t, ds.MountDevice("a", mnt, ""))
	m, err := ds.Metadata("a")
	must(t, err)
	c, err := dm.Open()
	must(t, err)
	info, err := c.Info(m.DeviceName)
	c.Close()
	if err != nil || !info.ReadOnly {
		t.Fatalf("device of a read-only open's mount: %+v %v, want a read-only table", info, err)
	}
	if b, err := os.ReadFile(mnt + "/rootfs/f"); err != nil || string(b) != "look, don't touch" {
		t.Fatalf("read-only mount reads %q %v", b, err)
	}
	if err := os.WriteFile(mnt+"/rootfs/g", nil, 0o644); err == nil || !strings.Contains(err.Error(), "read-only") {
		t.Fatalf("write to a read-only mount: %v", err)
	}
	must(t, ds.UnmountDevice("a", mnt))
	st, err := ds.Status()
	must(t, err)
	if st.Pool.Mode != dm.PoolModeReadOnly {
		t.Fatalf("pool of a read-only open is in mode %v", st.Pool.Mode)
	}
	must(t, ds.Shutdown())

	after := homeDigest(t, home)
	for f, sum := range before {
		if after[f] != sum {
			t.Errorf("%s changed by a read-only open", f)
		}
	}
	if len(after) != len(before) {
		t.Errorf("files in the home: %d before, %d after", len(before), len(after))
	}
	if _, err := deviceset.Open(t.TempDir(), cfg, deviceset.OpenOptions{ReadOnly: true}); !errors.Is(err, deviceset.ErrNotHome) {
		t.Fatalf("read-only open of an empty dir: %v", err)
	}
}
