package enginetest

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"path"
	"testing"
	"time"
)

// entry is one tar member of a generated layer: a directory (name ends in
// /), a file, a symlink (link set) or a whiteout (a ".wh." name).
type entry struct {
	name, body, link string
	mode             int64
}

// image is a 3-layer image: a static busybox and some files; files added
// and a large one; a deletion (whiteout) and a modification.
func imageLayers(busybox []byte) [][]entry {
	bb := []entry{{name: "bin/"}, {name: "bin/busybox", body: string(busybox), mode: 0o755}}
	for _, c := range []string{"sh", "cat", "echo", "ls", "test", "rm", "true", "sha256sum", "mkdir"} {
		bb = append(bb, entry{name: "bin/" + c, link: "busybox"})
	}
	bb = append(bb, entry{name: "etc/"}, entry{name: "etc/base", body: "base v1\n"},
		entry{name: "etc/gone", body: "deleted in layer 3\n"}, entry{name: "tmp/", mode: 0o1777})
	big := bytes.Repeat([]byte("thinlayer layer two "), 1<<15) // 640 KiB
	return [][]entry{
		bb,
		{{name: "etc/"}, {name: "etc/l2", body: "layer two\n"}, {name: "usr/"}, {name: "usr/share/"},
			{name: "usr/share/big", body: string(big)}},
		{{name: "etc/"}, {name: "etc/.wh.gone"}, {name: "etc/base", body: "base v3\n"}},
	}
}

var epoch = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

func layerTar(t testing.TB, entries []entry) []byte {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := &tar.Header{Name: e.name, Mode: e.mode, ModTime: epoch, Format: tar.FormatPAX}
		switch {
		case e.link != "":
			h.Typeflag, h.Linkname, h.Mode = tar.TypeSymlink, e.link, 0o777
		case e.name[len(e.name)-1] == '/':
			h.Typeflag = tar.TypeDir
			if h.Mode == 0 {
				h.Mode = 0o755
			}
		default:
			h.Typeflag, h.Size = tar.TypeReg, int64(len(e.body))
			if h.Mode == 0 {
				h.Mode = 0o644
			}
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(e.body)); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func digest(b []byte) string {
	s := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(s[:])
}

// writeImage writes a `docker load` archive of the layers tagged tag, and
// returns the layers' digests (the image's diff_ids).
func writeImage(t testing.TB, file, tag string, layers [][]entry) []string {
	t.Helper()
	var diffIDs, paths, history []string
	var members []entry
	for i, l := range layers {
		b := layerTar(t, l)
		d := digest(b)
		diffIDs = append(diffIDs, d)
		dir := d[len("sha256:"):]
		paths = append(paths, path.Join(dir, "layer.tar"))
		members = append(members, entry{name: dir + "/"}, entry{name: path.Join(dir, "layer.tar"), body: string(b)})
		history = append(history, "layer "+string(rune('1'+i)))
	}
	hist := []map[string]string{}
	for _, h := range history {
		hist = append(hist, map[string]string{"created": epoch.Format(time.RFC3339), "created_by": h})
	}
	config, _ := json.Marshal(map[string]any{
		"architecture": "amd64", "os": "linux", "created": epoch.Format(time.RFC3339),
		"config":  map[string]any{"Cmd": []string{"/bin/sh"}, "Env": []string{"PATH=/bin"}},
		"rootfs":  map[string]any{"type": "layers", "diff_ids": diffIDs},
		"history": hist,
	})
	cfgName := digest(config)[len("sha256:"):] + ".json"
	manifest, _ := json.Marshal([]map[string]any{{"Config": cfgName, "RepoTags": []string{tag}, "Layers": paths}})
	members = append(members, entry{name: cfgName, body: string(config)}, entry{name: "manifest.json", body: string(manifest)})
	if err := os.WriteFile(file, layerTar(t, members), 0o644); err != nil {
		t.Fatal(err)
	}
	return diffIDs
}
