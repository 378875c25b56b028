package dockerstore

import (
	"errors"
	"strings"
	"testing"
)

var (
	hexA = strings.Repeat("a", 64)
	hexB = strings.Repeat("b", 64)
	dA   = Digest("sha256:" + hexA)
	dB   = Digest("sha256:" + hexB)
)

func TestParseDigest(t *testing.T) {
	for s, ok := range map[string]bool{
		string(dA): true, "sha256:" + strings.ToUpper(hexA): false, hexA: false, "sha512:" + hexA: false,
		"sha256:" + hexA[:63]: false, "sha256:" + hexA + "a": false, "sha256:../" + hexA[3:]: false, "": false,
	} {
		if _, err := ParseDigest(s); (err == nil) != ok || err != nil && !errors.Is(err, ErrInvalid) {
			t.Errorf("ParseDigest(%q): %v", s, err)
		}
	}
}

func TestChainIDs(t *testing.T) {
	// Docker's chain of two layers: sha256("<diff1> <diff2>").
	got := ChainIDs([]Digest{dA, dB})
	if got[0] != dA || got[1] != DigestOf([]byte(string(dA)+" "+string(dB))) {
		t.Fatalf("ChainIDs: %v", got)
	}
}

func TestParseRepositories(t *testing.T) {
	for _, c := range []struct {
		json string
		refs int
		err  bool
	}{
		{`{"Repositories":{}}`, 0, false},
		{`{"Repositories":{"busybox":{"busybox:latest":"` + string(dA) + `","busybox@` + string(dB) + `":"` + string(dA) + `"}}}`, 2, false},
		{`{"Repositories":{"reg:5000/a/b":{"reg:5000/a/b:v1.2-x_y":"` + string(dA) + `"}}}`, 1, false},
		{`{"Repositories":{"a":{"b:1":"` + string(dA) + `"}}}`, 0, true},         // another repo's ref
		{`{"Repositories":{"a":{"a:":"` + string(dA) + `"}}}`, 0, true},          // no tag
		{`{"Repositories":{"a":{"a:x/y":"` + string(dA) + `"}}}`, 0, true},       // a slash in a tag
		{`{"Repositories":{"a":{"a:1":"sha256:abc"}}}`, 0, true},                 // short id
		{`{"Repositories":{"a\n":{"a\n:1":"` + string(dA) + `"}}}`, 0, true},     // control byte
		{`{"Repositories":{"a":{"a@sha256:zz":"` + string(dA) + `"}}}`, 0, true}, // bad digest ref
		{`{"Repositories":`, 0, true},
	} {
		refs, err := ParseRepositories([]byte(c.json))
		if (err != nil) != c.err || len(refs) != c.refs || err != nil && !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: %d refs, %v", c.json, len(refs), err)
		}
	}
}

func TestRefTag(t *testing.T) {
	for ref, tag := range map[string]string{"reg:5000/a:v1": "v1", "reg:5000/a@" + string(dA): ""} {
		r := Ref{Repo: "reg:5000/a", Ref: ref}
		if r.Tag() != tag {
			t.Errorf("%s: tag %q", ref, r.Tag())
		}
	}
	if r, tg := splitTag("reg:5000/a:v1"); r != "reg:5000/a" || tg != "v1" {
		t.Errorf("splitTag: %s %s", r, tg)
	}
}

func TestParseImage(t *testing.T) {
	good := []byte(`{"created":"2026-01-02T03:04:05Z","rootfs":{"type":"layers","diff_ids":["` + string(dA) + `"]}}`)
	if img, err := ParseImage(DigestOf(good), good); err != nil || len(img.DiffIDs) != 1 || img.Created.Year() != 2026 {
		t.Fatalf("good config: %+v %v", img, err)
	}
	for _, raw := range []string{
		`{"rootfs":{"type":"layers","diff_ids":["sha256:x"]}}`,
		`{"rootfs":{"type":"other","diff_ids":[]}}`,
		`{"rootfs":[]}`,
		`[`,
	} {
		if _, err := ParseImage(DigestOf([]byte(raw)), []byte(raw)); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: %v", raw, err)
		}
	}
	if _, err := ParseImage(dA, good); !errors.Is(err, ErrInvalid) {
		t.Errorf("a config under another id: %v", err)
	}
}

func TestParseLayer(t *testing.T) {
	chain2 := ChainIDs([]Digest{dA, dB})[1]
	for _, c := range []struct {
		name  string
		chain Digest
		f     LayerFiles
		ok    bool
	}{
		{"bottom", dA, LayerFiles{Diff: []byte(dA), Size: []byte("12"), CacheID: []byte(hexB)}, true},
		{"child", chain2, LayerFiles{Diff: []byte(dB), Parent: []byte(dA + "\n"), Size: []byte("0\n"), CacheID: []byte(hexA + "\n")}, true},
		{"bottom of another diff", dA, LayerFiles{Diff: []byte(dB), Size: []byte("1"), CacheID: []byte(hexB)}, false},
		{"not its chain", dB, LayerFiles{Diff: []byte(dB), Parent: []byte(dA), Size: []byte("1"), CacheID: []byte(hexA)}, false},
		{"cache-id path", dA, LayerFiles{Diff: []byte(dA), Size: []byte("1"), CacheID: []byte("../../etc")}, false},
		{"cache-id pool", dA, LayerFiles{Diff: []byte(dA), Size: []byte("1"), CacheID: []byte("pool")}, false},
		{"negative size", dA, LayerFiles{Diff: []byte(dA), Size: []byte("-1"), CacheID: []byte(hexB)}, false},
		{"bad size", dA, LayerFiles{Diff: []byte(dA), Size: []byte("1e3"), CacheID: []byte(hexB)}, false},
	} {
		_, err := ParseLayer(c.chain, c.f)
		if (err == nil) != c.ok || err != nil && !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: %v", c.name, err)
		}
	}
}

func TestParseContainer(t *testing.T) {
	good := `{"ID":"` + hexA + `","Name":"/c1","Image":"` + string(dB) + `","Driver":"devicemapper","Path":"sh","Args":["-c","x"],` +
		`"Created":"2026-01-02T03:04:05Z","State":{"ExitCode":3,"StartedAt":"2026-01-02T03:04:06Z"},"Config":{"Image":"t:1"}}`
	c, err := ParseContainer(hexA, []byte(good))
	if err != nil || c.Name != "c1" || c.ImageName != "t:1" || c.Command != "sh -c x" || c.State.Status() != "exited (3)" {
		t.Fatalf("%+v %v", c, err)
	}
	for _, raw := range []string{
		strings.Replace(good, hexA, hexB, 1),          // another container's config
		strings.Replace(good, string(dB), "b", 1),     // bad image id
		`{"ID":"` + hexA + `","Image":"` + string(dB), // truncated
	} {
		if _, err := ParseContainer(hexA, []byte(raw)); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: %v", raw, err)
		}
	}
	for _, m := range []struct {
		f  MountFiles
		ok bool
	}{
		{MountFiles{MountID: []byte(hexA), InitID: []byte(hexA + "-init"), Parent: []byte(dB)}, true},
		{MountFiles{MountID: []byte(hexA)}, true},
		{MountFiles{MountID: []byte(hexA + "-init")}, false},
		{MountFiles{MountID: []byte(hexA), InitID: []byte(hexA)}, false},
		{MountFiles{MountID: []byte(hexA), Parent: []byte("x")}, false},
	} {
		if err := ParseMount(&Container{ID: hexA}, m.f); (err == nil) != m.ok {
			t.Errorf("%+v: %v", m.f, err)
		}
	}
	if (State{}).Status() != "created" || (State{Running: true}).Status() != "running" {
		t.Error("status words")
	}
}

func TestResolve(t *testing.T) {
	refs := []Ref{{Repo: "a", Ref: "a:latest", Image: dA}, {Repo: "a", Ref: "a:2", Image: dB}}
	ids := []Digest{dA, dB, Digest("sha256:" + "ab" + hexA[2:])}
	for name, want := range map[string]Digest{"a": dA, "a:2": dB, string(dB): dB, "bbbb": dB, "aaaa": dA} {
		got, _, err := Resolve(name, refs, ids)
		if err != nil || got != want {
			t.Errorf("Resolve(%q) = %s, %v", name, got, err)
		}
	}
	for _, name := range []string{"b", "a:3", "aaa", "a" + hexA, "zzzz"} {
		if _, _, err := Resolve(name, refs, ids); !errors.Is(err, ErrNotFound) {
			t.Errorf("Resolve(%q): %v", name, err)
		}
	}
	if _, _, err := Resolve("aa", refs, append(ids, Digest("sha256:aaaa"+hexB[4:]))); err == nil {
		t.Error("an ambiguous prefix resolved")
	}
}

func FuzzParseRepositories(f *testing.F) {
	f.Add([]byte(`{"Repositories":{"a":{"a:1":"` + string(dA) + `"}}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		refs, err := ParseRepositories(b)
		if err != nil {
			return
		}
		for _, r := range refs {
			if _, err := ParseDigest(string(r.Image)); err != nil || !validRef(r) || strings.ContainsAny(r.Ref, "\x00\n ") {
				t.Fatalf("accepted %+v", r)
			}
		}
	})
}

func FuzzParseImage(f *testing.F) {
	f.Add([]byte(`{"rootfs":{"type":"layers","diff_ids":["` + string(dA) + `"]}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		img, err := ParseImage(DigestOf(b), b)
		if err != nil {
			return
		}
		for _, d := range img.DiffIDs {
			if !isHex64(d.Hex()) {
				t.Fatalf("accepted diff id %q", d)
			}
		}
	})
}

func FuzzParseLayer(f *testing.F) {
	f.Add([]byte(dB), []byte(dA), []byte("1"), []byte(hexA))
	f.Fuzz(func(t *testing.T, diff, parent, size, cacheID []byte) {
		l, err := ParseLayer(ChainIDs([]Digest{dA, Digest(strings.TrimSpace(string(diff)))})[1], LayerFiles{Diff: diff, Parent: parent, Size: size, CacheID: cacheID})
		if err != nil {
			return
		}
		if !isHex64(l.CacheID) || l.Size < 0 || l.Parent != dA && len(parent) > 0 {
			t.Fatalf("accepted %+v", l)
		}
	})
}

func FuzzParseContainer(f *testing.F) {
	f.Add([]byte(`{"ID":"`+hexA+`","Image":"`+string(dB)+`"}`), []byte(hexB), []byte(hexB+"-init"))
	f.Fuzz(func(t *testing.T, cfg, mountID, initID []byte) {
		c, err := ParseContainer(hexA, cfg)
		if err != nil {
			return
		}
		if err := ParseMount(c, MountFiles{MountID: mountID, InitID: initID}); err != nil {
			return
		}
		if !isHex64(c.MountID) || !isHex64(strings.TrimSuffix(c.InitID, "-init")) {
			t.Fatalf("accepted %+v", c)
		}
	})
}

func FuzzTarSize(f *testing.F) {
	f.Add([]byte(`{"type":2,"payload":"AAAA","position":0}` + "\n" + `{"type":1,"name":"a","size":3,"payload":null,"position":1}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		n, err := TarSize(strings.NewReader(string(b)))
		if err == nil && n < 0 {
			t.Fatalf("size %d", n)
		}
	})
}

func TestNormalizeTag(t *testing.T) {
	for in, want := range map[string]string{"a": "a:latest", "a:1": "a:1", "reg:5000/a": "reg:5000/a:latest", "reg:5000/a:v": "reg:5000/a:v", "a:b:c": "", "A B": "", "a:": ""} {
		got, err := NormalizeTag(in)
		if got != want || (err == nil) != (want != "") {
			t.Errorf("NormalizeTag(%q) = %q, %v", in, got, err)
		}
	}
}
