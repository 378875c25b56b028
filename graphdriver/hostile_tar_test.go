package graphdriver_test

import (
	"archive/tar"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	gd "github.com/thinlayer/thinlayer/graphdriver"
	"github.com/thinlayer/thinlayer/graphdriver/internal/gdtest"
)

// Hostile layer tars through ApplyDiff: each is refused with an error
// naming the entry, or applied strictly inside the layer; nothing outside
// the layer changes (the home's other files, a directory beside the home,
// the host's /), and the layer below is untouched. fsutil's own tests walk
// many more routes (archive_hostile_test.go); these go through the driver.

type tarEntry struct {
	hdr  tar.Header
	body []byte
}

func reg(name, body string) tarEntry {
	return tarEntry{tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(body))}, []byte(body)}
}

func hdr(h tar.Header) tarEntry { return tarEntry{hdr: h} }

func buildTar(t *testing.T, entries ...tarEntry) []byte {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := e.hdr
		must(t, tw.WriteHeader(&h))
		if len(e.body) > 0 {
			_, err := tw.Write(e.body)
			must(t, err)
		}
	}
	must(t, tw.Close())
	return buf.Bytes()
}

type tarCase struct {
	name    string
	tar     func(t *testing.T, outsideDir string) []byte
	wantErr string // "" = applies, inside the layer
	inside  string // must exist in the layer afterwards
}

func tarCases() []tarCase {
	return []tarCase{
		{name: "dotdot", tar: func(t *testing.T, _ string) []byte { return buildTar(t, reg("../../pwned-thinlayer", "x")) },
			wantErr: "escapes the layer root"},
		{name: "absolute", tar: func(t *testing.T, _ string) []byte { return buildTar(t, reg("/etc/pwned-thinlayer", "x")) },
			inside: "etc/pwned-thinlayer"},
		{name: "symlink-root-then-file", tar: func(t *testing.T, _ string) []byte {
			return buildTar(t, hdr(tar.Header{Name: "s", Typeflag: tar.TypeSymlink, Linkname: "/"}), reg("s/pwned-thinlayer", "x"))
		}, inside: "pwned-thinlayer"},
		{name: "symlink-outside-then-file", tar: func(t *testing.T, o string) []byte {
			return buildTar(t, hdr(tar.Header{Name: "s", Typeflag: tar.TypeSymlink, Linkname: o}), reg("s/sentinel", "pwned"))
		}, wantErr: "no such file"}, // o, taken inside the layer, is not there
		{name: "symlink-dotdot-then-file", tar: func(t *testing.T, _ string) []byte {
			return buildTar(t, hdr(tar.Header{Name: "s", Typeflag: tar.TypeSymlink, Linkname: "../../../../.."}), reg("s/pwned-thinlayer", "x"))
		}, wantErr: "escapes the layer root"},
		{name: "hardlink-outside", tar: func(t *testing.T, _ string) []byte {
			return buildTar(t, hdr(tar.Header{Name: "h", Typeflag: tar.TypeLink, Linkname: "../../../etc/passwd"}))
		}, wantErr: "escapes the layer root"},
		{name: "hardlink-absolute", tar: func(t *testing.T, o string) []byte {
			return buildTar(t, hdr(tar.Header{Name: "h", Typeflag: tar.TypeLink, Linkname: o + "/sentinel"}))
		}, wantErr: "no such file"},
		{name: "whiteout-dotdot", tar: func(t *testing.T, _ string) []byte {
			return buildTar(t, hdr(tar.Header{Name: ".wh..", Typeflag: tar.TypeReg}))
		},
			wantErr: "escapes the layer root"},
		{name: "device-nodes", tar: func(t *testing.T, _ string) []byte {
			return buildTar(t, hdr(tar.Header{Name: "dev/sda", Typeflag: tar.TypeBlock, Mode: 0o600, Devmajor: 8}),
				hdr(tar.Header{Name: "dev/mem", Typeflag: tar.TypeChar, Mode: 0o600, Devmajor: 1, Devminor: 1}))
		}, inside: "dev/mem"},
		{name: "enormous-size-truncated", tar: func(t *testing.T, _ string) []byte {
			var buf bytes.Buffer
			tw := tar.NewWriter(&buf) // never closed: the claimed terabyte never comes
			must(t, tw.WriteHeader(&tar.Header{Name: "huge", Typeflag: tar.TypeReg, Mode: 0o644, Size: 1 << 40}))
			return append(buf.Bytes(), make([]byte, 4096)...)
		}, wantErr: "unexpected EOF"},
		{name: "enormous-name", tar: func(t *testing.T, _ string) []byte {
			return buildTar(t, reg(strings.Repeat("n", 300)+"/"+strings.Repeat("m", 5000), "x"))
		}, wantErr: "exceeds"},
		{name: "truncated-stream", tar: func(t *testing.T, _ string) []byte {
			b := buildTar(t, reg("a", strings.Repeat("a", 10000)), reg("b", "b"))
			return b[:3000]
		}, wantErr: "unexpected EOF"},
		{name: "no-end-marker", tar: func(t *testing.T, _ string) []byte {
			b := buildTar(t, reg("a", "a"))
			return b[:1024]
		}, wantErr: "end-of-archive"},
		{name: "not-a-tar", tar: func(t *testing.T, _ string) []byte { return bytes.Repeat([]byte("garbage!"), 200) },
			wantErr: "apply diff"},
	}
}

func TestHostileTars(t *testing.T) {
	home := t.TempDir()
	o := newOutside(t)
	d := newDriver(t, home, walkOptions())
	mustCreate(t, d, "keep", "")
	writeFile(t, get(t, d, "keep")+"/data", "precious", 0o644, 0, 0)
	keepTree := treeOf(t, get(t, d, "keep"))
	put(t, d, "keep")
	put(t, d, "keep")
	meta := digestTree(t, filepath.Join(home, "metadata"))
	cases := tarCases()
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			id := fmt.Sprint("t", i)
			mustCreate(t, d, id, "keep")
			meta = digestTree(t, filepath.Join(home, "metadata"))
			_, err := d.ApplyDiff(id, "keep", bytes.NewReader(c.tar(t, o.dir)))
			switch {
			case c.wantErr != "" && (err == nil || !strings.Contains(err.Error(), c.wantErr)):
				t.Errorf("ApplyDiff: %v, want an error with %q", err, c.wantErr)
			case c.wantErr == "" && err != nil:
				t.Errorf("ApplyDiff: %v", err)
			case c.inside != "":
				if _, err := os.Lstat(filepath.Join(get(t, d, id), c.inside)); err != nil {
					t.Errorf("%s not applied inside the layer: %v", c.inside, err)
				}
				put(t, d, id)
			}
			o.check(t)
			if got := digestTree(t, filepath.Join(home, "metadata")); !equalDigests(got, meta) {
				t.Error("home metadata changed by an ApplyDiff")
			}
			must(t, gdtest.CheckMountsUnder(home))
		})
	}
	if diff := diffTrees(keepTree, treeOfLayer(t, d, "keep")); len(diff) > 0 {
		t.Fatalf("the layer below changed: %v", diff)
	}
	t.Logf("hostile tars: %d tried through ApplyDiff", len(cases))
}

func equalDigests(a, b map[string][32]byte) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

func treeOfLayer(t *testing.T, d gd.Driver, id string) map[string]string {
	t.Helper()
	tree, err := gdtest.TreeOfLayer(t, d, id)
	if err != nil {
		t.Fatal(err)
	}
	return tree
}
