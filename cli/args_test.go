package cli

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"
	"strings"
	"testing"

	"github.com/thinlayer/thinlayer/deviceset"
)

func TestSplitCommand(t *testing.T) {
	for _, c := range []struct {
		args []string
		name string
		rest []string
	}{
		{nil, "", nil},
		{[]string{"ls"}, "ls", []string{}},
		{[]string{"--home", "/h", "ls", "-r"}, "ls", []string{"--home", "/h", "-r"}},
		{[]string{"--home=/h", "mount", "a", "b"}, "mount", []string{"--home=/h", "a", "b"}},
		{[]string{"--storage-opt", "dm.fs=xfs", "--json", "check"}, "check", []string{"--storage-opt", "dm.fs=xfs", "--json"}},
		{[]string{"-h"}, "help", []string{}},
		{[]string{"--json"}, "", nil},
		{[]string{"-", "x"}, "-", []string{"x"}},
	} {
		name, rest := splitCommand(c.args)
		if name != c.name || !slices.Equal(rest, c.rest) {
			t.Errorf("splitCommand(%q) = %q %q, want %q %q", c.args, name, rest, c.name, c.rest)
		}
	}
}

func TestParseInterleaved(t *testing.T) {
	for _, c := range []struct {
		args, pos []string
		rw        bool
		home      string
	}{
		{[]string{"a", "--rw", "b"}, []string{"a", "b"}, true, ""},
		{[]string{"--home", "/h", "a", "b", "--rw"}, []string{"a", "b"}, true, "/h"},
		{[]string{"a", "--", "--rw", "b"}, []string{"a", "--rw", "b"}, false, ""},
		{[]string{"-rw=false", "x"}, []string{"x"}, false, ""},
	} {
		fs := flag.NewFlagSet("t", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		rw := fs.Bool("rw", false, "")
		home := fs.String("home", "", "")
		pos, err := parseInterleaved(fs, c.args)
		if err != nil || !slices.Equal(pos, c.pos) || *rw != c.rw || *home != c.home {
			t.Errorf("parseInterleaved(%q) = %q rw=%v home=%q %v", c.args, pos, *rw, *home, err)
		}
	}
}

// FuzzCommandLine: any command line splits and parses without panicking,
// the command word is one of the arguments, and every positional argument
// is one too.
func FuzzCommandLine(f *testing.F) {
	f.Add("--home\x00/h\x00ls\x00-r")
	f.Add("mount\x00a\x00--rw\x00b\x00--\x00-x")
	f.Add("--storage-opt\x00--json\x00gc")
	f.Fuzz(func(t *testing.T, line string) {
		args := strings.Split(line, "\x00")
		name, rest := splitCommand(args)
		if name != "" && name != "help" && !slices.Contains(args, name) {
			t.Fatalf("command %q is not among %q", name, args)
		}
		if name != "" && name != "help" && len(rest) != len(args)-1 {
			t.Fatalf("rest %q of %q lost arguments", rest, args)
		}
		fs := flag.NewFlagSet("t", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		fs.Bool("rw", false, "")
		fs.String("home", "", "")
		pos, err := parseInterleaved(fs, rest)
		for _, p := range pos {
			if err == nil && !slices.Contains(rest, p) {
				t.Fatalf("positional %q is not among %q", p, rest)
			}
		}
	})
}

func TestSortLayers(t *testing.T) {
	n := func(v uint64) *uint64 { return &v }
	layers := []Layer{
		{ID: "b", DeviceID: 3, Size: 10, Exclusive: n(5)},
		{ID: "base", Base: true, DeviceID: 1, Size: 10},
		{ID: "a", DeviceID: 2, Size: 20, Exclusive: n(9), Mapped: n(1)},
	}
	for _, c := range []struct {
		key     string
		reverse bool
		want    string
	}{
		{"id", false, "base a b"}, {"id", true, "b a base"}, {"device", false, "base a b"},
		{"size", false, "a b base"}, {"exclusive", false, "a b base"}, {"mapped", false, "a b base"},
	} {
		l := slices.Clone(layers)
		if err := SortLayers(l, c.key, c.reverse); err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, x := range l {
			ids = append(ids, x.ID)
		}
		if got := strings.Join(ids, " "); got != c.want {
			t.Errorf("sort by %s (reverse %v): %s, want %s", c.key, c.reverse, got, c.want)
		}
	}
	if err := SortLayers(layers, "colour", false); !errors.Is(err, ErrUsage) {
		t.Errorf("unknown key: %v", err)
	}
}

// Every error a person meets often comes with what to do, found through
// the wrapping the commands add.
func TestHints(t *testing.T) {
	for _, err := range []error{ErrNoKernel, ErrHomeBusy, deviceset.ErrHomeLocked, deviceset.ErrNotHome,
		deviceset.ErrNotFound, deviceset.ErrExists, deviceset.ErrDeleted, deviceset.ErrNoSpace} {
		wrapped := fmt.Errorf("open home /x: %w", err)
		if hint(wrapped) == "" {
			t.Errorf("no hint for %v", wrapped)
		}
	}
	if h := hint(errors.New("something new")); h != "" {
		t.Errorf("hint for an unknown error: %q", h)
	}
}
