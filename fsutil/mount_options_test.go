package fsutil

import (
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func TestParseMountOptions(t *testing.T) {
	tests := []struct {
		in    string
		flags uintptr
		data  string
	}{
		{"", 0, ""},
		{"defaults", 0, ""},
		{"ro,nosuid,discard,nouuid", unix.MS_RDONLY | unix.MS_NOSUID, "discard,nouuid"},
		{"discard,noatime", unix.MS_NOATIME, "discard"},
		{"ro,rw", 0, ""},
		{"rw,ro", unix.MS_RDONLY, ""},
		{"noatime,atime", 0, ""},
		{"nodev,noexec,nosuid,sync,dirsync", unix.MS_NODEV | unix.MS_NOEXEC | unix.MS_NOSUID |
			unix.MS_SYNCHRONOUS | unix.MS_DIRSYNC, ""},
		{"remount,ro", unix.MS_REMOUNT | unix.MS_RDONLY, ""},
		{"rbind,rprivate", unix.MS_BIND | unix.MS_REC | unix.MS_PRIVATE, ""},
		{"relatime,strictatime,lazytime", unix.MS_RELATIME | unix.MS_STRICTATIME | unix.MS_LAZYTIME, ""},
		{",,ro,,", unix.MS_RDONLY, ""},
		{"size=10m,mode=0755", 0, "size=10m,mode=0755"},
		{"nouuid,context=\"system_u:object_r:container_file_t:s0:c1,c2\"", 0,
			"nouuid,context=\"system_u:object_r:container_file_t:s0:c1,c2\""},
		{"context=\"a:b:c:s0:c1,ro\",rw", 0, "context=\"a:b:c:s0:c1,ro\""},
		{"context=\"unterminated,ro", 0, "context=\"unterminated,ro"},
		{"RO", 0, "RO"},
	}
	for _, tt := range tests {
		flags, data := ParseMountOptions(tt.in)
		if flags != tt.flags || data != tt.data {
			t.Errorf("ParseMountOptions(%q) = %#x, %q; want %#x, %q", tt.in, flags, data, tt.flags, tt.data)
		}
	}
}

func TestLayerMountOptions(t *testing.T) {
	const lbl = "system_u:object_r:container_file_t:s0:c1,c2"
	tests := []struct {
		fs, options, label, want string
	}{
		{"xfs", "", "", "nouuid"},
		{"xfs", "discard,noatime", "", "nouuid,discard,noatime"},
		{"ext4", "", "", ""},
		{"ext4", "discard", "", "discard"},
		{"ext4", "", lbl, `context="` + lbl + `"`},
		{"xfs", "discard", lbl, `nouuid,discard,context="` + lbl + `"`},
	}
	for _, tt := range tests {
		if got := LayerMountOptions(tt.fs, tt.options, tt.label); got != tt.want {
			t.Errorf("LayerMountOptions(%q, %q, %q) = %q, want %q", tt.fs, tt.options, tt.label, got, tt.want)
		}
	}
	flags, data := ParseMountOptions(LayerMountOptions("xfs", "ro,discard", lbl))
	if flags != unix.MS_RDONLY || data != `nouuid,discard,context="`+lbl+`"` {
		t.Errorf("parsed layer options = %#x, %q", flags, data)
	}
}

func FuzzParseMountOptions(f *testing.F) {
	for _, seed := range []string{"", "ro,nosuid,discard,nouuid", "rw,ro,defaults",
		`context="a:b,c",ro`, `"`, `,,"",`, "rbind,rslave,noexec,size=1m"} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, s string) {
		flags, data := ParseMountOptions(s)
		// Data never holds flag keywords, empty items or "defaults", so
		// it parses to itself with no flags.
		flags2, data2 := ParseMountOptions(data)
		if flags2 != 0 || data2 != data {
			t.Fatalf("ParseMountOptions(%q) data %q reparses to %#x, %q", s, data, flags2, data2)
		}
		if len(data) > len(s) {
			t.Fatalf("data %q longer than input %q", data, s)
		}
		if flags&^allMountFlags() != 0 {
			t.Fatalf("unknown flag bits %#x from %q", flags, s)
		}
		if !strings.Contains(s, `"`) && strings.Contains(data, ",,") {
			t.Fatalf("empty item kept in %q", data)
		}
	})
}

// allMountFlags is the union of every flag in the options table.
func allMountFlags() uintptr {
	var all uintptr
	for _, f := range mountFlags {
		all |= f.flag
	}
	return all
}
