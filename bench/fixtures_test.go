//go:build linux && cgo

package bench_test

import (
	"archive/tar"
	"bytes"
	"fmt"
	"math/rand/v2"

	"github.com/thinlayer/thinlayer/compat/mobyhome"
)

// fixture is a set of layers a scenario needs, made once per driver.
type fixture struct {
	name   string
	layers func() []mobyhome.Layer
}

// content is n bytes of deterministic, incompressible-looking data.
func content(seed uint64, n int) string {
	r := rand.New(rand.NewPCG(seed, 0x7468696e))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return string(b)
}

// files makes count files of size bytes spread over dirs directories.
func files(prefix string, count, dirs, size int, seed uint64) map[string]string {
	m := make(map[string]string, count)
	for i := range count {
		m[fmt.Sprintf("%s/d%02d/f%04d", prefix, i%dirs, i)] = content(seed+uint64(i), size)
	}
	return m
}

var (
	// fxImage is an image layer, the parent of snapshots and containers.
	fxImage = fixture{"img", func() []mobyhome.Layer {
		return []mobyhome.Layer{{ID: "img", Files: files("etc", 10, 2, 512, 1)}}
	}}
	// fxEmpty is a layer with nothing in it (Get gives it rootfs/ and id).
	fxEmpty = fixture{"empty", func() []mobyhome.Layer {
		return []mobyhome.Layer{{ID: "empty"}}
	}}
	// fxSrc100 is the layer an image build exports: 100 small files.
	fxSrc100 = fixture{"src100", func() []mobyhome.Layer {
		return []mobyhome.Layer{{ID: "src100", Files: src100Files()}}
	}}
	// fxBase is a base layer (no parent) of 250 files of 4 KiB in 25
	// directories, and a child that modifies, adds and deletes 10 each.
	// (Each file costs a few syscalls, and a syscall ~0.1-1 ms in UML on
	// a busy 2-core host: more files would only make the run longer.)
	fxBase = fixture{"base", func() []mobyhome.Layer {
		return []mobyhome.Layer{
			{ID: baseID, Files: files("usr/lib", baseFiles, baseDirs, childFileBytes, 3)},
			{ID: childID, Parent: baseID, Files: childFiles(), Deletes: childDeletes()},
		}
	}}
	// fxChain is 20 layers on top of each other; the bottom one holds a
	// 4 MiB file that the scenario reads through the top one.
	fxChain = fixture{"chain", chainLayers}
)

func src100Files() map[string]string { return files("app", 100, 10, 1024, 2) }

const (
	baseID         = "base250"
	childID        = "base250-child"
	baseFiles      = 250
	baseDirs       = 25
	childChanged   = 10
	childFileBytes = 4096
	chainDepth     = 20
	chainBlobBytes = 4 << 20
	chainBlob      = "data/blob"
)

// childFiles overwrites the first 10 files of the base and adds 10 new ones.
func childFiles() map[string]string {
	m := map[string]string{}
	for i := range childChanged {
		m[fmt.Sprintf("usr/lib/d%02d/f%04d", i%baseDirs, i)] = content(100+uint64(i), childFileBytes)
		m[fmt.Sprintf("usr/local/new/f%04d", i)] = content(200+uint64(i), childFileBytes)
	}
	return m
}

// childDeletes are 10 files of the base the child removes.
func childDeletes() []string {
	var d []string
	for i := 100; i < 100+childChanged; i++ {
		d = append(d, fmt.Sprintf("usr/lib/d%02d/f%04d", i%baseDirs, i))
	}
	return d
}

func chainTop() string { return fmt.Sprintf("chain-%02d", chainDepth-1) }

func chainLayers() []mobyhome.Layer {
	ls := []mobyhome.Layer{{ID: "chain-00", Files: map[string]string{chainBlob: content(4, chainBlobBytes)}}}
	for i := 1; i < chainDepth; i++ {
		ls = append(ls, mobyhome.Layer{
			ID: fmt.Sprintf("chain-%02d", i), Parent: fmt.Sprintf("chain-%02d", i-1),
			Files: map[string]string{fmt.Sprintf("layer/%02d", i): content(300+uint64(i), 256)},
		})
	}
	return ls
}

// bigFileTar is a layer tar holding one file of n bytes.
func bigFileTar(n int) []byte {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	data := content(5, n)
	_ = tw.WriteHeader(&tar.Header{Name: "blob", Mode: 0o644, Size: int64(n), Typeflag: tar.TypeReg})
	_, _ = tw.Write([]byte(data))
	_ = tw.Close()
	return buf.Bytes()
}
