package thinmeta_test

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"regexp"
	"strconv"
	"testing"

	"github.com/thinlayer/thinlayer/devmapper"
	"github.com/thinlayer/thinlayer/loopback"
	"github.com/thinlayer/thinlayer/thinmeta"
)

// thinDelta runs thin_delta --snap1 left --snap2 right on dev (with -m:
// on the held metadata snapshot) and adds up the lengths of its ranges.
func thinDelta(t testing.TB, dev string, snap bool, left, right devmapper.ThinID) thinmeta.Delta {
	t.Helper()
	args := []string{"--snap1", fmt.Sprint(left), "--snap2", fmt.Sprint(right), dev}
	if snap {
		args = append([]string{"-m"}, args...)
	}
	return parseThinDelta(t, runTool(t, "thin_delta", args...))
}

var deltaRange = regexp.MustCompile(`<(same|different|left_only|right_only) begin="\d+" length="(\d+)"/>`)

// parseThinDelta sums thin_delta's (non-verbose) ranges by kind.
func parseThinDelta(t testing.TB, out []byte) thinmeta.Delta {
	t.Helper()
	var d thinmeta.Delta
	for _, m := range deltaRange.FindAllSubmatch(out, -1) {
		n, err := strconv.ParseUint(string(m[2]), 10, 64)
		if err != nil {
			t.Fatalf("thin_delta: %q: %v", m[0], err)
		}
		switch string(m[1]) {
		case "same":
			d.Same += n
		case "different":
			d.Different += n
		case "left_only":
			d.LeftOnly += n
		case "right_only":
			d.RightOnly += n
		}
	}
	return d
}

// bruteDelta compares two devices' full mapping lists.
func bruteDelta(t testing.TB, m *thinmeta.Metadata, left, right devmapper.ThinID) thinmeta.Delta {
	t.Helper()
	l := map[uint64]uint64{}
	if err := m.Mappings(left, func(mp thinmeta.Mapping) error { l[mp.Virtual] = mp.Data; return nil }); err != nil {
		t.Fatal(err)
	}
	var d thinmeta.Delta
	err := m.Mappings(right, func(mp thinmeta.Mapping) error {
		data, ok := l[mp.Virtual]
		switch {
		case !ok:
			d.RightOnly++
		case data == mp.Data:
			d.Same++
		default:
			d.Different++
		}
		delete(l, mp.Virtual)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	d.LeftOnly = uint64(len(l))
	return d
}

// TestDeltaMatchesThinDelta compares Delta with thin_delta's and with a
// comparison of the full mapping lists, for every pair of devices of the
// small fixtures (the same device twice, snapshot and origin both ways,
// unrelated devices, an empty one) and for sampled pairs of the 10 000
// device pool (snapshots of snapshots of random earlier devices).
func TestDeltaMatchesThinDelta(t *testing.T) {
	for _, name := range []string{"mixed", "refcounts", "held", "many"} {
		t.Run(name, func(t *testing.T) {
			file := fixtureFile(t, name)
			m, err := thinmeta.Open(file)
			if err != nil {
				t.Fatal(err)
			}
			defer m.Close()
			loop, err := loopback.Attach(file, loopback.Options{ReadOnly: true})
			if err != nil {
				t.Fatal(err)
			}
			defer loop.Detach()
			devs, err := m.Devices()
			if err != nil {
				t.Fatal(err)
			}
			// thin_delta execs slowly under UML: it judges a dozen pairs
			// per fixture, most of them both sharing and adding blocks;
			// the full mapping lists judge every pair.
			pairs, mixedPairs, judged := 0, 0, [2]int{}
			for _, p := range devicePairs(devs) {
				got, err := m.Delta(p[0], p[1])
				if err != nil {
					t.Fatalf("Delta(%d, %d): %v", p[0], p[1], err)
				}
				if want := bruteDelta(t, m, p[0], p[1]); got != want {
					t.Errorf("Delta(%d, %d) = %+v, mapping lists %+v", p[0], p[1], got, want)
				}
				pairs++
				k := 0
				if got.Added() > 0 && got.Same > 0 {
					mixedPairs, k = mixedPairs+1, 1
				}
				if judged[k] < 4+4*k {
					judged[k]++
					if want := thinDelta(t, loop.Path, false, p[0], p[1]); got != want {
						t.Errorf("Delta(%d, %d) = %+v, thin_delta %+v", p[0], p[1], got, want)
					}
				}
			}
			t.Logf("%d pairs agree with the mapping lists, %d with thin_delta; %d both share and add blocks",
				pairs, judged[0]+judged[1], mixedPairs)
			if judged[1] == 0 {
				t.Error("no pair both shares and adds blocks: the fixture tests nothing")
			}
		})
	}
}

// devicePairs is every ordered pair of a small pool's devices, or, for a
// large one, each device after its predecessor and 200 random pairs.
func devicePairs(devs []thinmeta.Device) [][2]devmapper.ThinID {
	var pairs [][2]devmapper.ThinID
	if len(devs) <= 10 {
		for _, a := range devs {
			for _, b := range devs {
				pairs = append(pairs, [2]devmapper.ThinID{a.ID, b.ID})
			}
		}
		return pairs
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 200; i++ {
		pairs = append(pairs, [2]devmapper.ThinID{devs[rng.IntN(len(devs))].ID, devs[rng.IntN(len(devs))].ID})
	}
	for i := 1; i < len(devs) && i < 200; i++ {
		pairs = append(pairs, [2]devmapper.ThinID{devs[i-1].ID, devs[i].ID})
	}
	return pairs
}

// TestDeltaNoDevice: a missing device is ErrNoDevice, either side.
func TestDeltaNoDevice(t *testing.T) {
	m := openFixture(t, "mixed")
	for _, p := range [][2]devmapper.ThinID{{1, 2}, {2, 1}, {2, 99}} { // 1 was deleted
		if _, err := m.Delta(p[0], p[1]); !errors.Is(err, thinmeta.ErrNoDevice) {
			t.Errorf("Delta(%d, %d): %v, want ErrNoDevice", p[0], p[1], err)
		}
	}
}
