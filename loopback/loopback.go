// Package loopback attaches regular (typically sparse) files to Linux loop
// block devices and manages them, using only ioctls on /dev/loop-control and
// /dev/loopN. It needs root (CAP_SYS_ADMIN) and never runs losetup.
package loopback

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync"

	"golang.org/x/sys/unix"
)

// ErrNotFound is returned (wrapped) by FindByFile when no loop device is
// bound to the given file.
var ErrNotFound = errors.New("no loop device bound to file")

// Error describes a failed operation. It keeps the underlying error, so
// errors.Is(err, unix.EBUSY) or errors.Is(err, ErrNotFound) work.
type Error struct {
	Op   string // operation, e.g. "attach", "LOOP_CONFIGURE", "detach"
	Path string // loop device or backing file concerned
	Err  error  // underlying error, usually a unix.Errno
}

func (e *Error) Error() string { return "loopback: " + e.Op + " " + e.Path + ": " + e.Err.Error() }

// Unwrap returns the underlying error.
func (e *Error) Unwrap() error { return e.Err }

func wrap(op, path string, err error) error {
	if err == nil {
		return nil
	}
	return &Error{Op: op, Path: path, Err: err}
}

// Options controls how Attach configures a loop device.
type Options struct {
	// ReadOnly opens the backing file read-only and makes the device
	// read-only.
	ReadOnly bool
	// AutoClear makes the kernel detach the device when its last opener
	// closes it. The Device returned by Attach then keeps the device open
	// until Device.Close or Device.Detach is called.
	AutoClear bool
	// DirectIO asks the kernel to bypass the page cache of the backing file.
	// When the backing file system refuses it (e.g. tmpfs on older kernels),
	// Attach does not fail: the device is attached with buffered I/O and
	// Device.DirectIO reports false.
	DirectIO bool
	// BlockSize is the logical block size of the device: 0 for the kernel
	// default, otherwise a power of two between 512 and the page size.
	BlockSize uint32
}

// Device is a bound loop device.
type Device struct {
	Path        string // device node, /dev/loopN
	Number      int    // N in /dev/loopN
	BackingFile string // path of the backing file
	DirectIO    bool   // whether the kernel actually uses direct I/O

	mu   sync.Mutex
	file *os.File // held open for AutoClear devices; nil otherwise
}

// maxAttempts bounds how often Attach asks for another free device when it
// loses the race for one to another process.
const maxAttempts = 32

// Attach binds file to a free loop device, configured according to opts.
// When another process grabs the same free device first, Attach retries with
// the next free one, a bounded number of times.
func Attach(file string, opts Options) (*Device, error) {
	if err := checkBlockSize(opts.BlockSize); err != nil {
		return nil, wrap("attach", file, err)
	}
	backing, err := openBacking(file, opts.ReadOnly)
	if err != nil {
		return nil, err
	}
	defer backing.Close()
	ctl, err := os.OpenFile("/dev/loop-control", os.O_RDWR, 0)
	if err != nil {
		return nil, wrap("attach", file, underlying(err))
	}
	defer ctl.Close()
	var d *Device
	for range maxAttempts {
		if d, err = attachFree(ctl, backing, opts); !errors.Is(err, unix.EBUSY) {
			break
		}
	}
	return d, err
}

// openBacking opens the regular file to attach, by its absolute path.
func openBacking(file string, readOnly bool) (*os.File, error) {
	flag := os.O_RDWR
	if readOnly {
		flag = os.O_RDONLY
	}
	abs, err := filepath.Abs(file)
	if err != nil {
		return nil, wrap("attach", file, err)
	}
	f, err := os.OpenFile(abs, flag, 0)
	if err != nil {
		return nil, wrap("attach", file, underlying(err))
	}
	if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() {
		f.Close()
		if err == nil {
			err = fmt.Errorf("not a regular file: %w", unix.EINVAL)
		}
		return nil, wrap("attach", file, underlying(err))
	}
	return f, nil
}

func checkBlockSize(bs uint32) error {
	if bs == 0 {
		return nil
	}
	if bs < 512 || bs > uint32(os.Getpagesize()) || bs&(bs-1) != 0 {
		return fmt.Errorf("block size %d: %w", bs, unix.EINVAL)
	}
	return nil
}

// attachFree asks for a free loop device and binds backing to it.
func attachFree(ctl, backing *os.File, opts Options) (*Device, error) {
	n, err := unix.IoctlRetInt(int(ctl.Fd()), unix.LOOP_CTL_GET_FREE)
	if err != nil {
		return nil, wrap("LOOP_CTL_GET_FREE", ctl.Name(), err)
	}
	path, err := deviceNode(n)
	if err != nil {
		return nil, err
	}
	loop, err := openLoop(path, opts.ReadOnly)
	if err != nil {
		return nil, err
	}
	if err := bind(loop, backing, opts); err != nil {
		loop.Close()
		return nil, err
	}
	d := &Device{Path: path, Number: n, BackingFile: backing.Name()}
	if info, err := unix.IoctlLoopGetStatus64(int(loop.Fd())); err == nil {
		d.DirectIO = info.Flags&unix.LO_FLAGS_DIRECT_IO != 0
	}
	if opts.AutoClear {
		d.file = loop
		return d, nil
	}
	return d, wrap("close", path, loop.Close())
}

// openLoop opens a loop device for configuration, read-write when possible.
func openLoop(path string, readOnly bool) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil && readOnly && (errors.Is(err, unix.EROFS) || errors.Is(err, unix.EACCES)) {
		f, err = os.OpenFile(path, os.O_RDONLY, 0)
	}
	if err != nil {
		return nil, wrap("open", path, underlying(err))
	}
	return f, nil
}

// deviceNode returns /dev/loopN, creating the node if /dev lacks it.
func deviceNode(n int) (string, error) {
	path := "/dev/loop" + strconv.Itoa(n)
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		return path, nil
	}
	dev := unix.Mkdev(7, uint32(n))
	if b, err := os.ReadFile(fmt.Sprintf("/sys/block/loop%d/dev", n)); err == nil {
		var major, minor uint32
		if _, err := fmt.Sscanf(string(b), "%d:%d", &major, &minor); err == nil {
			dev = unix.Mkdev(major, minor)
		}
	}
	err := unix.Mknod(path, unix.S_IFBLK|0o660, int(dev))
	if err != nil && !errors.Is(err, unix.EEXIST) {
		return "", wrap("mknod", path, err)
	}
	return path, nil
}

// bind binds backing to the opened loop device, with LOOP_CONFIGURE where
// the kernel has it and LOOP_SET_FD + LOOP_SET_STATUS64 otherwise.
func bind(loop, backing *os.File, opts Options) error {
	err := configure(loop, backing, opts)
	if errors.Is(err, unix.EINVAL) && opts.DirectIO {
		// Some kernels refuse LO_FLAGS_DIRECT_IO when the backing file
		// system cannot do direct I/O: retry with buffered I/O.
		buffered := opts
		buffered.DirectIO = false
		err = configure(loop, backing, buffered)
	}
	if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOTTY) {
		return bindLegacy(loop, backing, opts) // Linux < 5.8
	}
	return err
}

func configure(loop, backing *os.File, opts Options) error {
	cfg := unix.LoopConfig{Fd: uint32(backing.Fd()), Size: opts.BlockSize}
	cfg.Info.Flags = flags(opts)
	copy(cfg.Info.File_name[:unix.LO_NAME_SIZE-1], backing.Name())
	return wrap("LOOP_CONFIGURE", loop.Name(), unix.IoctlLoopConfigure(int(loop.Fd()), &cfg))
}

func flags(opts Options) uint32 {
	var f uint32
	if opts.ReadOnly {
		f |= unix.LO_FLAGS_READ_ONLY
	}
	if opts.AutoClear {
		f |= unix.LO_FLAGS_AUTOCLEAR
	}
	if opts.DirectIO {
		f |= unix.LO_FLAGS_DIRECT_IO
	}
	return f
}

// bindLegacy binds with LOOP_SET_FD and then sets status, block size and
// direct I/O; the device is unbound again if a later step fails.
func bindLegacy(loop, backing *os.File, opts Options) error {
	fd := int(loop.Fd())
	if err := unix.IoctlSetInt(fd, unix.LOOP_SET_FD, int(backing.Fd())); err != nil {
		return wrap("LOOP_SET_FD", loop.Name(), err)
	}
	info := unix.LoopInfo64{Flags: flags(opts) & unix.LO_FLAGS_AUTOCLEAR}
	copy(info.File_name[:unix.LO_NAME_SIZE-1], backing.Name())
	err := wrap("LOOP_SET_STATUS64", loop.Name(), unix.IoctlLoopSetStatus64(fd, &info))
	if err == nil && opts.BlockSize != 0 {
		err = wrap("LOOP_SET_BLOCK_SIZE", loop.Name(),
			unix.IoctlSetInt(fd, unix.LOOP_SET_BLOCK_SIZE, int(opts.BlockSize)))
	}
	if err != nil {
		_ = unix.IoctlSetInt(fd, unix.LOOP_CLR_FD, 0)
		return err
	}
	if opts.DirectIO {
		// Best effort: Device.DirectIO reports the outcome.
		_ = unix.IoctlSetInt(fd, unix.LOOP_SET_DIRECT_IO, 1)
	}
	return nil
}

// underlying strips *os.PathError and similar, keeping the errno.
func underlying(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// withFD runs fn on an open descriptor of the device: the one held for an
// AutoClear device, or a freshly opened read-only one.
func (d *Device) withFD(op string, fn func(fd int) error) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.file != nil {
		return wrap(op, d.Path, fn(int(d.file.Fd())))
	}
	f, err := os.OpenFile(d.Path, os.O_RDONLY, 0)
	if err != nil {
		return wrap(op, d.Path, underlying(err))
	}
	defer f.Close()
	return wrap(op, d.Path, fn(int(f.Fd())))
}

// SetCapacity makes the device pick up the new size of its backing file
// (LOOP_SET_CAPACITY), e.g. after the file grew.
func (d *Device) SetCapacity() error {
	return d.withFD("LOOP_SET_CAPACITY", func(fd int) error {
		return unix.IoctlSetInt(fd, unix.LOOP_SET_CAPACITY, 0)
	})
}

// Size returns the size of the device in bytes (BLKGETSIZE64).
func (d *Device) Size() (uint64, error) {
	var size uint64
	err := d.withFD("BLKGETSIZE64", func(fd int) error {
		var err error
		size, err = unix.IoctlGetUint64(fd, unix.BLKGETSIZE64)
		return err
	})
	return size, err
}

// Detach unbinds the device from its backing file (LOOP_CLR_FD) and
// releases the descriptor held for an AutoClear device. If some other
// process still has the device open, the kernel completes the detach when
// that process closes it.
func (d *Device) Detach() error {
	err := d.withFD("detach", func(fd int) error {
		return unix.IoctlSetInt(fd, unix.LOOP_CLR_FD, 0)
	})
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

// Close releases the descriptor that keeps an AutoClear device open; the
// kernel then detaches the device once no one else has it open. Close does
// nothing for other devices.
func (d *Device) Close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.file == nil {
		return nil
	}
	err := d.file.Close()
	d.file = nil
	return wrap("close", d.Path, underlying(err))
}

// Detach unbinds the loop device at path (e.g. /dev/loop3) from its
// backing file with LOOP_CLR_FD.
func Detach(path string) error {
	return (&Device{Path: path}).Detach()
}

// CreateSparse creates the file at path (mode 0600) if it does not exist and
// sets its size to size bytes with ftruncate, so that no blocks are
// allocated for the new part. Existing data below size is kept, so it can
// also grow or shrink an existing file.
func CreateSparse(path string, size int64) error {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return wrap("create", path, underlying(err))
	}
	err = wrap("truncate", path, underlying(f.Truncate(size)))
	if cerr := f.Close(); err == nil {
		err = wrap("close", path, underlying(cerr))
	}
	return err
}
