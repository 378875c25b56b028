package fsutil

import (
	"context"
	"errors"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

const xfsMinImage = 320 << 20 // mkfs.xfs wants at least 300 MB

func TestMkfsUnsupported(t *testing.T) {
	for _, fs := range []string{"btrfs", "", "ext3", "XFS"} {
		err := Mkfs(context.Background(), "/dev/null", fs, nil)
		if err == nil || !strings.Contains(err.Error(), `"`+fs+`"`) {
			t.Errorf("Mkfs(%q): got %v, want an error naming it", fs, err)
		}
	}
}

func TestMkfsExt4(t *testing.T) {
	toolOrSkip(t, "mkfs.ext4", "e2fsprogs")
	tune2fs := toolOrSkip(t, "tune2fs", "e2fsprogs")
	img := sparseImage(t, "ext4.img", 64<<20)
	if err := Mkfs(context.Background(), img, FSTypeExt4, []string{"-L", "mk4"}); err != nil {
		t.Fatalf("Mkfs: %v", err)
	}
	got, err := ProbeDevice(img)
	if err != nil || got.Type != "ext4" || got.Label != "mk4" {
		t.Fatalf("ProbeDevice: %+v, %v", got, err)
	}
	crossCheckBlkid(t, img, got)
	out, err := exec.Command(tune2fs, "-l", img).Output()
	if err != nil {
		t.Fatalf("tune2fs -l: %v", err)
	}
	for _, want := range []string{"Maximum mount count:      -1", "Check interval:           0"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("tune2fs -l lacks %q (tune2fs -c -1 -i 0 not applied?)", want)
		}
	}
}

func TestMkfsXFS(t *testing.T) {
	toolOrSkip(t, "mkfs.xfs", "xfsprogs")
	img := sparseImage(t, "xfs.img", xfsMinImage)
	ctx := context.Background()
	if err := Mkfs(ctx, img, FSTypeXFS, []string{"-L", "mkx"}); err != nil {
		t.Fatalf("Mkfs: %v", err)
	}
	got, err := ProbeDevice(img)
	if err != nil || got.Type != "xfs" || got.Label != "mkx" {
		t.Fatalf("ProbeDevice: %+v, %v", got, err)
	}
	crossCheckBlkid(t, img, got)

	// Like Moby, Mkfs does not force: a second run fails, with mkfs.xfs's
	// own explanation in the error, until the caller passes -f.
	err = Mkfs(ctx, img, FSTypeXFS, nil)
	if err == nil || !strings.Contains(err.Error(), "existing filesystem") {
		t.Fatalf("second Mkfs without -f: got %v, want mkfs.xfs's stderr", err)
	}
	if err := Mkfs(ctx, img, FSTypeXFS, []string{"-f"}); err != nil {
		t.Fatalf("Mkfs -f: %v", err)
	}
	again, err := ProbeDevice(img)
	if err != nil || again.UUID == got.UUID {
		t.Fatalf("after Mkfs -f: %+v, %v; want a new UUID", again, err)
	}
}

func TestMkfsErrorCarriesStderr(t *testing.T) {
	toolOrSkip(t, "mkfs.ext4", "e2fsprogs")
	missing := filepath.Join(t.TempDir(), "no", "such.img")
	err := Mkfs(context.Background(), missing, FSTypeExt4, nil)
	if err == nil {
		t.Fatal("Mkfs on a missing path succeeded")
	}
	var exitErr *exec.ExitError
	if !errors.As(err, &exitErr) || !strings.Contains(err.Error(), missing) ||
		!strings.Contains(err.Error(), "does not exist") {
		t.Fatalf("got %v; want the exit error and mkfs.ext4's stderr", err)
	}
}

func TestMkfsCanceled(t *testing.T) {
	toolOrSkip(t, "mkfs.ext4", "e2fsprogs")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	img := sparseImage(t, "ext4.img", 64<<20)
	if err := Mkfs(ctx, img, FSTypeExt4, nil); !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v, want context.Canceled", err)
	}
}

func TestDefaultFilesystem(t *testing.T) {
	t.Run("no mkfs.xfs", func(t *testing.T) {
		t.Setenv("PATH", t.TempDir())
		if got := DefaultFilesystem(); got != FSTypeExt4 {
			t.Fatalf("got %q, want ext4", got)
		}
	})
	t.Run("mkfs.xfs", func(t *testing.T) {
		toolOrSkip(t, "mkfs.xfs", "xfsprogs")
		ok, err := kernelHasFS("xfs")
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			skipOrFailKernel(t, "kernel lacks xfs")
		}
		if got := DefaultFilesystem(); got != FSTypeXFS {
			t.Fatalf("got %q, want xfs", got)
		}
	})
}

func TestParseKernelRelease(t *testing.T) {
	tests := []struct {
		rel          string
		major, minor int
		ok           bool
	}{
		{"6.1.0-18-amd64", 6, 1, true},
		{"3.16", 3, 16, true},
		{"3.10.0-1160.el7.x86_64", 3, 10, true},
		{"5.15-rc1", 5, 15, true},
		{"4.9+", 4, 9, true},
		{"6", 0, 0, false},
		{"", 0, 0, false},
		{"x.y", 0, 0, false},
	}
	for _, tt := range tests {
		major, minor, ok := parseKernelRelease(tt.rel)
		if ok != tt.ok || (ok && (major != tt.major || minor != tt.minor)) {
			t.Errorf("parseKernelRelease(%q) = %d, %d, %v; want %d, %d, %v",
				tt.rel, major, minor, ok, tt.major, tt.minor, tt.ok)
		}
	}
	if !kernelAtLeast(3, 16) {
		t.Skip("kernel older than 3.16")
	}
	if args := xfsCompatArgs(); args != nil {
		t.Fatalf("xfsCompatArgs on a new kernel = %v, want none", args)
	}
}
