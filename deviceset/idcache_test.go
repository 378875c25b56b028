package deviceset

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/sirupsen/logrus"

	dm "github.com/thinlayer/thinlayer/devmapper"
)

func idCacheHome(t *testing.T, ids map[string]dm.ThinID) *DeviceSet {
	home := t.TempDir()
	s := store{dir: filepath.Join(home, "metadata")}
	if err := os.MkdirAll(s.dir, 0o700); err != nil {
		t.Fatal(err)
	}
	ds := &DeviceSet{home: home, store: s, devices: map[string]*DevInfo{}, log: logrus.StandardLogger()}
	for h, id := range ids {
		if err := s.saveDevice(&DevInfo{Hash: h, DeviceID: id, Size: 1 << 20}); err != nil {
			t.Fatal(err)
		}
	}
	return ds
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

func keptIndex(t *testing.T, ds *DeviceSet) idCache {
	b, err := os.ReadFile(ds.idCachePath())
	if err != nil {
		t.Fatal(err)
	}
	var c idCache
	if err := json.Unmarshal(b, &c); err != nil {
		t.Fatal(err)
	}
	return c
}

func writeKept(t *testing.T, ds *DeviceSet, c idCache) {
	b, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(ds.idCachePath(), b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestIDCache: the index a Shutdown kept is taken while every stamp holds
// (shown by a kept id no DevInfo has), and read again from the DevInfos
// once a layer came, or a DevInfo was written in place.
func TestIDCache(t *testing.T) {
	ds := idCacheHome(t, map[string]dm.ThinID{"": 1, "a": 2, "b": 3})
	if got := owner(ds, 2); !slices.Equal(got, []string{"a"}) {
		t.Fatalf("built index: id 2 owned by %q", got)
	}
	if err := ds.saveIDCache(); err != nil {
		t.Fatal(err)
	}
	// The control: the kept index is taken (its id for b, edited in the
	// kept file only, shows through).
	c := keptIndex(t, ds)
	k := c.Layers["b"]
	k.ID = 9
	c.Layers["b"] = k
	writeKept(t, ds, c)
	if got := owner(reopen(ds), 9); !slices.Equal(got, []string{"b"}) {
		t.Fatalf("kept index not taken: id 9 owned by %q", got)
	}
	// A DevInfo written in place (an editor, cp onto it): its stamp moves.
	if err := os.WriteFile(filepath.Join(ds.store.dir, "a"), []byte(`{"device_id":7,"size":1048576}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if got := owner(reopen(ds), 7); !slices.Equal(got, []string{"a"}) {
		t.Fatalf("after an in-place edit: id 7 owned by %q, want a (the DevInfos read again)", got)
	}
	// A layer made since: the names differ.
	if err := ds.store.saveDevice(&DevInfo{Hash: "c", DeviceID: 4, Size: 1 << 20}); err != nil {
		t.Fatal(err)
	}
	if got := owner(reopen(ds), 4); !slices.Equal(got, []string{"c"}) {
		t.Fatalf("after a new layer: id 4 owned by %q", got)
	}
}

// TestIDCacheDamaged: a kept index that is not JSON, names other layers,
// holds an id out of range or another file's stamp is not taken.
func TestIDCacheDamaged(t *testing.T) {
	for name, damage := range map[string]func(c *idCache){
		"other layers": func(c *idCache) { c.Layers["zz"] = c.Layers["a"]; delete(c.Layers, "a") },
		"bad id":       func(c *idCache) { k := c.Layers["a"]; k.ID = dm.MaxThinID + 1; c.Layers["a"] = k },
		"other stamp":  func(c *idCache) { k := c.Layers["a"]; k.Stamp.Ino++; k.ID = 5; c.Layers["a"] = k },
		"dir stamp":    func(c *idCache) { c.Dir.Ctime++; k := c.Layers["a"]; k.ID = 5; c.Layers["a"] = k },
		"not json":     nil,
	} {
		t.Run(name, func(t *testing.T) {
			ds := idCacheHome(t, map[string]dm.ThinID{"": 1, "a": 2})
			owner(ds, 2)
			if err := ds.saveIDCache(); err != nil {
				t.Fatal(err)
			}
			if damage == nil {
				if err := os.WriteFile(ds.idCachePath(), []byte("{"), 0o600); err != nil {
					t.Fatal(err)
				}
			} else {
				c := keptIndex(t, ds)
				damage(&c)
				writeKept(t, ds, c)
			}
			if got := owner(reopen(ds), 2); !slices.Equal(got, []string{"a"}) {
				t.Fatalf("id 2 owned by %q, want a (read from the DevInfos)", got)
			}
		})
	}
}
