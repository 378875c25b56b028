package snapshotter_test

import (
	"errors"
	"testing"

	"github.com/thinlayer/thinlayer/snapshotter"
)

func TestParseFilters(t *testing.T) {
	info := snapshotter.Info{Name: "k", Kind: snapshotter.KindActive, Parent: "p",
		Labels: map[string]string{"a": "1", "dotted.key": "v.2", "e": ""}}
	cases := []struct {
		filter string
		match  bool
		bad    bool
	}{
		{`labels.a==1`, true, false},
		{`labels."a"==1`, true, false},
		{`labels."dotted.key"=="v.2"`, true, false},
		{`labels."dotted.key"==v.2`, true, false},
		{`labels.a!=1`, false, false},
		{`labels.zz!=1`, true, false},
		{`labels.a`, true, false},
		{`labels.e`, true, false},
		{`labels.zz`, false, false},
		{`labels.a~=^[0-9]+$`, true, false},
		{`name==k,kind==active`, true, false},
		{`name==k, parent==q`, false, false},
		{`parent`, true, false},
		{`parent!=""`, true, false},
		{`labels.zz!=""`, false, false},
		{`labels`, false, true},
		{`size==1`, false, true},
		{`labels.a==1,`, false, true},
		{`labels."a==1`, false, true},
		{`labels.a~=[`, false, true},
		{`==1`, false, true},
	}
	for _, c := range cases {
		m, err := snapshotter.ParseFilters(c.filter)
		if c.bad {
			if !errors.Is(err, snapshotter.ErrInvalidArgument) {
				t.Errorf("%q: err = %v, want ErrInvalidArgument", c.filter, err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%q: %v", c.filter, err)
			continue
		}
		if got := m(info); got != c.match {
			t.Errorf("%q matches = %v, want %v", c.filter, got, c.match)
		}
	}
}

func FuzzParseFilters(f *testing.F) {
	for _, s := range []string{`labels."a"==b`, `labels.x`, `name==k,kind!=view`, `labels.a~=.*`} {
		f.Add(s)
	}
	info := snapshotter.Info{Name: "k", Labels: map[string]string{"a": "b"}}
	f.Fuzz(func(t *testing.T, s string) {
		m, err := snapshotter.ParseFilters(s)
		if err != nil {
			if !errors.Is(err, snapshotter.ErrInvalidArgument) {
				t.Fatalf("%q: error without ErrInvalidArgument: %v", s, err)
			}
			return
		}
		_ = m(info)
	})
}
