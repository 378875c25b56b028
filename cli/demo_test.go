package cli_test

import (
	"strings"
	"testing"

	"github.com/thinlayer/thinlayer/cli"
	"github.com/thinlayer/thinlayer/testutil"
)

// The demo runs every step and ends with a clean check; it leaves nothing
// behind (its home is gone, and so are its devices).
func TestDemo(t *testing.T) {
	testutil.RequireKernel(t)
	var out strings.Builder
	if err := cli.Demo(&out); err != nil {
		t.Fatalf("demo: %v\n%s", err, out.String())
	}
	for _, want := range []string{"[13/13] thinlayer check", "consistent (1 layer checked)", "D /usr/share/doc/demo/README",
		"usr/share/doc/demo/.wh.README", "demo done in"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("demo output lacks %q:\n%s", want, out.String())
		}
	}
	if left := demoLeftovers(t); len(left) > 0 {
		t.Fatalf("the demo left devices: %v", left)
	}
}
