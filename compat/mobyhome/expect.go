package mobyhome

import (
	"fmt"
	"strings"
)

// Expected works out what ReadFiles should give for each layer of spec:
// the parent's files, less Deletes (a deleted directory takes everything
// under it), plus Files. Parents must come before their children in spec.
func Expected(spec []Layer) (map[string]map[string]string, error) {
	out := map[string]map[string]string{}
	for _, l := range spec {
		files := map[string]string{}
		if l.Parent != "" {
			parent, ok := out[l.Parent]
			if !ok {
				return nil, fmt.Errorf("layer %s: parent %s not earlier in spec", l.ID, l.Parent)
			}
			for p, c := range parent {
				files[p] = c
			}
		}
		for _, d := range l.Deletes {
			c, err := CleanPath(d)
			if err != nil {
				return nil, err
			}
			for p := range files {
				if p == c || strings.HasPrefix(p, c+"/") {
					delete(files, p)
				}
			}
		}
		for p, content := range l.Files {
			c, err := CleanPath(p)
			if err != nil {
				return nil, err
			}
			files[c] = content
		}
		out[l.ID] = files
	}
	return out, nil
}
