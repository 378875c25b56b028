package deviceset

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/sirupsen/logrus"

	dm "github.com/thinlayer/thinlayer/devmapper"
)

func idCacheHome(t *testing.T) *DeviceSet {
	home := t.TempDir()
	s := store{dir: filepath.Join(home, "metadata")}
	if err := os.MkdirAll(s.dir, 0o700); err != nil {
		t.Fatal(err)
	}
	return &DeviceSet{home: home, store: s, devices: map[string]*DevInfo{}, log: logrus.StandardLogger()}
}

func reopen(ds *DeviceSet) *DeviceSet {
	return &DeviceSet{home: ds.home, store: ds.store, devices: map[string]*DevInfo{}, log: ds.log}
}

func owner(ds *DeviceSet, id dm.ThinID) []string {
	x := ds.index()
	x.mu.Lock()
	defer x.mu.Unlock()
	return slices.Clone(x.owners[id])
}

// TestIDCache: the index a Shutdown kept is taken while the metadata
// directory is as it was, and read again from the DevInfos once a layer
// came or went.
func TestIDCache(t *testing.T) {
	ds := idCacheHome(t)
	for i, h := range []string{"", "a", "b"} {
		if err := ds.store.saveDevice(&DevInfo{Hash: h, DeviceID: dm.ThinID(i + 1), Size: 1 << 20}); err != nil {
			t.Fatal(err)
		}
	}
	if got := owner(ds, 2); !slices.Equal(got, []string{"a"}) {
		t.Fatalf("built index: id 2 owned by %q", got)
	}
	if err := ds.saveIDCache(); err != nil {
		t.Fatal(err)
	}
	// Overwritten in place (no rename: the directory does not change), a
	// DevInfo's new id is not seen: the kept index was used.
	if err := os.WriteFile(filepath.Join(ds.store.dir, "a"), []byte(`{"device_id":7,"size":1048576}`), 0o600); err != nil {
		t.Fatal(err)
	}
	next := reopen(ds)
	if got := owner(next, 2); !slices.Equal(got, []string{"a"}) {
		t.Fatalf("reopened with the kept index: id 2 owned by %q, want a (from the kept index)", got)
	}
	// A layer made since: the kept index no longer holds.
	if err := ds.store.saveDevice(&DevInfo{Hash: "c", DeviceID: 4, Size: 1 << 20}); err != nil {
		t.Fatal(err)
	}
	last := reopen(ds)
	if got, old := owner(last, 7), owner(last, 2); !slices.Equal(got, []string{"a"}) || len(old) != 0 {
		t.Fatalf("after a new layer: id 7 owned by %q, id 2 by %q; want the DevInfos read again", got, old)
	}
	if got := owner(last, 4); !slices.Equal(got, []string{"c"}) {
		t.Fatalf("after a new layer: id 4 owned by %q", got)
	}
}

// TestIDCacheDamaged: a kept index that is not JSON, names another set of
// layers, or holds an id out of range is not taken.
func TestIDCacheDamaged(t *testing.T) {
	for name, body := range map[string]string{
		"not json":     `{`,
		"other layers": `{"metadata_dir":STAMP,"ids":{"":1,"zz":2}}`,
		"bad id":       `{"metadata_dir":STAMP,"ids":{"":1,"a":16777216}}`,
		"good":         `{"metadata_dir":STAMP,"ids":{"":1,"a":5}}`,
	} {
		t.Run(name, func(t *testing.T) {
			ds := idCacheHome(t)
			for i, h := range []string{"", "a"} {
				if err := ds.store.saveDevice(&DevInfo{Hash: h, DeviceID: dm.ThinID(i + 1), Size: 1 << 20}); err != nil {
					t.Fatal(err)
				}
			}
			stamp, err := stampOf(ds.store.dir)
			if err != nil {
				t.Fatal(err)
			}
			js, _ := json.Marshal(stamp)
			if err := os.WriteFile(ds.idCachePath(), []byte(strings.ReplaceAll(body, "STAMP", string(js))), 0o600); err != nil {
				t.Fatal(err)
			}
			want, id := []string{"a"}, dm.ThinID(2) // read from the DevInfos
			if name == "good" {
				id = 5 // the control: a kept index that holds is taken
			}
			if got := owner(ds, id); !slices.Equal(got, want) {
				t.Fatalf("id %d owned by %q, want %q", id, got, want)
			}
		})
	}
}
