//go:build syscallprobe

package layertar

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// TestSyscallProbe, built only with -tags syscallprobe (a measuring tool,
// not a test: a normal run neither runs nor skips it), with FSUTIL_PROBE
// "apply:N", "tar:N" or "export:N" makes N applies (tars, Changes+ExportChanges) of benchTree's layer, for counting syscalls with
// strace -c -f; the difference between two values of N, divided by their
// difference and by 110 entries, leaves the setup out. It leaves its
// applied trees in a temporary directory, whose removal would be counted
// too.
func TestSyscallProbe(t *testing.T) {
	what, n, ok := strings.Cut(os.Getenv("FSUTIL_PROBE"), ":")
	if !ok {
		t.Fatal("set FSUTIL_PROBE=apply:N, tar:N or export:N")
	}
	runs, err := strconv.Atoi(n)
	must(t, err)
	const maxRuns = 32
	dir := t.TempDir()
	body := string(bytes.Repeat([]byte("x"), 4096))
	for i := 0; i < 100; i++ {
		mkNode(t, dir, node{path: fmt.Sprintf("d%d/f%d", i%10, i), kind: unix.S_IFREG, mode: 0o644, body: body})
	}
	rc, err := TarTree(dir, IdentityMapping{})
	must(t, err)
	data := readAllClose(t, rc)
	// Not t.TempDir: its cleanup would count N times. The caller removes it.
	work, err := os.MkdirTemp("", "layertar-probe-")
	must(t, err)
	for i := 0; i < maxRuns; i++ {
		must(t, os.Mkdir(filepath.Join(work, strconv.Itoa(i)), 0o755))
	}
	for i := 0; i < runs && i < maxRuns; i++ {
		switch what {
		case "apply":
			_, err = ApplyLayer(filepath.Join(work, strconv.Itoa(i)), bytes.NewReader(data), ApplyOptions{})
			must(t, err)
		case "tar":
			rc, err := TarTree(dir, IdentityMapping{})
			must(t, err)
			_, err = io.Copy(io.Discard, rc)
			must(t, err)
			must(t, rc.Close())
		case "export": // every entry changed: the tree over an empty parent
			changes, err := Changes(dir, "")
			must(t, err)
			rc, err := ExportChanges(dir, changes, IdentityMapping{})
			must(t, err)
			_, err = io.Copy(io.Discard, rc)
			must(t, err)
			must(t, rc.Close())
		}
	}
}
