package buildinfo

import (
	"runtime/debug"
	"testing"
)

func TestFromBuildInfo(t *testing.T) {
	for _, c := range []struct {
		name string
		bi   debug.BuildInfo
		want string
	}{
		{"tree", debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Path: Module, Version: "(devel)"},
			Settings: []debug.BuildSetting{{Key: "vcs.revision", Value: "7e54e9e"}, {Key: "vcs.modified", Value: "true"}}},
			"thinlayer (devel) (commit 7e54e9e, modified), go1.26.8"},
		{"installed", debug.BuildInfo{GoVersion: "go1.26.0", Main: debug.Module{Path: Module, Version: "v0.3.0"}},
			"thinlayer v0.3.0, go1.26.0"},
		{"embedded", debug.BuildInfo{GoVersion: "go1.26.0", Main: debug.Module{Path: "example.com/engine"},
			Deps: []*debug.Module{{Path: "golang.org/x/sys", Version: "v0.50.0"}, {Path: Module, Version: "v0.2.1"}}},
			"thinlayer v0.2.1, go1.26.0"},
		{"foreign", debug.BuildInfo{GoVersion: "go1.26.0", Main: debug.Module{Path: "example.com/other"}},
			"thinlayer unknown, go1.26.0"},
	} {
		if got := fromBuildInfo(&c.bi).String(); got != c.want {
			t.Errorf("%s: %q, want %q", c.name, got, c.want)
		}
	}
}
