package cli

import (
	"bytes"
	"encoding/json"
	"runtime"
	"strings"
	"testing"
)

func TestVersion(t *testing.T) {
	var out bytes.Buffer
	if code := Main([]string{"version"}, Env{Stdout: &out, Stderr: &out}); code != 0 {
		t.Fatalf("exit %d: %s", code, out.String())
	}
	if line := out.String(); !strings.HasPrefix(line, "thinlayer ") || !strings.Contains(line, runtime.Version()) {
		t.Errorf("version printed %q", line)
	}
	out.Reset()
	if code := Main([]string{"--json", "version"}, Env{Stdout: &out, Stderr: &out}); code != 0 {
		t.Fatalf("exit %d: %s", code, out.String())
	}
	var v struct{ Version, Go string }
	if err := json.Unmarshal(out.Bytes(), &v); err != nil || v.Version == "" || v.Go != runtime.Version() {
		t.Errorf("--json version: %q (%v)", out.String(), err)
	}
}
