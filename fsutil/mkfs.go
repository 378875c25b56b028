package fsutil

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"

	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"
)

// Filesystem types that Mkfs can create, as in Moby's devmapper driver.
const (
	FSTypeXFS  = "xfs"
	FSTypeExt4 = "ext4"
)

// ext4LazyArgs are the -E options Moby passes to mkfs.ext4 first, and
// ext4LazyFallbackArgs those it retries with when mkfs.ext4 rejects
// lazy_journal_init (older e2fsprogs).
var (
	ext4LazyArgs         = []string{"-E", "nodiscard,lazy_itable_init=0,lazy_journal_init=0"}
	ext4LazyFallbackArgs = []string{"-E", "nodiscard,lazy_itable_init=0"}
)

// Mkfs creates a filesystem of type fs ("xfs" or "ext4") on dev, the way
// Moby v24's devmapper createFilesystem does:
//
//   - xfs: mkfs.xfs [-m crc=0,finobt=0 on kernels older than 3.16] extraArgs... dev
//   - ext4: mkfs.ext4 -E nodiscard,lazy_itable_init=0,lazy_journal_init=0 extraArgs... dev,
//     retried without lazy_journal_init=0 if that fails, then
//     tune2fs -c -1 -i 0 dev to disable periodic fsck.
//
// Like Moby it does not force: mkfs.xfs refuses a device holding a
// filesystem unless extraArgs has "-f". Errors carry the tool's stderr.
// Cancelling ctx kills the running tool.
func Mkfs(ctx context.Context, dev string, fs string, extraArgs []string) error {
	switch fs {
	case FSTypeXFS:
		args := append(xfsCompatArgs(), extraArgs...)
		return runTool(ctx, "mkfs.xfs", append(args, dev)...)
	case FSTypeExt4:
		return mkfsExt4(ctx, dev, extraArgs)
	default:
		return fmt.Errorf("mkfs %s: unsupported filesystem type %q (want %q or %q)",
			dev, fs, FSTypeXFS, FSTypeExt4)
	}
}

// mkfsExt4 runs mkfs.ext4 with Moby's options and fallback, then tune2fs.
func mkfsExt4(ctx context.Context, dev string, extraArgs []string) error {
	tail := append(append([]string(nil), extraArgs...), dev)
	err := runTool(ctx, "mkfs.ext4", append(ext4LazyArgs, tail...)...)
	if err != nil && ctx.Err() == nil {
		logrus.WithError(err).WithField("device", dev).
			Debug("fsutil: mkfs.ext4 failed, retrying without lazy_journal_init=0")
		err = runTool(ctx, "mkfs.ext4", append(ext4LazyFallbackArgs, tail...)...)
	}
	if err != nil {
		return err
	}
	return runTool(ctx, "tune2fs", "-c", "-1", "-i", "0", dev)
}

// xfsCompatArgs mirrors Moby's mkfsOptions: kernels before 3.16 cannot
// mount XFS v5 features that newer xfsprogs enable by default.
func xfsCompatArgs() []string {
	if kernelAtLeast(3, 16) {
		return nil
	}
	return []string{"-m", "crc=0,finobt=0"}
}

// kernelAtLeast reports whether the running kernel is major.minor or
// newer. An unparsable release counts as new.
func kernelAtLeast(major, minor int) bool {
	var uts unix.Utsname
	if err := unix.Uname(&uts); err != nil {
		return true
	}
	maj, mnr, ok := parseKernelRelease(unix.ByteSliceToString(uts.Release[:]))
	if !ok {
		return true
	}
	return maj > major || (maj == major && mnr >= minor)
}

// parseKernelRelease extracts major and minor from a release string such
// as "6.1.0-18-amd64" or "5.15-rc1".
func parseKernelRelease(rel string) (major, minor int, ok bool) {
	parts := strings.SplitN(rel, ".", 3)
	if len(parts) < 2 {
		return 0, 0, false
	}
	digits := strings.IndexFunc(parts[1], func(r rune) bool { return r < '0' || r > '9' })
	if digits < 0 {
		digits = len(parts[1])
	}
	major, err1 := strconv.Atoi(parts[0])
	minor, err2 := strconv.Atoi(parts[1][:digits])
	return major, minor, err1 == nil && err2 == nil
}

// runTool runs an external program and returns an error carrying its
// stderr (or stdout if stderr is empty) when it fails.
func runTool(ctx context.Context, name string, args ...string) error {
	cmd := exec.CommandContext(ctx, name, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	logrus.WithFields(logrus.Fields{"cmd": name, "args": args, "error": err}).
		Debug("fsutil: ran tool")
	if err == nil {
		return nil
	}
	msg := strings.TrimSpace(stderr.String())
	if msg == "" {
		msg = strings.TrimSpace(stdout.String())
	}
	if ctxErr := ctx.Err(); ctxErr != nil {
		err = fmt.Errorf("%w (%w)", ctxErr, err)
	}
	return fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, msg)
}

// DefaultFilesystem returns the filesystem Moby's devmapper driver picks
// when none is configured (determineDefaultFS): "xfs" when mkfs.xfs is
// in PATH and the kernel supports xfs, else "ext4".
func DefaultFilesystem() string {
	if err := xfsSupported(); err != nil {
		logrus.WithError(err).Debug("fsutil: xfs unsupported, defaulting to ext4")
		return FSTypeExt4
	}
	return FSTypeXFS
}

// xfsSupported mirrors Moby's check: mkfs.xfs must be in PATH and xfs
// listed in /proc/filesystems, after a dummy mount has given the kernel
// the chance to load the xfs module.
func xfsSupported() error {
	if _, err := exec.LookPath("mkfs.xfs"); err != nil {
		return err
	}
	if ok, err := kernelHasFS("xfs"); ok || err != nil {
		return err
	}
	loadFSModule("xfs")
	ok, err := kernelHasFS("xfs")
	if err == nil && !ok {
		err = errors.New(`kernel does not support xfs, or "modprobe xfs" failed`)
	}
	return err
}

// loadFSModule makes the kernel autoload a filesystem module by trying a
// mount that is bound to fail, as Moby does.
func loadFSModule(fsType string) {
	dir, err := os.MkdirTemp("", "thinlayer-fsprobe-")
	if err != nil {
		return
	}
	defer os.Remove(dir)
	_ = unix.Mount("none", dir, fsType, 0, "")
}

// kernelHasFS reports whether /proc/filesystems lists fsType.
func kernelHasFS(fsType string) (bool, error) {
	f, err := os.Open("/proc/filesystems")
	if err != nil {
		return false, fmt.Errorf("check kernel filesystems: %w", err)
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if strings.HasSuffix(s.Text(), "\t"+fsType) {
			return true, nil
		}
	}
	if err := s.Err(); err != nil {
		return false, fmt.Errorf("check kernel filesystems: %w", err)
	}
	return false, nil
}
