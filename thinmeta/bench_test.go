package thinmeta_test

import (
	"os/exec"
	"testing"

	"github.com/thinlayer/thinlayer/testutil"
	"github.com/thinlayer/thinlayer/thinmeta"
)

// BenchmarkManyDevices compares the package with thin-provisioning-tools on
// the 10 000-device pool (the "many" fixture, built by the kernel):
// per-device usage against thin_ls, the structural check against
// thin_check. Run it on the host for fair numbers —
// THINLAYER_NO_UML=1 go test -run XXX -bench ManyDevices ./thinmeta — as
// under User-Mode Linux every exec and page fault costs extra.
func BenchmarkManyDevices(b *testing.B) {
	file, dev := benchFixture(b)
	// Each iteration opens afresh, as the tools do: no blocks cached in
	// the process (the kernel's page cache is warm for the file; the
	// tools read with O_DIRECT).
	open := func(b *testing.B) *thinmeta.Metadata {
		m, err := thinmeta.Open(file)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { m.Close() })
		return m
	}
	b.Run("thinmeta.Devices", func(b *testing.B) {
		for b.Loop() {
			if _, err := open(b).Devices(); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("thinmeta.DevicesWithUsage", func(b *testing.B) {
		for b.Loop() {
			if _, err := open(b).DevicesWithUsage(); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("thin_ls", func(b *testing.B) {
		for b.Loop() {
			runTool(b, "thin_ls", "--no-headers", "-o", lsFields, dev)
		}
	})
	b.Run("thinmeta.Check", func(b *testing.B) {
		for b.Loop() {
			if p := open(b).Check(); len(p) > 0 {
				b.Fatal(p[0])
			}
		}
	})
	b.Run("thin_check", func(b *testing.B) {
		for b.Loop() {
			if out, err := exec.Command("thin_check", dev).CombinedOutput(); err != nil {
				b.Fatalf("thin_check: %v\n%s", err, out)
			}
		}
	})
}

// benchFixture gives the image as a file for the package, and something
// the tools can open with O_DIRECT: a loop device under UML (scratch is
// tmpfs there), the file itself on the host when it allows O_DIRECT.
func benchFixture(b *testing.B) (file, dev string) {
	if testutil.InUML() {
		return manyFixture(b)
	}
	file = fixtureFile(b, "many")
	if out, err := exec.Command("thin_check", "--super-block-only", file).CombinedOutput(); err != nil {
		b.Skipf("thin tools cannot open %s here (O_DIRECT on tmpfs?): %s", file, out)
	}
	return file, file
}
