// Package buildinfo says which thinlayer a binary is: the module version
// and the commit it was built from, as the Go toolchain recorded them.
package buildinfo

import (
	"fmt"
	"runtime/debug"
)

// Module is thinlayer's module path.
const Module = "github.com/thinlayer/thinlayer"

// Info is what a build recorded.
type Info struct {
	Version  string `json:"version"`            // "(devel)" for a build inside the module's own tree
	Commit   string `json:"commit,omitempty"`   // vcs.revision
	Modified bool   `json:"modified,omitempty"` // built from a tree with uncommitted changes
	Time     string `json:"time,omitempty"`     // vcs.time
	Go       string `json:"go"`
}

// Read returns this binary's build information.
func Read() Info {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return Info{Version: "unknown"}
	}
	return fromBuildInfo(bi)
}

func fromBuildInfo(bi *debug.BuildInfo) Info {
	in := Info{Version: "unknown", Go: bi.GoVersion}
	if bi.Main.Path == Module {
		in.Version = bi.Main.Version
	}
	for _, d := range bi.Deps { // a program that embeds thinlayer
		if d.Path == Module {
			in.Version = d.Version
		}
	}
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			in.Commit = s.Value
		case "vcs.modified":
			in.Modified = s.Value == "true"
		case "vcs.time":
			in.Time = s.Value
		}
	}
	return in
}

// String is the one line `thinlayer version` prints.
func (in Info) String() string {
	s := "thinlayer " + in.Version
	if in.Commit != "" {
		s += " (commit " + in.Commit
		if in.Modified {
			s += ", modified"
		}
		s += ")"
	}
	return fmt.Sprintf("%s, %s", s, in.Go)
}
