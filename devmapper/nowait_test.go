package devmapper_test

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	dm "github.com/thinlayer/thinlayer/devmapper"
	"github.com/thinlayer/thinlayer/loopback"
	"github.com/thinlayer/thinlayer/testutil"
)

// With NoUdevWait, ops return before udev has processed their events: udev's
// exec queue is stopped around each op to show it deterministically. The
// kernel's /dev/dm-N is usable at once; udev completes the cookies later,
// and they are destroyed at the next cookie and at Close.
func TestNoUdevWait(t *testing.T) {
	testutil.RequireKernel(t)
	testutil.StartUdevd(t)
	parent, err := dm.Open()
	if err != nil {
		t.Fatal(err)
	}
	defer parent.Close()
	if parent.UdevMode() != dm.UdevSync {
		t.Fatalf("udev mode %v with udevd running", parent.UdevMode())
	}
	c := parent.NoUdevWait()
	name := fmt.Sprintf("tltest-%d-nowait", os.Getpid())
	data := bytes.Repeat([]byte("nowait!!"), (1<<20)/8) // 2048 sectors
	table := []dm.TableLine{dm.Line(0, 2048, dm.Linear{Device: loopWith(t, data)})}

	udevQueue(t, false)
	info, err := c.CreateAndLoad(name, "", table, 0)
	if err != nil {
		t.Fatal(err)
	}
	if got := dm.PendingCookieValues(parent); len(got) != 1 || got[0] != 1 {
		t.Fatalf("cookies after CreateAndLoad: %v, want one udev has not completed", got)
	}
	if got := readAt(t, info.KernelPath(), 4096, 16); !bytes.Equal(got, data[4096:4096+16]) {
		t.Fatalf("%s reads %q, want the loop device's data", info.KernelPath(), got)
	}
	if _, err := os.Lstat(info.Path()); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("%s exists before udev ran: %v", info.Path(), err)
	}
	udevQueue(t, true)
	waitCookies(t, parent)
	if target, err := filepath.EvalSymlinks(info.Path()); err != nil || target != info.KernelPath() {
		t.Fatalf("%s -> %q (%v) once udev is done, want %s", info.Path(), target, err, info.KernelPath())
	}

	udevQueue(t, false)
	if err := c.Remove(name, 0); err != nil {
		t.Fatal(err)
	}
	if got := dm.PendingCookieValues(parent); len(got) != 1 || got[0] != 1 {
		t.Fatalf("cookies after Remove: %v, want only the remove's (the resume's reaped)", got)
	}
	if _, err := os.Stat(info.KernelPath()); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("%s after remove: %v, want it gone", info.KernelPath(), err)
	}
	if _, err := os.Lstat(info.Path()); err != nil {
		t.Fatalf("%s gone before udev ran: %v", info.Path(), err)
	}
	udevQueue(t, true)
	waitCookies(t, parent)
	if _, err := os.Lstat(info.Path()); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("%s left once udev is done: %v", info.Path(), err)
	}

	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := parent.Version(); err != nil {
		t.Fatalf("parent after the derived Control's Close: %v", err)
	}
	if err := parent.Close(); err != nil {
		t.Fatal(err)
	}
	if keys := cookieSems(t); len(keys) != 0 {
		t.Fatalf("udev cookies left after Close: %#x", keys)
	}
}

// loopWith returns a loop device over a file holding data.
func loopWith(t *testing.T, data []byte) string {
	t.Helper()
	file := filepath.Join(t.TempDir(), "backing")
	if err := os.WriteFile(file, data, 0o600); err != nil {
		t.Fatal(err)
	}
	d, err := loopback.Attach(file, loopback.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = d.Detach() })
	return d.Path
}

// udevQueue starts or stops udevd's event execution: stopped, it queues
// events without running their rules.
func udevQueue(t *testing.T, run bool) {
	t.Helper()
	arg := "--stop-exec-queue"
	if run {
		arg = "--start-exec-queue"
	} else {
		t.Cleanup(func() { _ = exec.Command("udevadm", "control", "--start-exec-queue").Run() })
	}
	if out, err := exec.Command("udevadm", "control", arg).CombinedOutput(); err != nil {
		t.Fatalf("udevadm control %s: %v\n%s", arg, err, out)
	}
}

func waitCookies(t *testing.T, c *dm.Control) {
	t.Helper()
	if err := dm.WaitPendingCookies(c, 30*time.Second); err != nil {
		t.Fatalf("udev did not complete the cookies: %v", err)
	}
}

// cookieSems lists the SysV semaphores with device-mapper's cookie prefix.
func cookieSems(t *testing.T) []uint32 {
	t.Helper()
	b, err := os.ReadFile("/proc/sysvipc/sem")
	if err != nil {
		t.Fatal(err)
	}
	var keys []uint32
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Scan() // header
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 0 {
			continue
		}
		k, err := strconv.ParseInt(f[0], 10, 64)
		if err == nil && uint32(k)>>16 == 0x0D4D {
			keys = append(keys, uint32(k))
		}
	}
	return keys
}
