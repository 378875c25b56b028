package devmapper

import (
	"errors"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// These run on the host too (SysV semaphores need no device-mapper), and so
// under -race: THINLAYER_NO_UML=1 go test -race -run Jar ./devmapper.

// complete does what udev's dmsetup udevcomplete does to a cookie.
func complete(t *testing.T, ck *cookie) {
	t.Helper()
	if err := ck.semop(-1, 0); err != nil {
		t.Fatalf("complete cookie %#x: %v", ck.key, err)
	}
}

func semExists(key uint32) bool {
	_, _, errno := unix.Syscall(unix.SYS_SEMGET, uintptr(key), 0, 0)
	return !errors.Is(errno, unix.ENOENT)
}

func jarCookie(t *testing.T, j *cookieJar) *cookie {
	t.Helper()
	ck, err := j.newCookie()
	if err != nil {
		t.Fatal(err)
	}
	return ck
}

func TestJarReapsCompletedLazily(t *testing.T) {
	j := &cookieJar{limit: 4}
	t.Cleanup(j.close)
	a, b, c := jarCookie(t, j), jarCookie(t, j), jarCookie(t, j)
	for _, ck := range []*cookie{a, b, c} {
		j.keep(ck)
	}
	complete(t, a)
	complete(t, c)
	if !semExists(a.key) {
		t.Fatal("a completed cookie was destroyed before the next one was made")
	}
	d := jarCookie(t, j) // reaps a (the head); b is pending, c waits behind it
	if semExists(a.key) || !semExists(b.key) || !semExists(c.key) {
		t.Fatalf("after the next cookie: a=%v b=%v c=%v, want only a gone", semExists(a.key), semExists(b.key), semExists(c.key))
	}
	j.keep(d)
	e := jarCookie(t, j) // b c d e: room for e without a sweep
	if !semExists(c.key) {
		t.Fatal("a completed cookie behind a pending one was destroyed before the list was full")
	}
	j.keep(e)
	f := jarCookie(t, j) // full: the sweep finds c done
	if semExists(c.key) || !semExists(b.key) {
		t.Fatalf("full list not swept: b=%v c=%v", semExists(b.key), semExists(c.key))
	}
	j.drop(f)
	if semExists(f.key) || j.reserved != 0 {
		t.Fatalf("dropped cookie exists=%v, reserved=%d", semExists(f.key), j.reserved)
	}
	j.close()
	for _, ck := range []*cookie{b, d, e} {
		if semExists(ck.key) {
			t.Fatalf("cookie %#x left after close", ck.key)
		}
	}
	if _, err := j.newCookie(); !errors.Is(err, unix.EBADF) {
		t.Fatalf("cookie after close: %v, want EBADF", err)
	}
}

// With the list full of cookies udev never completes, the next one waits
// for the oldest only up to the timeout, then destroys it and takes its place.
func TestJarFullWaitsForOldest(t *testing.T) {
	j := &cookieJar{limit: 2, timeout: 20 * time.Millisecond}
	t.Cleanup(j.close)
	a, b := jarCookie(t, j), jarCookie(t, j)
	j.keep(a)
	j.keep(b)
	c := jarCookie(t, j)
	if semExists(a.key) || !semExists(b.key) {
		t.Fatalf("after a full list: a=%v b=%v, want the oldest (a) gone", semExists(a.key), semExists(b.key))
	}
	j.keep(c)
	// udev completes the oldest while the next op waits for it.
	done := make(chan *cookie)
	j.timeout = time.Minute
	go func() {
		ck, err := j.newCookie()
		if err != nil {
			t.Error(err)
		}
		done <- ck
	}()
	complete(t, b)
	d := <-done
	if semExists(b.key) {
		t.Fatal("completed oldest not destroyed")
	}
	j.keep(d)
	j.close()
	for _, ck := range []*cookie{c, d} {
		if semExists(ck.key) {
			t.Fatalf("cookie %#x left after close", ck.key)
		}
	}
}

// Many goroutines make, keep, complete and drop cookies while "udev"
// completes kept ones in the background and the jar reaps them and finally
// closes: every semaphore is destroyed, none is left.
func TestJarConcurrent(t *testing.T) {
	j := &cookieJar{limit: 8, timeout: time.Minute}
	t.Cleanup(j.close)
	udev := make(chan *cookie)
	udevDone := make(chan struct{})
	go func() {
		defer close(udevDone)
		for ck := range udev {
			_ = ck.semop(-1, 0) // the jar destroys it only after this
		}
	}()
	var mu sync.Mutex
	var keys []uint32
	var wg sync.WaitGroup
	const workers, rounds = 16, 40
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range rounds {
				ck, err := j.newCookie()
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				keys = append(keys, ck.key)
				mu.Unlock()
				switch (w + i) % 3 {
				case 0: // udev was quicker than our return
					_ = ck.semop(-1, 0)
					j.keep(ck)
				case 1: // no uevent
					j.drop(ck)
				default: // udev completes it later
					j.keep(ck)
					udev <- ck
				}
			}
		}()
	}
	wg.Wait()
	close(udev)
	<-udevDone
	j.mu.Lock()
	n, reserved := len(j.pending), j.reserved
	j.mu.Unlock()
	if n > j.limit+workers || reserved != 0 {
		t.Fatalf("%d cookies pending (bound %d + %d in flight), %d reserved", n, j.limit, workers, reserved)
	}
	j.close()
	for _, k := range keys {
		if semExists(k) {
			t.Fatalf("cookie %#x left after close", k)
		}
	}
}
