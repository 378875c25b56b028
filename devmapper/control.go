package devmapper

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// DefaultControlPath is the device-mapper control node.
const DefaultControlPath = "/dev/" + unix.DM_DIR + "/" + unix.DM_CONTROL_NODE

// MapperDir is where device nodes are named by device name.
const MapperDir = "/dev/mapper"

// UdevMode says who makes /dev/mapper/<name> nodes.
type UdevMode int

const (
	// UdevAuto uses udev when udevd runs (its control socket exists), else
	// makes nodes itself. Decided once, at Open.
	UdevAuto UdevMode = iota
	// UdevSync always hands nodes to udev and waits for it with cookies.
	UdevSync
	// UdevOff makes and removes nodes itself and never waits for udev.
	UdevOff
)

func (m UdevMode) String() string {
	switch m {
	case UdevSync:
		return "udev-sync"
	case UdevOff:
		return "no-udev"
	}
	return "auto"
}

// Options for Open.
type Options struct {
	Udev UdevMode
	// ControlPath is the control node; "" means DefaultControlPath.
	ControlPath string
	// UdevWaitTimeout bounds how long an operation waits for udev to
	// finish its event before giving up; 0 means DefaultUdevWaitTimeout.
	UdevWaitTimeout time.Duration
}

// Control is an open /dev/mapper/control. Its methods are safe for
// concurrent use: each call is one or a few independent ioctls.
type Control struct {
	*ctl
	udev   UdevMode // UdevSync or UdevOff once opened
	noWait bool     // pass udev cookies but don't wait for them (NoUdevWait)
	parent bool     // Close closes the descriptor (false for NoUdevWait's)
}

// ctl is what a Control and the Controls derived from it share.
type ctl struct {
	rawFD     atomic.Int32 // -1 once closed
	closeOnce sync.Once
	closeErr  error
	dirMade   atomic.Bool // MapperDir exists (made or checked once)
	jar       cookieJar   // cookies of NoUdevWait ops not yet destroyed
	udevWait  time.Duration
}

// Open opens the control node with automatic udev detection.
func Open() (*Control, error) { return OpenWith(Options{}) }

// OpenWith opens the control node. A missing node or a kernel without
// device-mapper gives an error matching ErrNotSupported.
func OpenWith(opts Options) (*Control, error) {
	// A raw fd, not an *os.File: File.Fd would cost an fcntl per ioctl.
	path := opts.ControlPath
	if path == "" {
		path = DefaultControlPath
	}
	fd, err := unix.Open(path, unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		err = &os.PathError{Op: "open", Path: path, Err: err}
		if errors.Is(err, os.ErrNotExist) || errors.Is(err, unix.ENODEV) || errors.Is(err, unix.ENXIO) {
			return nil, fmt.Errorf("%w: %v", ErrNotSupported, err)
		}
		return nil, wrap("open control", "", err)
	}
	c := &Control{ctl: &ctl{udevWait: opts.UdevWaitTimeout}, udev: opts.Udev, parent: true}
	if c.udevWait <= 0 {
		c.udevWait = DefaultUdevWaitTimeout
	}
	c.jar.timeout = c.udevWait
	c.rawFD.Store(int32(fd))
	if c.udev == UdevAuto {
		c.udev = UdevOff
		if UdevRunning() {
			c.udev = UdevSync
		}
	}
	return c, nil
}

// Close closes the control node and destroys the udev cookies still
// pending from NoUdevWait ops. Closing again does nothing. On a Control
// from NoUdevWait, Close does nothing: only the Control it came from
// closes the shared descriptor.
func (c *Control) Close() error {
	if !c.parent {
		return nil
	}
	c.closeOnce.Do(func() {
		c.jar.close()
		fd := c.rawFD.Swap(-1)
		if err := unix.Close(int(fd)); err != nil {
			c.closeErr = wrap("close control", "", err)
		}
	})
	return c.closeErr
}

// NoUdevWait returns a Control on the same descriptor whose ops do not wait
// for udev. Under UdevSync its Resume, Remove, RemoveDeferred, Rename and
// CreateAndLoad still pass udev a cookie with the caller's udev flags (so
// the rules honour them and their udevcomplete finds the semaphore), but
// return without waiting: /dev/mapper/<name> may not exist yet, or may
// still exist after a remove, so use Info.KernelPath to open the device.
// Pending cookies are destroyed once udev completes them, and all at the
// parent's Close. Under UdevOff it behaves exactly like c.
//
// Close on the returned Control does nothing: only the Control from Open
// closes the descriptor, and after that the derived one fails with EBADF.
func (c *Control) NoUdevWait() *Control {
	d := *c
	d.noWait, d.parent = true, false
	return &d
}

// UdevMode reports how this Control handles device nodes.
func (c *Control) UdevMode() UdevMode { return c.udev }

// fd is the control descriptor, or -1 (EBADF for the ioctl) once closed.
func (c *Control) fd() int { return int(c.rawFD.Load()) }

// call builds a request for dev, lets fill set it up, runs cmd and wraps errors.
func (c *Control) call(op, dev string, cmd uintptr, fill func(*request) error) (*request, error) {
	room, retry := replyRoom(cmd)
	return c.callRoom(op, dev, cmd, room, retry, fill)
}

// callRoom is call with the reply room and retry policy given.
func (c *Control) callRoom(op, dev string, cmd uintptr, room int, retry bool, fill func(*request) error) (*request, error) {
	r, err := newRequest(dev, room)
	if err != nil {
		return nil, wrap(op, dev, fmt.Errorf("%w: %v", unix.EINVAL, err))
	}
	r.retry = retry
	if fill != nil {
		if err := fill(r); err != nil {
			return nil, wrap(op, dev, err)
		}
	}
	if err := r.do(c.fd(), cmd); err != nil {
		return nil, wrap(op, dev, err)
	}
	return r, nil
}

// Version is a device-mapper interface or target version.
type Version [3]uint32

func (v Version) String() string { return fmt.Sprintf("%d.%d.%d", v[0], v[1], v[2]) }

// AtLeast reports whether v >= o.
func (v Version) AtLeast(o Version) bool {
	for i := range v {
		if v[i] != o[i] {
			return v[i] > o[i]
		}
	}
	return true
}

// Version returns the kernel's ioctl interface version.
func (c *Control) Version() (Version, error) {
	r, err := c.call("version", "", unix.DM_VERSION, nil)
	if err != nil {
		return Version{}, err
	}
	return Version(r.header().Version), nil
}

// TargetVersion is one loaded target type.
type TargetVersion struct {
	Name    string
	Version Version
}

// Targets lists the target types the kernel has loaded.
func (c *Control) Targets() ([]TargetVersion, error) {
	r, err := c.call("list versions", "", unix.DM_LIST_VERSIONS, nil)
	if err != nil {
		return nil, err
	}
	return parseTargetVersions(r.output())
}

// parseTargetVersions walks dm_target_versions records (next is relative to
// each record; 0 ends the list).
func parseTargetVersions(out []byte) ([]TargetVersion, error) {
	var list []TargetVersion
	const recHeader = 16 // next u32 + version [3]u32
	for off := 0; ; {
		if off+recHeader > len(out) {
			return nil, fmt.Errorf("list versions: truncated reply at %d", off)
		}
		next := int(ne32(out[off:]))
		end := len(out)
		if next != 0 {
			if next < recHeader || off+next > len(out) {
				return nil, fmt.Errorf("list versions: record at %d points outside the reply", off)
			}
			end = off + next
		}
		list = append(list, TargetVersion{
			Name:    cString(out[off+recHeader : end]),
			Version: Version{ne32(out[off+4:]), ne32(out[off+8:]), ne32(out[off+12:])},
		})
		if next == 0 {
			return list, nil
		}
		off += next
	}
}

// HasTarget reports whether the named target type is loaded, and its version.
func (c *Control) HasTarget(name string) (Version, bool, error) {
	ts, err := c.Targets()
	if err != nil {
		return Version{}, false, err
	}
	for _, t := range ts {
		if t.Name == name {
			return t.Version, true, nil
		}
	}
	return Version{}, false, nil
}

// The kernel writes the records after struct dm_ioctl in its own byte
// order, as it does the header: read them natively, not as little-endian.
func ne32(b []byte) uint32 { return binary.NativeEndian.Uint32(b) }

func ne64(b []byte) uint64 { return binary.NativeEndian.Uint64(b) }
