package devmapper

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// udev flags carried in the upper 16 bits of a cookie (libdevmapper's
// DM_UDEV_* values, read by the 10-dm.rules / 55-dm.rules udev rules).
const (
	UdevDisableDMRulesFlag        = 0x0001
	UdevDisableSubsystemRulesFlag = 0x0002
	UdevDisableDiskRulesFlag      = 0x0004
	UdevDisableOtherRulesFlag     = 0x0008
	UdevLowPriorityFlag           = 0x0010
	UdevDisableLibraryFallback    = 0x0020
	UdevPrimarySourceFlag         = 0x0040
)

const (
	cookieMagic     = 0x0D4D
	udevFlagsShift  = 16
	udevFlagsMask   = 0xFFFF0000
	udevControlPath = "/run/udev/control"

	semSETVAL = 16
	semGETVAL = 12
)

// DefaultUdevWaitTimeout bounds how long an operation waits for udev to
// finish processing its event before giving up and making the node itself
// (Options.UdevWaitTimeout changes it).
const DefaultUdevWaitTimeout = 30 * time.Second

// UdevRunning reports whether udevd is running, the way libdevmapper (via
// libudev) tells: its control socket exists.
func UdevRunning() bool {
	_, err := os.Stat(udevControlPath)
	return err == nil
}

// cookie is a SysV semaphore that udev's rules decrement ("dmsetup
// udevcomplete") once they have processed the uevent that carried it.
type cookie struct {
	key   uint32 // (magic << 16) | base
	semid int
}

type sembuf struct {
	num uint16
	op  int16
	flg int16
}

// newCookie creates a semaphore with the given value: 1 for udev's
// reference, plus 1 for a waiter, who removes its own before waiting for
// zero (libdevmapper counts the same way).
func newCookie(value int) (*cookie, error) {
	for range 64 {
		var b [2]byte
		if _, err := rand.Read(b[:]); err != nil {
			return nil, err
		}
		base := uint32(binary.LittleEndian.Uint16(b[:]))
		if base == 0 {
			continue
		}
		key := cookieMagic<<udevFlagsShift | base
		id, _, errno := unix.Syscall(unix.SYS_SEMGET, uintptr(key), 1, 0o600|unix.IPC_CREAT|unix.IPC_EXCL)
		if errno == unix.EEXIST {
			continue
		}
		if errno != 0 {
			return nil, fmt.Errorf("semget cookie %#x: %w", key, errno)
		}
		c := &cookie{key: key, semid: int(id)}
		if err := c.setval(value); err != nil {
			c.destroy()
			return nil, err
		}
		return c, nil
	}
	return nil, fmt.Errorf("semget: no free cookie: %w", unix.EEXIST)
}

// eventNr is what goes into dm_ioctl.event_nr: the cookie base and the flags.
func (c *cookie) eventNr(flags uint16) uint32 {
	return c.key&^udevFlagsMask | uint32(flags)<<udevFlagsShift
}

func (c *cookie) setval(v int) error {
	_, _, errno := unix.Syscall6(unix.SYS_SEMCTL, uintptr(c.semid), 0, semSETVAL, uintptr(v), 0, 0)
	if errno != 0 {
		return fmt.Errorf("semctl SETVAL cookie %#x: %w", c.key, errno)
	}
	return nil
}

func (c *cookie) value() (int, error) {
	v, _, errno := unix.Syscall6(unix.SYS_SEMCTL, uintptr(c.semid), 0, semGETVAL, 0, 0, 0)
	if errno != 0 {
		return 0, fmt.Errorf("semctl GETVAL cookie %#x: %w", c.key, errno)
	}
	return int(v), nil
}

// done reports whether udev completed the cookie. One that is gone (say,
// removed by dmsetup udevcomplete_all) counts as done.
func (c *cookie) done() bool {
	v, err := c.value()
	return err != nil || v <= 0
}

func (c *cookie) semop(op int16, timeout time.Duration) error {
	sb := sembuf{num: 0, op: op}
	var tsp *unix.Timespec
	if timeout > 0 {
		ts := unix.NsecToTimespec(timeout.Nanoseconds())
		tsp = &ts
	}
	for {
		_, _, errno := unix.Syscall6(unix.SYS_SEMTIMEDOP, uintptr(c.semid),
			uintptr(unsafe.Pointer(&sb)), 1, uintptr(unsafe.Pointer(tsp)), 0, 0)
		switch errno {
		case 0:
			return nil
		case unix.EINTR:
			continue
		default:
			return errno
		}
	}
}

// release drops the op's reference without waiting: used when the kernel
// generated no uevent, so udev will never complete the cookie.
func (c *cookie) release() {
	_ = c.semop(-1, 0)
	c.destroy()
}

// wait drops our reference and waits for udev to drop its own.
func (c *cookie) wait(timeout time.Duration) error {
	defer c.destroy()
	if err := c.semop(-1, 0); err != nil {
		return fmt.Errorf("cookie %#x: %w", c.key, err)
	}
	err := c.semop(0, timeout)
	if errors.Is(err, unix.EAGAIN) {
		return fmt.Errorf("cookie %#x: udev did not complete the event within %v: %w", c.key, timeout, unix.ETIMEDOUT)
	}
	if err != nil {
		return fmt.Errorf("cookie %#x: %w", c.key, err)
	}
	return nil
}

func (c *cookie) destroy() {
	_, _, _ = unix.Syscall6(unix.SYS_SEMCTL, uintptr(c.semid), 0, unix.IPC_RMID, 0, 0, 0)
}
