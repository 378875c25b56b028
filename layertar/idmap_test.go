package layertar

import (
	"strings"
	"testing"
)

func TestIdentityMapping(t *testing.T) {
	m := IdentityMapping{
		UIDMaps: []IDMap{{ContainerID: 0, HostID: 100000, Size: 1000}, {ContainerID: 1000, HostID: 5000, Size: 1}},
		GIDMaps: []IDMap{{ContainerID: 0, HostID: 200000, Size: 65536}},
	}
	uidOnly := IdentityMapping{UIDMaps: []IDMap{{ContainerID: 0, HostID: 100000, Size: 10}}}
	cases := []struct {
		name       string
		m          IdentityMapping
		toHost     bool
		in1, in2   int
		out1, out2 int
		err        string
	}{
		{"zero value host", IdentityMapping{}, true, 7, 8, 7, 8, ""},
		{"zero value container", IdentityMapping{}, false, 7, 8, 7, 8, ""},
		{"root", m, true, 0, 0, 100000, 200000, ""},
		{"range end", m, true, 999, 65535, 100999, 265535, ""},
		{"second range", m, true, 1000, 1, 5000, 200001, ""},
		{"uid past ranges", m, true, 1001, 0, -1, -1, "container uid 1001 has no host mapping"},
		{"gid past range", m, true, 0, 65536, -1, -1, "container gid 65536 has no host mapping"},
		{"negative", m, true, -1, 0, -1, -1, "container uid -1"},
		{"back root", m, false, 100000, 200000, 0, 0, ""},
		{"back second", m, false, 5000, 265535, 1000, 65535, ""},
		{"back unmapped", m, false, 0, 200000, -1, -1, "host uid 0 has no container mapping"},
		{"back gid unmapped", m, false, 100000, 199999, -1, -1, "host gid 199999 has no container mapping"},
		{"gid identity when only uids map", uidOnly, true, 9, 12345, 100009, 12345, ""},
		{"empty range ignored", IdentityMapping{UIDMaps: []IDMap{{0, 10, 0}}}, true, 0, 0, -1, -1, "uid 0"},
	}
	for _, c := range cases {
		var a, b int
		var err error
		if c.toHost {
			a, b, err = c.m.ToHost(c.in1, c.in2)
		} else {
			a, b, err = c.m.ToContainer(c.in1, c.in2)
		}
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("%s: err %v, want %q", c.name, err, c.err)
			}
			continue
		}
		if err != nil || a != c.out1 || b != c.out2 {
			t.Errorf("%s: got %d,%d,%v want %d,%d", c.name, a, b, err, c.out1, c.out2)
		}
	}
}
