package deviceset

import (
	"strings"
	"testing"

	dm "github.com/thinlayer/thinlayer/devmapper"
)

// The data block size comes from the pool's one thin-pool line; any other
// table is an error that says what it found (MappedBytes printed
// "%!w(<nil>)" for a table of the wrong number of lines).
func TestPoolTableBlockBytes(t *testing.T) {
	pool := dm.TableLine{Length: 4 << 20, Type: dm.TypeThinPool, Params: "7:1 7:0 128 32768 1 skip_block_zeroing"}
	linear := dm.TableLine{Length: 8, Type: dm.TypeLinear, Params: "7:0 0"}
	if b, err := poolTableBlockBytes("p", []dm.TableLine{pool}); err != nil || b != 64<<10 {
		t.Fatalf("a 128-sector pool: %d %v", b, err)
	}
	for _, c := range []struct {
		table []dm.TableLine
		want  string
	}{
		{nil, "0 targets"},
		{[]dm.TableLine{pool, pool}, "2 targets"},
		{[]dm.TableLine{linear}, "[linear]"},
		{[]dm.TableLine{{Type: dm.TypeThinPool, Params: "7:1 7:0"}}, "table of pool p"},
	} {
		_, err := poolTableBlockBytes("p", c.table)
		if err == nil || !strings.Contains(err.Error(), c.want) || strings.Contains(err.Error(), "%!") {
			t.Errorf("table %v: %v, want an error with %q", c.table, err, c.want)
		}
	}
}
