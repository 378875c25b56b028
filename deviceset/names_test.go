package deviceset

import (
	"errors"
	"strings"
	"testing"
)

// The rule is on the derived device-mapper name: no layer's name is one of
// the home's own devices, whatever the pool is called.
func TestCheckLayerID(t *testing.T) {
	const prefix = "docker-8:1-42"
	for _, c := range []struct {
		pool     string
		refused  []string
		accepted []string
	}{
		{prefix + "-pool", []string{"pool", "base", "pool_tdata", "pool_tmeta", "pool-tpool", `a\x20b`, strings.Repeat("x", 128-len(prefix)-1)},
			[]string{"", "pool2", "xpool", "pool_", "ctrd-1", "a b", strings.Repeat("x", 127-len(prefix)-1)}},
		{prefix + "-mine", []string{"mine", "mine_tmeta", "mine-tpool", "pool", "base"}, []string{"mine2", "minetpool"}},
		{"docker-thinpool", []string{"pool", "base"}, []string{"thinpool", "mine"}},
	} {
		ds := &DeviceSet{prefix: prefix, pool: &pool{name: c.pool}}
		for _, h := range c.refused {
			if err := ds.CheckLayerID(h); !errors.Is(err, ErrInvalidHash) {
				t.Errorf("pool %s: CheckLayerID(%q): %v, want ErrInvalidHash", c.pool, h, err)
			}
			owned := h != "base" && len(h) < 64 && !strings.Contains(h, `\`) // refused as ids only
			if owned && ds.isLayerDevice(ds.deviceName(h)) {
				t.Errorf("pool %s: %s taken for a layer's device", c.pool, ds.deviceName(h))
			}
		}
		for _, h := range c.accepted {
			if err := ds.CheckLayerID(h); err != nil {
				t.Errorf("pool %s: CheckLayerID(%q): %v", c.pool, h, err)
			}
			if !ds.isLayerDevice(ds.deviceName(h)) {
				t.Errorf("pool %s: %s not taken for a layer's device", c.pool, ds.deviceName(h))
			}
		}
		if ds.isLayerDevice(c.pool) || ds.isLayerDevice("docker-8:1-4-x") {
			t.Errorf("pool %s: the pool or another home's device taken for a layer's", c.pool)
		}
	}
}
