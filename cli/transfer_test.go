package cli_test

import (
	"bytes"
	"compress/gzip"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"

	"github.com/thinlayer/thinlayer/cli"
)

// export gives a layer's whole tree, or its diff with whiteouts; import
// makes layers from them — plain, gzip and zstd — that hold the same files.
func TestExportImportRoundTrip(t *testing.T) {
	h := newHome(t)
	dir := t.TempDir()
	full, diff := filepath.Join(dir, "mod.tar"), filepath.Join(dir, "mod-diff.tar")
	for _, c := range []struct {
		file string
		args []string
	}{{full, []string{"export", "mod"}}, {diff, []string{"export", "mod", "--parent", "img"}}} {
		if rc, _, errOut := run(t, nil, append(c.args, "-o", c.file, "--home", h.Dir)...); rc != 0 {
			t.Fatalf("%v: rc %d: %s", c.args, rc, errOut)
		}
	}
	if names := tarEntries(t, diff); !equalSet(names, "doc/.wh.README", "etc/added", "usr/bin/tool") {
		t.Fatalf("diff of mod over img: %v", names)
	}
	if names := tarEntries(t, full); !equalSet(names, slices.Collect(maps.Keys(wantMod()))...) {
		t.Fatalf("full tree of mod: %v", names)
	}

	raw, err := os.ReadFile(diff)
	must(t, err)
	var progress bytes.Buffer
	withBar := h
	withBar.Progress = &progress
	var again bytes.Buffer
	n, err := withBar.Export("mod", "img", &again)
	must(t, err)
	againFile := filepath.Join(dir, "again.tar")
	must(t, os.WriteFile(againFile, again.Bytes(), 0o600))
	if names := tarEntries(t, againFile); int(n) != again.Len() || !equalSet(names, tarEntries(t, diff)...) ||
		!strings.Contains(progress.String(), "export mod") {
		t.Fatalf("export with a progress bar: %d bytes, %v, bar %q", n, names, progress.String())
	}
	imports := []struct {
		id, parent string
		args       []string
		stdin      []byte
	}{
		{"copy", "", []string{"-i", full}, nil},
		{"plain", "img", nil, raw},
		{"gz", "img", nil, gzipped(t, raw)},
		{"zst", "img", nil, zstded(t, raw)},
	}
	for _, c := range imports {
		args := append([]string{"import", c.id, "--home", h.Dir}, c.args...)
		if c.parent != "" {
			args = append(args, "--parent", c.parent)
		}
		if rc, out, errOut := run(t, bytes.NewReader(c.stdin), args...); rc != 0 || !strings.Contains(out, "imported layer "+c.id) {
			t.Fatalf("%v: rc %d: %s %s", args, rc, out, errOut)
		}
	}
	want := layerFiles(t, h, "mod")
	if !maps.Equal(want, wantMod()) {
		t.Fatalf("mod holds %v", want)
	}
	for _, c := range imports {
		if got := layerFiles(t, h, c.id); !maps.Equal(got, want) {
			t.Errorf("imported %s holds %v, want %v", c.id, got, want)
		}
	}
}

// A tar that cannot be applied leaves no layer behind; a tar is not
// written to a terminal.
func TestImportFailureAndExportToTerminal(t *testing.T) {
	h := newHome(t)
	rc, _, errOut := run(t, strings.NewReader("this is not a tar, and long enough to not be mistaken for an empty one.................................................................................................................................................................................................................................................................................................................................................................................................................................................................................................................................."), "import", "bad", "--home", h.Dir)
	if rc != cli.ExitProblems {
		t.Fatalf("import of garbage: rc %d: %s", rc, errOut)
	}
	l, err := h.List()
	must(t, err)
	for _, x := range l.Layers {
		if x.ID == "bad" {
			t.Fatal("a failed import left its layer")
		}
	}
	var out, errb bytes.Buffer
	rc = cli.Main([]string{"export", "img", "--home", h.Dir}, cli.Env{Stdout: &out, Stderr: &errb, StdoutTerminal: true})
	if rc != cli.ExitUsage || out.Len() != 0 || !strings.Contains(errb.String(), "terminal") {
		t.Fatalf("export to a terminal: rc %d, %d bytes, %s", rc, out.Len(), errb.String())
	}
	rc, _, errOut = run(t, nil, "import", "img", "--home", h.Dir)
	if rc != cli.ExitProblems || !strings.Contains(errOut, "already exists") {
		t.Fatalf("import onto an existing id: rc %d: %s", rc, errOut)
	}
}

func gzipped(t *testing.T, b []byte) []byte {
	var buf bytes.Buffer
	w := gzip.NewWriter(&buf)
	_, err := w.Write(b)
	must(t, err)
	must(t, w.Close())
	return buf.Bytes()
}

func zstded(t *testing.T, b []byte) []byte {
	w, err := zstd.NewWriter(nil)
	must(t, err)
	defer w.Close()
	return w.EncodeAll(b, nil)
}
