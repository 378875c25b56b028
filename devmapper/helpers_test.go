package devmapper_test

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	dm "github.com/thinlayer/thinlayer/devmapper"
)

func open(t testing.TB) *dm.Control {
	t.Helper()
	c, err := dm.Open()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func mkfs(t testing.TB, fs, dev string) {
	t.Helper()
	out, err := exec.Command("mkfs."+fs, dev).CombinedOutput()
	if err != nil {
		t.Fatalf("mkfs.%s %s: %v\n%s", fs, dev, err, out)
	}
}

func writeAt(t testing.TB, path string, off int64, b []byte) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_SYNC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}

func readAt(t testing.TB, path string, off int64, n int) []byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, n)
	if _, err := f.ReadAt(b, off); err != nil {
		t.Fatal(err)
	}
	return b
}

// ueventWatch listens to the kernel's uevents (NETLINK_KOBJECT_UEVENT), so a
// test can wait for something the kernel does asynchronously.
type ueventWatch struct{ fd int }

func watchUevents(t testing.TB) *ueventWatch {
	t.Helper()
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, unix.NETLINK_KOBJECT_UEVENT)
	if err != nil {
		t.Fatalf("uevent socket: %v", err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, 1<<20)
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK, Groups: 1}); err != nil {
		t.Fatalf("bind uevent socket: %v", err)
	}
	return &ueventWatch{fd: fd}
}

// waitRemove waits (at most timeout) for the kernel's "remove" event of the
// block device dm-<minor>.
func (w *ueventWatch) waitRemove(t testing.TB, minor uint32, timeout time.Duration) {
	t.Helper()
	want := fmt.Sprintf("remove@/devices/virtual/block/dm-%d", minor)
	deadline := time.Now().Add(timeout)
	buf := make([]byte, 64<<10)
	for {
		left := time.Until(deadline)
		if left <= 0 {
			t.Fatalf("no %q uevent within %v", want, timeout)
		}
		tv := unix.NsecToTimeval(left.Nanoseconds())
		if err := unix.SetsockoptTimeval(w.fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
			t.Fatal(err)
		}
		n, _, err := unix.Recvfrom(w.fd, buf, 0)
		if errors.Is(err, unix.EINTR) || errors.Is(err, unix.EAGAIN) {
			continue // EAGAIN: the timeout; the deadline check ends the loop
		}
		if err != nil {
			t.Fatalf("read uevent: %v", err)
		}
		// A kernel uevent is "action@devpath\0KEY=value\0...".
		if head, _, _ := bytes.Cut(buf[:n], []byte{0}); string(head) == want {
			return
		}
	}
}
