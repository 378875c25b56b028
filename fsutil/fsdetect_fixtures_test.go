package fsutil

import (
	"bytes"
	"compress/gzip"
	"flag"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// updateFSFixtures regenerates testdata/fs/*.img.gz with the real mkfs
// tools: go test ./fsutil -run TestFSFixtures -update-fs-fixtures
var updateFSFixtures = flag.Bool("update-fs-fixtures", false,
	"regenerate fsutil/testdata/fs from real mkfs tools")

// fixtureHeadLen is how much of each image a fixture keeps: enough for the
// btrfs superblock at 64 KiB and every earlier one.
const fixtureHeadLen = btrfsSBOffset + btrfsSBLen

// fsFixture is a real filesystem image head kept in testdata/fs, made
// with a fixed UUID and label.
type fsFixture struct {
	file, tool, pkg string
	size            int64
	args            []string
	want            FSInfo
}

var fsFixtures = []fsFixture{
	{"ext2.img.gz", "mkfs.ext2", "e2fsprogs", 64 << 20,
		[]string{"-q", "-U", "0b8d7f5e-5c1a-4d6e-9f3b-2a1c0e9d8b71", "-L", "fx-ext2"},
		FSInfo{"ext2", "0b8d7f5e-5c1a-4d6e-9f3b-2a1c0e9d8b71", "fx-ext2"}},
	{"ext3.img.gz", "mkfs.ext3", "e2fsprogs", 64 << 20,
		[]string{"-q", "-U", "1c9e806f-6d2b-4e7f-a04c-3b2d1fae9c82", "-L", "fx-ext3"},
		FSInfo{"ext3", "1c9e806f-6d2b-4e7f-a04c-3b2d1fae9c82", "fx-ext3"}},
	{"ext4.img.gz", "mkfs.ext4", "e2fsprogs", 64 << 20,
		[]string{"-q", "-U", "2daf9170-7e3c-4f80-b15d-4c3e20bfad93", "-L", "fx-ext4"},
		FSInfo{"ext4", "2daf9170-7e3c-4f80-b15d-4c3e20bfad93", "fx-ext4"}},
	{"xfs.img.gz", "mkfs.xfs", "xfsprogs", 320 << 20,
		[]string{"-q", "-m", "uuid=3eb0a281-8f4d-4091-826e-5d4f31c0bea4", "-L", "fx-xfs"},
		FSInfo{"xfs", "3eb0a281-8f4d-4091-826e-5d4f31c0bea4", "fx-xfs"}},
	{"btrfs.img.gz", "mkfs.btrfs", "btrfs-progs", 128 << 20,
		[]string{"-q", "-U", "4fc1b392-905e-41a2-937f-6e5042d1cfb5", "-L", "fx-btrfs"},
		FSInfo{"btrfs", "4fc1b392-905e-41a2-937f-6e5042d1cfb5", "fx-btrfs"}},
}

// readFixture returns the decompressed image head of a fixture.
func readFixture(name string) ([]byte, error) {
	f, err := os.Open(filepath.Join("testdata", "fs", name))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		return nil, err
	}
	return io.ReadAll(zr)
}

// TestFSFixtures probes the committed image heads, so detection of every
// supported filesystem is checked even where no mkfs tool is installed.
func TestFSFixtures(t *testing.T) {
	for _, fx := range fsFixtures {
		t.Run(fx.want.Type, func(t *testing.T) {
			if *updateFSFixtures {
				writeFixture(t, fx)
			}
			img, err := readFixture(fx.file)
			if err != nil {
				t.Fatalf("read fixture (regenerate with -update-fs-fixtures): %v", err)
			}
			got, err := ProbeFilesystem(bytes.NewReader(img))
			if err != nil || got != fx.want {
				t.Fatalf("got %+v, %v; want %+v", got, err, fx.want)
			}
		})
	}
}

// writeFixture makes a real image with fx's tool and stores its head.
func writeFixture(t *testing.T, fx fsFixture) {
	t.Helper()
	img := sparseImage(t, "fixture.img", fx.size)
	tool := toolOrSkip(t, fx.tool, fx.pkg)
	if out, err := exec.Command(tool, append(fx.args, img)...).CombinedOutput(); err != nil {
		t.Fatalf("%s: %v: %s", fx.tool, err, out)
	}
	head := make([]byte, fixtureHeadLen)
	f, err := os.Open(img)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.ReadAt(head, 0); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	zw.Write(head)
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join("testdata", "fs", fx.file), buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestProbeRealImages makes fresh filesystems with random UUIDs and
// checks ProbeDevice against blkid, when installed.
func TestProbeRealImages(t *testing.T) {
	for _, fx := range fsFixtures {
		t.Run(fx.want.Type, func(t *testing.T) {
			if fx.want.Type == "btrfs" {
				if _, err := exec.LookPath(fx.tool); err != nil {
					t.Skip("mkfs.btrfs not installed; btrfs is covered by TestFSFixtures")
				}
			}
			tool := toolOrSkip(t, fx.tool, fx.pkg)
			img := sparseImage(t, "real.img", fx.size)
			if out, err := exec.Command(tool, "-q", "-L", "real", img).CombinedOutput(); err != nil {
				t.Fatalf("%s: %v: %s", fx.tool, err, out)
			}
			got, err := ProbeDevice(img)
			if err != nil {
				t.Fatalf("ProbeDevice: %v", err)
			}
			if got.Type != fx.want.Type || got.Label != "real" || !canonicalUUID.MatchString(got.UUID) {
				t.Fatalf("got %+v", got)
			}
			crossCheckBlkid(t, img, got)
		})
	}
}

// crossCheckBlkid compares a probe result with blkid's, if installed.
func crossCheckBlkid(t *testing.T, dev string, got FSInfo) {
	t.Helper()
	uuid, ok := blkidValue(t, dev, "UUID")
	if !ok {
		t.Log("blkid not installed; skipping the cross-check")
		return
	}
	typ, _ := blkidValue(t, dev, "TYPE")
	if uuid != got.UUID || typ != got.Type {
		t.Fatalf("ProbeDevice %s: %+v; blkid: TYPE=%s UUID=%s", dev, got, typ, uuid)
	}
}
