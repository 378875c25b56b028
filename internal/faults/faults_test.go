package faults_test

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/thinlayer/thinlayer/internal/faults"
)

// TestShippedBinariesHaveNoFaults: the commands built as users build them
// (no tag) carry neither the environment switch nor the kill; a build with
// the tag does, so the check can tell.
func TestShippedBinariesHaveNoFaults(t *testing.T) {
	if testing.Short() || raceEnabled {
		t.Skip("builds the command twice (the run without -race does)")
	}
	dir := t.TempDir()
	for _, c := range []struct {
		tags string
		want bool
	}{{"", false}, {faults.Tag, true}} {
		for _, cmd := range []string{"thinlayer"} { // the plugin links the same packages
			bin := filepath.Join(dir, cmd+"-"+c.tags)
			build := exec.Command("go", "build", "-tags="+c.tags, "-o", bin, "../../cmd/"+cmd)
			build.Env = append(os.Environ(), "CGO_ENABLED=0")
			if out, err := build.CombinedOutput(); err != nil {
				t.Fatalf("go build %s: %v\n%s", cmd, err, out)
			}
			b, err := os.ReadFile(bin)
			if err != nil {
				t.Fatal(err)
			}
			if got := bytes.Contains(b, []byte(faults.Env)); got != c.want {
				t.Errorf("%s built with tags %q: contains %s = %v, want %v", cmd, c.tags, faults.Env, got, c.want)
			}
		}
	}
}
